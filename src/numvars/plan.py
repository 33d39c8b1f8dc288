"""Plan before you spend: the jobs a preset needs, which are done, and how long the rest will take.

`plan(preset, out, jobs)` walks the same job graph `reproduce` runs, without running anything: a
training run finished on disk expands into its real dependents; an unfinished one is assumed to
reach the criterion at its typical epoch. Each job's cost comes from measured seconds: the
timings of earlier runs in this results folder where there are some, else the per-job costs that
`benchmarks/job_costs.py` measured on a 2-core CPU (shipped in numvars/data/job_costs.json). The
wall time is a list-scheduling simulation of the graph on the chosen number of workers.
"""
from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from . import io, loaders
from .engine import Job
from .jobs import attention_key, das_key, result_dir
from .presets import Preset, grid, train_overrides
from .train import checkpoint_epochs, finished_summary


@dataclass
class Plan:
    counts: pd.DataFrame          # kind, jobs, done, to_run, seconds (to run, one worker)
    wall_seconds: float           # estimated wall time on `workers`
    workers: int
    source: str                   # where the costs came from

    def render(self) -> str:
        t = self.counts
        lines = [f"{'job':<10}{'total':>8}{'done':>8}{'to run':>8}{'CPU time':>12}"]
        lines += [f"{r.kind:<10}{r.jobs:>8}{r.done:>8}{r.to_run:>8}{_hms(r.seconds):>12}" for r in t.itertuples()]
        lines.append(f"{'all':<10}{t['jobs'].sum():>8}{t['done'].sum():>8}{t['to_run'].sum():>8}"
                     f"{_hms(t['seconds'].sum()):>12}")
        lines.append(f"estimated wall time with {self.workers} worker(s): {_hms(self.wall_seconds)} "
                     f"(costs: {self.source})")
        return "\n".join(lines)


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Costs:
    """Seconds per job, from measured per-unit costs (per epoch, per DAS step, per pair, per trial), or
    from the measured seconds of earlier jobs of the same kind in this results folder."""

    def __init__(self, table: dict, source: str, measured: dict | None = None):
        self.t, self.source, self.measured = table, source, measured or {}

    @classmethod
    def load(cls, results: Path | None = None) -> "Costs":
        text = resources.files("numvars").joinpath("data/job_costs.json").read_text()
        costs = cls(json.loads(text), "benchmarks/job_costs.py on a 2-core CPU")
        t = loaders.read_timings(Path(results)) if results is not None and Path(results).is_dir() else None
        if t is not None:
            timings = Path(results) / "tables" / "timings.csv"
            t["kind"] = t["job"].astype(str).str.split().str[0]
            costs.measured = t.groupby(["kind", "arch", "task"])["seconds"].median().to_dict()
            costs.source = f"medians of the earlier jobs in {timings} (benchmarks/job_costs.py where none)"
        return costs

    def arch(self, arch: str) -> dict:
        return self.t["archs"].get(arch, self.t["archs"]["gru"])

    def criterion_epoch(self, arch: str, task: str) -> float:
        return self.arch(arch)["criterion_epochs"].get(task, 150)

    def train(self, arch: str, task: str, train: dict, d_model: int) -> float:
        epochs = self.criterion_epoch(arch, task) + train.get("extra_epochs", 0) + 5 * train.get("plateau", 0)
        epochs = min(epochs, train.get("max_epochs", 2000))
        return epochs * self.arch(arch)["epoch_s"] * max(1.0, (d_model / 20) ** 1.5)

    def das(self, arch: str, opts: dict) -> float:
        from .align import DASOptions
        o = DASOptions(**{k: v for k, v in opts.items() if k != "device"})
        epochs = o.max_epochs if o.schedule == "cosine" else min(o.max_epochs, self.t["das_typical_epochs"])
        steps = o.max_steps or math.ceil(o.n_train / o.batch_size) * epochs
        # a step has a fixed part (the continuation's loop over tokens, Adam) and a part that grows with the
        # batch: on a d=20 GRU one CPU thread took 4.6 ms a step at 64 pairs, 6.4 at 128, 16 at 512
        per_step = self.arch(arch)["das_step_s"] * (0.2 + 0.8 * o.batch_size / 512)
        scoring = (epochs * o.n_val + 2 * o.n_test) * self.arch(arch)["das_step_s"] / 512 * 2   # forward passes only
        return steps * per_step + scoring

    def job(self, j: Job, arch: str, task: str, preset: Preset, d_model: int) -> float:
        measured = self.measured.get((j.kind, arch, task))
        if measured is not None and d_model == preset.d_model:
            return float(measured)
        a = self.arch(arch)
        if j.kind == "train":
            return self.train(arch, task, train_overrides(preset, arch), d_model)
        if j.kind == "das":
            return self.das(arch, dict(j.get("options")))
        if j.kind == "fullswap":
            return a["fullswap_pair_s"] * dict(j.get("options")).get("n", 1000)
        if j.kind == "attention":                    # each trial run plain and with one demo added and removed
            return a["trial_s"] * 3 * dict(j.get("options")).get("n", 300)
        return a["trial_s"] * preset.oor_max * preset.oor_per_count


def _expected_result(j: Job, costs: Costs) -> dict:
    """The result a training job would have: from disk if finished, else the typical one."""
    from .config import from_mapping
    from .train import run_dir_for
    cfg = from_mapping(dict(j.get("config")))
    run_dir = run_dir_for(cfg)
    summary = finished_summary(run_dir)
    if summary is not None:
        return {"summary": summary, "run_dir": str(run_dir), "done": True}
    first = int(costs.criterion_epoch(cfg.model.arch, cfg.task.name))
    last = min(first + cfg.train.extra_epochs + 5 * cfg.train.plateau, cfg.train.max_epochs)
    epochs = sorted((checkpoint_epochs(cfg.train.max_epochs) & set(range(1, last + 1))) | {first, last})
    return {"summary": {"reached_criterion": True}, "run_dir": str(run_dir), "done": False, "epochs": epochs}


def _result_dir(j: Job) -> Path:
    from .align import FullSwapOptions

    p = dict(j.params)
    opts = dict(p["options"])
    if j.kind == "das":
        key = das_key(p.get("checkpoint"), **opts)
    elif j.kind == "attention":
        key = attention_key(**opts)
    else:
        key = FullSwapOptions(**opts).key()
    return result_dir(p["run_dir"], j.kind, key)


def _is_done(j: Job) -> bool:
    p = dict(j.params)
    if j.kind == "oor":
        return (Path(p["run_dir"]) / f"eval_max{p['max_count']}_per{p['per_count']}.csv").is_file()
    return (_result_dir(j) / "result.json").is_file()


def plan(preset: Preset, out: Path, workers: int, device: str = "cpu", threads: int = 1) -> Plan:
    from .reproduce import Expander, train_job

    costs = Costs.load(out)
    roots = [train_job(spec, preset, out / "runs", device, threads) for spec in grid(preset)]
    expand = Expander(preset, device)
    rows, tasks = [], []                   # (kind, done, seconds); (seconds, parent index) for the simulation
    for index, root in enumerate(roots):
        spec = root.get("spec")
        result = _expected_result(root, costs)
        seconds = 0.0 if result["done"] else costs.job(root, spec.arch, spec.task, preset, spec.d_model)
        rows.append(("train", result["done"], seconds))
        tasks.append((seconds, None))
        for child in _children(expand, root, result):
            done = result["done"] and _is_done(child)
            cost = 0.0 if done else costs.job(child, spec.arch, spec.task, preset, spec.d_model)
            rows.append((child.kind, done, cost))
            tasks.append((cost, index))
        for kind, cost, done in _explain_after(expand, result["run_dir"], spec.arch, costs) if result["done"] else \
                _unknown_after(expand, result["run_dir"], spec.arch, costs):        # explain's later jobs
            rows.append((kind, done, cost))
            tasks.append((cost, index))
        for cost in _cross_costs(preset, spec, costs):            # cross-model alignments, after the grid
            rows.append(("cross", False, cost))
            tasks.append((cost, index))
    frame = pd.DataFrame(rows, columns=["kind", "done", "seconds"])
    counts = frame.groupby("kind", sort=False).agg(jobs=("done", "size"), done=("done", "sum"),
                                                  seconds=("seconds", "sum")).reset_index()
    counts["to_run"] = counts["jobs"] - counts["done"]
    return Plan(counts[["kind", "jobs", "done", "to_run", "seconds"]], _simulate(tasks, workers), workers,
                costs.source)


def _cross_costs(preset: Preset, spec, costs: Costs) -> list[float]:
    """Rough costs of the cross-model maps whose first model is this run: four DAS fits of its architecture
    each (a map per model, both directions). `explain`'s jobs are the Expander's, costed like the rest."""
    if spec.d_model != preset.d_model or spec.variant != "default":
        return []
    fitted = {k: v for k, v in preset.cross_options.items() if k in ("n_train", "n_val", "n_test")}
    return [4 * costs.das(spec.arch, fitted) for a, _ in preset.cross if a == (spec.arch, spec.task, spec.seed)]


def _explain_after(expand, run_dir: str, arch: str, costs: Costs) -> list[tuple[str, float, bool]]:
    """explain's jobs that follow its first ones: (kind, seconds, done). Where the first ones are done, the plan
    unfolds from their results on disk exactly as it will run; else an untrained control per variable and the
    evidence job are counted as if all of them ran (controls run only where the rule can use them)."""
    plan = expand.plans.get(run_dir)
    if plan is None:
        return []
    roots = [j for j in plan.roots() if j.get("run_dir") == run_dir]
    out, queue = [], list(roots)
    while queue:
        j = queue.pop(0)
        result = _on_disk(j)
        if result is None:
            return out + _unknown(plan, arch, costs)
        if j not in roots:
            out.append((j.kind, 0.0, True))
        queue += plan(j, result)
    return out


def _unknown_after(expand, run_dir: str, arch: str, costs: Costs) -> list[tuple[str, float, bool]]:
    plan = expand.plans.get(run_dir)
    return [] if plan is None else _unknown(plan, arch, costs)


def _on_disk(j: Job) -> dict | None:
    """A finished job's result as the engine would hand it to `expand` (None when it has not run)."""
    from .explain.plan import evidence_dir

    if j.kind == "evidence":
        folder = evidence_dir(j)
        return {"result_dir": str(folder)} if (folder / "evidence.json").is_file() else None
    if not _is_done(j):
        return None
    folder = _result_dir(j)
    return {"summary": io.read_json(folder / "result.json"), "result_dir": str(folder)}


def _unknown(plan, arch: str, costs: Costs) -> list[tuple[str, float, bool]]:
    o = plan.o
    fit = costs.das(arch, {**o.das_options(o.seed), "map": o.map_list[-1]})
    n = len(plan.variables())
    scoring = ((2 + o.random_seeds) * n + 4 * n * (n - 1) // 2) * o.n_eval * costs.arch(arch)["das_step_s"] / 512
    return [("das", fit, False)] * (n if plan.untrained else 0) + [("evidence", scoring, False)]


def _children(expand, root: Job, result: dict) -> list[Job]:
    """The dependents of a training run; an unfinished one gets its typical checkpoints."""
    if result["done"]:
        return expand(root, result)
    return expand(root, result, checkpoints=result["epochs"])


def _simulate(tasks: list[tuple[float, int | None]], workers: int) -> float:
    """List scheduling in the engine's order (every training run first, then the dependents), each job
    on the first free worker once its run is trained."""
    finish: dict[int, float] = {}
    free = [0.0] * workers
    heapq.heapify(free)
    order = [i for i, (_, parent) in enumerate(tasks) if parent is None] + \
            [i for i, (_, parent) in enumerate(tasks) if parent is not None]
    for i in order:
        cost, parent = tasks[i]
        start = max(heapq.heappop(free), finish.get(parent, 0.0) if parent is not None else 0.0)
        finish[i] = start + cost
        heapq.heappush(free, finish[i])
    return max(finish.values(), default=0.0)
