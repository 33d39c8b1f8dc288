"""Reproducing the paper: every job of a preset, then the raw tables they produce.

`reproduce(preset)` trains every run of the grid, evaluates it, aligns it, and collects the raw
tables under RESULTS/tables/; `numvars.analysis` and `numvars.report` then build the figures and
the HTML page. The jobs form a graph (a model's evaluations and alignments wait for its training)
that `engine.run_graph` runs serially, on N worker processes or on Ray. Every job is idempotent:
finished runs and alignments are found on disk and reused, an interrupted training run resumes,
so a killed reproduction picks up where it stopped. Tables are assembled in the grid's order, so
they are the same whatever ran the jobs and in whatever order they finished.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from . import __version__, io
from .engine import Job, check_jobs, default_jobs, job, run_graph
from .errors import NumvarsError
from .explain.runs import work
from .jobs import das_job, pair_rows
from .loaders import read_metrics
from .paths import check_length
from .presets import ALIGNMENTS, PRESETS, Preset, RunSpec, grid, train_overrides
from .runtime import resolve_device, setup_threads

TABLES = ("runs", "iia", "fullswap", "oor", "dynamics", "pairs", "timings")


# --- the jobs ------------------------------------------------------------------------------------

def train_job(spec: RunSpec, preset: Preset, runs_dir: Path, device: str, threads: int) -> Job:
    keys = {"arch": spec.arch, "task": spec.task, "d_model": spec.d_model, "seed": spec.seed,
            **train_overrides(preset, spec.arch),
            **dict(spec.overrides), "out": str(runs_dir), "device": device, "threads": threads}
    return job("train", gpu=_gpu(device), config=tuple(sorted(keys.items())), spec=spec)


def _gpu(device: str) -> float:
    return 0.25 if device.startswith("cuda") else 0.0        # several small jobs share one card


class Expander:
    """Names the jobs that follow a finished one (in a fixed order): a trained run's grid jobs and, for the runs
    `explain` covers, its plan's jobs (`explain.plan`), whose own results then unfold that plan. `grid` keeps
    each run's grid jobs: those are what the tables are made of."""

    def __init__(self, preset: Preset, device: str):
        self.preset, self.device = preset, device
        self.grid: dict[str, list[Job]] = {}
        self.plans: dict[str, object] = {}

    def __call__(self, done: Job, result: dict, checkpoints: list[int] | None = None) -> list[Job]:
        """checkpoints: the epochs whose checkpoints exist (default: read from the run's metrics)."""
        if done.kind != "train":
            plan = self.plans.get(done.get("run_dir"))
            return plan(done, result) if plan is not None else []
        if not result["summary"]["reached_criterion"]:
            return []
        p, spec, run_dir = self.preset, done.get("spec"), result["run_dir"]
        gpu, out = _gpu(self.device), [job("oor", run_dir=run_dir, max_count=p.oor_max, per_count=p.oor_per_count)]
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
            for epoch in checkpoints:
                opts = {"program": "up_down", "variable": "count", "seed": 0, "device": self.device,
                        **p.dynamics_das}
                out.append(job("das", gpu=gpu, run_dir=run_dir, checkpoint=f"epoch_{int(epoch):06d}.safetensors",
                               options=tuple(sorted(opts.items())), epoch=int(epoch)))
        self.grid[run_dir] = list(out)
        if p.explain is not None and _explained(p, spec.arch, spec.task, spec.d_model, spec.variant, spec.seed):
            out += self._explain(run_dir, dict(done.get("config")))
        return list(dict.fromkeys(out))

    def _explain(self, run_dir: str, config: dict) -> list[Job]:
        """`explain`'s first jobs for this run (those it shares with the grid are the very same jobs); the plan
        stays here, to expand as their results come in, so that `beyond` later finds every one of them done."""
        from .config import from_mapping
        from .explain.runs import explain_plan
        from .models import build

        plan = explain_plan(run_dir, build(from_mapping(config).model), _gpu(self.device), device=self.device,
                            **self.preset.explain)
        self.plans[run_dir] = plan
        return plan.roots()

    def _das(self, run_dir, seed, gpu, **kw) -> Job:
        return das_job(run_dir, gpu, **{"seed": seed, "device": self.device, **self.preset.das, **kw})

    def _tracks_dynamics(self, spec: RunSpec) -> bool:
        p = self.preset
        return (spec.arch, spec.task) in p.dynamics and spec.variant == "default" and spec.d_model == p.d_model \
            and spec.seed == p.seeds[0]


# --- the tables ----------------------------------------------------------------------------------

def assemble(roots: list[Job], results: dict, grid_jobs: dict) -> dict[str, pd.DataFrame]:
    """The raw tables, in the grid's order (never in the order jobs finished); grid_jobs: run_dir -> the
    grid's own jobs of that run (`Expander.grid`; explain's other jobs stay out of these tables)."""
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
    if child.kind == "oor":
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


def run_jobs(preset: Preset, out: Path, device: str = "cpu", threads: int = 1, progress: bool = True,
             jobs: int = 1, engine: str = "local", address: str | None = None) -> dict[str, pd.DataFrame]:
    """Run (or reuse) every job of a preset and return the raw tables."""
    if device.startswith("cuda"):                      # on a GPU: many small jobs as a few grouped ones
        from .grouped_jobs import run_grouped
        return run_grouped(preset, out, device, threads, progress, jobs, engine, address)
    roots = [train_job(spec, preset, out / "runs", device, threads) for spec in grid(preset)]
    expand = Expander(preset, device)
    results, _ = run_graph(roots, work, expand, jobs=jobs, engine=engine, address=address, threads=threads,
                           progress=progress, desc=f"reproduce {preset.name}")
    return assemble(roots, results, expand.grid)


def _explained(p: Preset, arch: str, task: str, d_model: int, variant: str, seed: int) -> bool:
    """Whether `explain` runs on this model: a main model (the preset's archs × tasks at its d_model, default
    variant) of an explain seed."""
    return arch in p.archs and task in p.tasks and d_model == p.d_model and variant == "default" \
        and seed in p.explain_seeds


def beyond(preset: Preset, out: Path, runs: pd.DataFrame, device: str, jobs: int, progress: bool) \
        -> dict[str, pd.DataFrame]:
    """After the grid: `explain` on each main model of the explain seeds (its page under the run), and the
    cross-model alignments of the preset's model pairs. Both reuse every finished job."""
    from .explain.runs import explain_runs

    done = runs[runs["reached_criterion"].astype(bool) & (runs["variant"] == "default")
                & (runs["d_model"] == preset.d_model)]
    explained = []
    if preset.explain is not None:
        for r in done.itertuples():
            if not _explained(preset, r.arch, r.task, r.d_model, r.variant, r.seed):
                continue
            # its jobs ran with the grid's (Expander), so this reads them, then sizes what the verdict names
            x, page = explain_runs([r.run_dir], jobs=jobs, progress=False, device=device, **preset.explain)
            explained.append({"run_name": r.run_name, "arch": r.arch, "task": r.task, "d_model": r.d_model,
                              "seed": r.seed, "best": x.best, "grade": x.grade,
                              "verdict": x.named.headline if x.named else x.text,
                              "page": str((page / "explain.html").relative_to(out))})
    where = {(r.arch, r.task, r.seed): r.run_dir for r in done.itertuples()}
    pairs = [(a, b) for a, b in preset.cross if a in where and b in where]
    opts = tuple(sorted({"device": device, "seed": 0, **preset.cross_options}.items()))
    roots = [job("cross", run_a=where[a], run_b=where[b], options=opts) for a, b in pairs]
    results, _ = run_graph(roots, work, lambda j, r: [], jobs=jobs, progress=progress, desc="align models")
    cross = [{"model_a": "-".join(map(str, a)), "model_b": "-".join(map(str, b)), "direction": d, "iia": v,
              "iia_nontrivial": results[j]["summary"]["iia_nontrivial"][d], "k": results[j]["summary"]["k"]}
             for (a, b), j in zip(pairs, roots) for d, v in sorted(results[j]["summary"]["iia"].items())]
    return {"explain": pd.DataFrame(explained, columns=["run_name", "arch", "task", "d_model", "seed", "best",
                                                        "grade", "verdict", "page"]),
            "cross": pd.DataFrame(cross, columns=["model_a", "model_b", "direction", "iia", "iia_nontrivial", "k"])}


def environment(device: str, threads: int, jobs: int, engine: str) -> dict:
    return {"versions": {"numvars": __version__, "torch": torch.__version__, "python": platform.python_version(),
                         "pandas": pd.__version__},
            "hardware": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                         "cpus": os.cpu_count(), "device": device, "threads": threads, "jobs": jobs, "engine": engine,
                         "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}}


def get_preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise NumvarsError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def reproduce(preset: str | Preset = "quick", out=None, device: str = "auto", threads: int = 1,
              progress: bool = True, jobs: int | None = None, engine: str = "local",
              address: str | None = None) -> Path:
    """Run a preset (a name or a Preset) end to end: jobs, raw tables, analyses, report.
    Returns the report path. jobs: worker processes (default: one per core)."""
    from .analysis import analyze
    from .report import render

    p = get_preset(preset)
    out = Path(out or Path("results") / p.name)
    check_length(out, "out")
    check_jobs(jobs)
    io.ensure_writable_dir(out)
    dev = str(resolve_device(device))
    setup_threads(threads, torch.device(dev))
    jobs = default_jobs() if jobs is None else jobs
    started = time.time()
    tables = run_jobs(p, out, dev, threads, progress, jobs, engine, address)
    tables.update(beyond(p, out, tables["runs"], dev, jobs, progress))
    for name, df in tables.items():
        io.write_table(out / "tables" / f"{name}.csv", df)
    io.write_json(out / "meta.json", {
        "preset": p.name, "config": asdict(p), **environment(dev, threads, jobs, engine),
        "wall_seconds": round(time.time() - started, 1),
        "job_seconds": round(float(tables["timings"]["seconds"].sum()), 1) if len(tables["timings"]) else 0.0,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    analyze(out)
    return render(out)
