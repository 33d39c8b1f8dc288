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
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from ..jobs.cache import finished, is_done
from ..jobs.costs import Costs, expected_epochs, hms
from ..explain.plan import planned_seconds
from ..jobs.engine import Job
from ..jobs.progress import Budget
from .presets import Preset, grid, train_overrides
from ..train import checkpoint_epochs, finished_summary


FINISHING = "finishing"            # the group of the work after the jobs: explain pages, the analyses and report


@dataclass
class Plan:
    counts: pd.DataFrame          # kind, jobs, done, to_run, seconds (to run, one worker)
    wall_seconds: float           # estimated wall time on `workers`
    workers: int
    source: str                   # where the costs came from
    rows: list = field(default_factory=list)   # (group, kind, job or None, done, seconds) of every planned job
    checkpoints: dict = field(default_factory=dict)   # run -> the dynamics alignments counted for it

    def budget(self) -> Budget:
        """What a progress bar over this plan expects (groups: run directories, and "align_models")."""
        return Budget.of(self.rows, self.wall_seconds)

    def render(self) -> str:
        t = self.counts
        lines = [f"{'job':<13}{'total':>8}{'done':>8}{'to run':>8}{'CPU time':>12}"]
        lines += [f"{r.kind:<13}{r.jobs:>8}{r.done:>8}{r.to_run:>8}{hms(r.seconds):>12}" for r in t.itertuples()]
        lines.append(f"{'all':<13}{t['jobs'].sum():>8}{t['done'].sum():>8}{t['to_run'].sum():>8}"
                     f"{hms(t['seconds'].sum()):>12}")
        lines.append(f"estimated wall time with {self.workers} worker(s): {hms(self.wall_seconds)} "
                     f"(costs: {self.source})")
        return "\n".join(lines)


def job_cost(costs: Costs, j: Job, arch: str, task: str, preset: Preset, d_model: int) -> float:
    """Seconds of one job of a preset: the measured median of its kind in this results folder where there is
    one (at the preset's main size), else from the per-unit costs."""
    measured = costs.measured.get((j.kind, arch, task))
    if measured is not None and d_model == preset.d_model:
        return float(measured)
    if j.kind == "train":
        return costs.train(arch, task, train_overrides(preset, arch), d_model)
    if j.kind == "das":
        return costs.das(arch, dict(j.get("options")))
    if j.kind == "fullswap":
        return costs.fullswap(arch, dict(j.get("options")).get("n", 1000))
    if j.kind == "attention":
        return costs.attention(arch, dict(j.get("options")).get("n", 300))
    return costs.trials(arch, preset.oor_max * preset.oor_per_count)


def _expected_result(j: Job, costs: Costs) -> dict:
    """The result a training job would have: from disk if finished, else the typical one."""
    from ..config import from_mapping
    from ..train import run_dir_for
    cfg = from_mapping(dict(j.get("config")))
    run_dir = run_dir_for(cfg)
    summary = finished_summary(run_dir)
    if summary is not None:
        return {"summary": summary, "run_dir": str(run_dir), "done": True}
    first = int(costs.criterion_epoch(cfg.model.arch, cfg.task.name))
    last = expected_epochs(first, cfg.train.extra_epochs, cfg.train.plateau, cfg.train.max_epochs)
    epochs = sorted((checkpoint_epochs(cfg.train.max_epochs) & set(range(1, last + 1))) | {first, last})
    return {"summary": {"reached_criterion": True}, "run_dir": str(run_dir), "done": False, "epochs": epochs}


def plan(preset: Preset, out: Path, workers: int, device: str = "cpu", threads: int = 1) -> Plan:
    from .grid import GridDependents, is_explained, train_job

    costs = Costs.load(out)
    roots = [train_job(spec, preset, out / "runs", device, threads) for spec in grid(preset)]
    expand = GridDependents(preset, device)
    rows, tasks = [], []          # (group, kind, job, done, seconds); (seconds, parent index) for the simulation
    checkpoints: dict[str, int] = {}

    def add(group: str, kind: str, j: Job | None, done: bool, seconds: float, parent: int | None) -> None:
        rows.append((group, kind, j, done, seconds))
        tasks.append((seconds, parent))

    for index, root in enumerate(roots):
        spec = root.get("spec")
        result = _expected_result(root, costs)
        group = result["run_dir"]
        seconds = 0.0 if result["done"] else job_cost(costs, root, spec.arch, spec.task, preset, spec.d_model)
        add(group, "train", root, result["done"], seconds, None)
        for child in _children(expand, root, result):
            if child.get("checkpoint"):
                checkpoints[group] = checkpoints.get(group, 0) + 1
            done = result["done"] and is_done(child)
            cost = 0.0 if done else job_cost(costs, child, spec.arch, spec.task, preset, spec.d_model)
            add(group, child.kind, child, done, cost, index)
        for kind, j, done, cost in _explain_after(expand, group, spec.arch, costs, result["done"]):
            add(group, kind, j, done, cost, index)                          # explain's later jobs
        for cost in _align_models_costs(preset, spec, costs):            # cross-model alignments, after the grid
            add("align_models", "align_models", None, False, cost, index)
        if preset.explain is not None and is_explained(preset, spec.arch, spec.task, spec.d_model, spec.variant,
                                                       spec.seed):
            rows.append((FINISHING, "explain_page", None, False, costs.explain_page()))   # its page, after the grid
    rows.append((FINISHING, "report", None, False, costs.report(len(roots))))      # the analyses and the report
    finishing = sum(r[-1] for r in rows if r[0] == FINISHING)                        # in the main process, serially
    frame = pd.DataFrame([r[1:2] + r[3:] for r in rows], columns=["kind", "done", "seconds"])
    counts = frame.groupby("kind", sort=False).agg(jobs=("done", "size"), done=("done", "sum"),
                                                  seconds=("seconds", "sum")).reset_index()
    counts["to_run"] = counts["jobs"] - counts["done"]
    return Plan(counts[["kind", "jobs", "done", "to_run", "seconds"]], _simulate(tasks, workers) + finishing, workers,
                costs.source, rows, checkpoints)


def _align_models_costs(preset: Preset, spec, costs: Costs) -> list[float]:
    """Rough costs of the cross-model maps whose first model is this run: four DAS fits of its architecture
    each (a map per model, both directions). `explain`'s jobs are the grid's dependents, costed like the rest."""
    if spec.d_model != preset.d_model or spec.variant != "default":
        return []
    fitted = {k: v for k, v in preset.align_models_options.items() if k in ("n_train", "n_val", "n_test")}
    return [4 * costs.das(spec.arch, fitted) for a, _ in preset.align_models if a == (spec.arch, spec.task, spec.seed)]


def _explain_after(expand, run_dir: str, arch: str, costs: Costs, trained: bool) \
        -> list[tuple[str, Job | None, bool, float]]:
    """explain's jobs that follow its first ones: (kind, job or None, done, seconds). For a trained run the plan
    unfolds from the results on disk as it will run (a job found done names what follows it; one still to run is
    costed); what no result tells yet (a control the rule has not decided, the evidence, the k sweep) is
    counted as if it ran: controls and the sweep at their bound."""
    plan = expand.plans.get(run_dir)
    if plan is None:
        return []
    out = []
    if trained:
        roots = [j for j in plan.roots() if j.get("run_dir") == run_dir]
        queue, seen = list(roots), set()
        while queue:
            j = queue.pop(0)
            if j in seen:
                continue
            seen.add(j)
            result = finished(j)
            if j not in roots:
                seconds = 0.0 if result is not None else planned_seconds(costs, arch, j)
                out.append((j.kind, j, result is not None, seconds))
            if result is not None:
                queue += plan(j, result)
    reached = Counter(kind for kind, *_ in out) + Counter(kind for run, kind in plan.skipped if run == run_dir)
    for kind, _, seconds in plan.conditional(arch, costs):
        if reached[kind] > 0:
            reached[kind] -= 1
        else:
            out.append((kind, None, False, seconds))
    return out


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
