"""The grid's jobs and tables: the training run of every spec of a preset, the jobs that follow each (its
evaluations and alignments, and `explain`'s plan for the runs it covers: `GridDependents`), and the raw tables
assembled from their results in the grid's order."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..align.protocol import DASOptions
from ..jobs.cache import das_job, pair_rows
from ..jobs.engine import Job, job
from ..loaders import read_metrics
from .presets import ALIGNMENTS, Preset, RunSpec, train_overrides


TABLES = ("runs", "iia", "fullswap", "oor", "dynamics", "pairs", "timings")


# --- the jobs ------------------------------------------------------------------------------------

def train_job(spec: RunSpec, preset: Preset, runs_dir: Path, device: str, threads: int) -> Job:
    keys = {"arch": spec.arch, "task": spec.task, "d_model": spec.d_model, "seed": spec.seed,
            **train_overrides(preset, spec.arch),
            **dict(spec.overrides), "out": str(runs_dir), "device": device, "threads": threads}
    return job("train", gpu=_gpu(device), config=tuple(sorted(keys.items())), spec=spec)


def _gpu(device: str) -> float:
    return 0.25 if device.startswith("cuda") else 0.0        # several small jobs share one card


class GridDependents:
    """Names the jobs that follow a finished one (in a fixed order): a trained run's grid jobs and, for the runs
    `explain` covers, its plan's jobs (`explain.plan`), whose own results then unfold that plan. `grid` keeps
    each run's grid jobs: those are what the tables are made of."""

    def __init__(self, preset: Preset, device: str, planned_checkpoints: dict[str, int] | None = None):
        """planned_checkpoints: run -> the dynamics alignments a plan counted for it before it trained (`Plan`);
        those a run's real checkpoints do not need are told as skipped."""
        self.preset, self.device = preset, device
        self.planned_checkpoints = planned_checkpoints or {}
        self.grid: dict[str, list[Job]] = {}
        self.plans: dict[str, object] = {}
        self.skipped: list[tuple[str, str | None]] = []    # (run, kind) of planned jobs that will not run (kind
        # None: none of the run's; it missed the criterion), its explain plans' included: what a bar credits

    def __call__(self, done: Job, result: dict, checkpoints: list[int] | None = None) -> list[Job]:
        """checkpoints: the epochs whose checkpoints exist (default: read from the run's metrics)."""
        if done.kind != "train":
            plan = self.plans.get(done.get("run_dir"))
            return plan(done, result) if plan is not None else []
        if not result["summary"]["reached_criterion"]:
            self.skipped.append((result["run_dir"], None))
            return []
        p, spec, run_dir = self.preset, done.get("spec"), result["run_dir"]
        gpu, out = _gpu(self.device), [job("eval", run_dir=run_dir, max_count=p.oor_max,
                                                      per_count=p.oor_per_count)]
        is_main = spec.d_model == p.d_model or spec.variant != "default"
        for map_ in p.maps if is_main else p.maps[:1]:
            for program, variable in ALIGNMENTS if is_main else ALIGNMENTS[:1]:
                out.append(self._das(run_dir, spec.seed, gpu, program=program, variable=variable, map=map_))
        if spec.seed in p.control_seeds and spec.d_model == p.d_model:
            out += [self._das(run_dir, spec.seed, gpu, program="up_down", variable="count", control=c)
                    for c in p.controls]
            if "untrained" in p.controls:                   # every learned map beside its own untrained control
                out += [self._das(run_dir, spec.seed, gpu, program="up_down", variable="count", control="untrained",
                                  map=m) for m in p.maps if m != "orthogonal"]
        if is_main:
            opts = {"n": p.fullswap_n, "seed": spec.seed, "device": self.device, **p.fullswap}
            out.append(job("fullswap", gpu=gpu, run_dir=run_dir, options=tuple(sorted(opts.items()))))
        if self._tracks_dynamics(spec):
            if checkpoints is None:
                metrics = read_metrics(run_dir)
                checkpoints = metrics.loc[metrics["checkpoint"], "epoch"].tolist()
            o = DASOptions(**{"seed": 0, "device": self.device, **p.dynamics_das})
            for epoch in checkpoints:
                out.append(das_job(run_dir, o, gpu, checkpoint=f"epoch_{int(epoch):06d}.safetensors",
                                   epoch=int(epoch)))
            self.skipped += [(run_dir, "das")] * max(0, self.planned_checkpoints.get(run_dir, 0) - len(checkpoints))
        self.grid[run_dir] = list(out)
        if p.explain is not None and is_explained(p, spec.arch, spec.task, spec.d_model, spec.variant, spec.seed):
            out += self._explain(run_dir, dict(done.get("config")))
        return list(dict.fromkeys(out))

    def _explain(self, run_dir: str, config: dict) -> list[Job]:
        """`explain`'s first jobs for this run (those it shares with the grid are the very same jobs); the plan
        stays here, to expand as their results come in, so that `after_grid` later finds every one of them done."""
        from ..config import from_mapping
        from ..explain.runs import explain_plan
        from ..models import build

        plan = explain_plan(run_dir, build(from_mapping(config).model), _gpu(self.device), skipped=self.skipped,
                            device=self.device, **self.preset.explain)     # one skipped list for the bar
        self.plans[run_dir] = plan
        return plan.roots()

    def _das(self, run_dir, seed, gpu, **kw) -> Job:
        return das_job(run_dir, DASOptions(**{"seed": seed, "device": self.device, **self.preset.das, **kw}), gpu)

    def _tracks_dynamics(self, spec: RunSpec) -> bool:
        p = self.preset
        return (spec.arch, spec.task) in p.dynamics and spec.variant == "default" and spec.d_model == p.d_model \
            and spec.seed == p.seeds[0]


# --- the tables ----------------------------------------------------------------------------------

def assemble(roots: list[Job], results: dict, grid_jobs: dict) -> dict[str, pd.DataFrame]:
    """The raw tables, in the grid's order (never in the order jobs finished); grid_jobs: run_dir -> the
    grid's own jobs of that run (`GridDependents.grid`; explain's other jobs stay out of these tables)."""
    tables = {name: [] for name in TABLES}
    for root in roots:
        spec, r = root.get("spec"), results[root]
        s, labels = r["summary"], {"run_name": Path(r["run_dir"]).name, **spec.labels()}
        tables["runs"].append({**labels, "run_dir": r["run_dir"], "reached_criterion": s["reached_criterion"],
                               "criterion_epoch": s.get("criterion_epoch"), "epochs": s["epochs"],
                               "trial_accuracy": s["trial_accuracy"]})
        tables["timings"].append({**labels, "job": "train", "seconds": s["seconds"]})
        metrics = None
        for child in grid_jobs.get(r["run_dir"], []):
            _collect(child, results[child], labels, tables)
            if child.get("checkpoint"):
                metrics = metrics if metrics is not None else read_metrics(r["run_dir"])
                accuracy = metrics.loc[metrics["epoch"] == child.get("epoch"), "trial_accuracy"].iloc[0]
                tables["dynamics"].append({**labels, "epoch": child.get("epoch"), "trial_accuracy": accuracy,
                                           "iia": results[child]["summary"]["iia"]})
    return {name: pd.DataFrame(rows) for name, rows in tables.items()}


def _collect(child: Job, r: dict, labels: dict, tables: dict) -> None:
    if child.kind == "eval":                      # the out-of-range ("oor") table
        tables["oor"] += [{**labels, "count": int(row["count"]), "accuracy": row["accuracy"]} for row in r["rows"]]
    elif child.kind == "fullswap":
        s = r["summary"]
        tables["fullswap"] += [{**labels, "site": s["site"], "program": program, "iia": value}
                               for program, value in s["iia_by_program"].items()]
    elif child.kind == "das" and not child.get("checkpoint"):
        s, control = r["summary"], dict(child.get("options")).get("control")
        tables["iia"].append({**labels, "program": s["program"], "variable": ",".join(s["variables"]), "k": s["k"],
                              "map": s["map"], "control": control or "none", "iia": s["iia"],
                              "iia_free": s["iia_free"], "iia_nontrivial": s["iia_nontrivial"],
                              "token_accuracy": s["token_accuracy"], "val_iia": s["val_iia"],
                              "result_dir": r["result_dir"]})
        name = f"das {s['program']}.{','.join(s['variables'])} {s['map']} {control or ''}".strip()
        tables["timings"].append({**labels, "job": name, "seconds": s["seconds"]})
        if (s["program"], s["variables"], control) == ("up_down", ["count"], None):   # the gradience analyses' pairs
            tables["pairs"] += [{**labels, **row} for row in pair_rows(r["result_dir"], s["map"])]


def is_explained(p: Preset, arch: str, task: str, d_model: int, variant: str, seed: int) -> bool:
    """Whether `explain` runs on this model: a main model (the preset's archs × tasks at its d_model, default
    variant) of an explain seed."""
    return arch in p.archs and task in p.tasks and d_model == p.d_model and variant == "default" \
        and seed in p.explain_seeds


