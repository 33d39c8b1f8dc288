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

from .. import __version__, io
from ..device import resolve_device, setup_threads
from ..errors import NumvarsError
from ..explain.runs import work
from ..jobs.engine import check_jobs, default_jobs, job, run_graph
from ..jobs.progress import Progress
from ..paths import check_length
from .grid import GridDependents, assemble, is_explained, train_job
from .plan import FINISHING, plan
from .presets import PRESETS, Preset, grid

def run_jobs(preset: Preset, out: Path, device: str = "cpu", threads: int = 1, progress: bool | Progress = True,
             jobs: int = 1, engine: str = "local", address: str | None = None,
             planned_checkpoints: dict | None = None) -> dict[str, pd.DataFrame]:
    """Run (or reuse) every job of a preset and return the raw tables. progress: a bar over the preset's plan
    (`reproduce` makes one; planned_checkpoints: its `Plan.checkpoints`), or whether to show one that follows
    the jobs as they are named."""
    if device.startswith("cuda"):                      # on a GPU: many small jobs as a few grouped ones
        from .grouped import run_grouped
        return run_grouped(preset, out, device, threads, progress, jobs, engine, address, planned_checkpoints)
    roots = [train_job(spec, preset, out / "runs", device, threads) for spec in grid(preset)]
    expand = GridDependents(preset, device, planned_checkpoints)
    results, _ = run_graph(roots, work, expand, jobs=jobs, engine=engine, address=address, threads=threads,
                           progress=progress, desc=f"reproduce {preset.name}")
    return assemble(roots, results, expand.grid)


def after_grid(preset: Preset, out: Path, runs: pd.DataFrame, device: str, jobs: int, progress: bool | Progress) \
        -> dict[str, pd.DataFrame]:
    """After the grid: `explain` on each main model of the explain seeds (its page under the run), and the
    cross-model alignments of the preset's model pairs. Both reuse every finished job."""
    from ..explain.runs import explain_runs

    done = runs[runs["reached_criterion"].astype(bool) & (runs["variant"] == "default")
                & (runs["d_model"] == preset.d_model)]
    explained = []
    if preset.explain is not None:
        for r in done.itertuples():
            if not is_explained(preset, r.arch, r.task, r.d_model, r.variant, r.seed):
                continue
            # its jobs ran with the grid's (GridDependents), so this reads them, then sizes what the verdict names
            x, page = explain_runs([r.run_dir], jobs=jobs, progress=False, device=device, **preset.explain)
            # a bar over the plan (tested as not-a-bool: the tests put a recording bar in Progress's place)
            if not isinstance(progress, bool):
                progress.did(FINISHING, "explain_page")
            explained.append({"run_name": r.run_name, "arch": r.arch, "task": r.task, "d_model": r.d_model,
                              "seed": r.seed, "best": x.best, "grade": x.grade,
                              "verdict": x.named.headline if x.named else x.text,
                              "page": str((page / "explain.html").relative_to(out))})
    where = {(r.arch, r.task, r.seed): r.run_dir for r in done.itertuples()}
    pairs = [(a, b) for a, b in preset.align_models if a in where and b in where]
    opts = tuple(sorted({"device": device, "seed": 0, **preset.align_models_options}.items()))
    roots = [job("align_models", run_a=where[a], run_b=where[b], options=opts) for a, b in pairs]
    results, _ = run_graph(roots, work, lambda j, r: [], jobs=jobs, progress=progress, desc="align models")
    aligned = [{"model_a": "-".join(map(str, a)), "model_b": "-".join(map(str, b)), "direction": d, "iia": v,
              "iia_nontrivial": results[j]["summary"]["iia_nontrivial"][d], "k": results[j]["summary"]["k"]}
             for (a, b), j in zip(pairs, roots) for d, v in sorted(results[j]["summary"]["iia"].items())]
    return {"explain": pd.DataFrame(explained, columns=["run_name", "arch", "task", "d_model", "seed", "best",
                                                        "grade", "verdict", "page"]),
            "align_models": pd.DataFrame(aligned, columns=["model_a", "model_b", "direction", "iia", "iia_nontrivial", "k"])}


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
    p = get_preset(preset)
    out = Path(out or Path("results") / p.name)
    check_length(out, "out")
    check_jobs(jobs)
    io.ensure_writable_dir(out)
    dev = str(resolve_device(device))
    setup_threads(threads, torch.device(dev))
    jobs = default_jobs() if jobs is None else jobs
    started = time.time()
    planned = plan(p, out, jobs, dev, threads) if progress else None
    bar = Progress(planned and planned.budget(), f"reproduce {p.name}", enabled=progress,
                   phases={"train": "training done"})
    try:
        tables = run_jobs(p, out, dev, threads, bar, jobs, engine, address, planned and planned.checkpoints)
        bar.phase("grid done: evaluations, alignments, full swaps and explain's jobs")
        tables.update(after_grid(p, out, tables["runs"], dev, jobs, bar))
        return _write(p, out, tables, started, dev, threads, jobs, engine, bar)
    finally:
        bar.close()


def _write(p: Preset, out: Path, tables: dict, started: float, dev: str, threads: int, jobs: int, engine: str,
           bar: Progress) -> Path:
    """The raw tables, meta.json, the analyses and the report."""
    from ..analysis import analyze
    from ..report import render

    for name, df in tables.items():
        io.write_table(out / "tables" / f"{name}.csv", df)
    io.write_json(out / "meta.json", {
        "preset": p.name, "config": asdict(p), **environment(dev, threads, jobs, engine),
        "wall_seconds": round(time.time() - started, 1),
        "job_seconds": round(float(tables["timings"]["seconds"].sum()), 1) if len(tables["timings"]) else 0.0,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    analyze(out)
    report = render(out)
    bar.did(FINISHING, "report")
    bar.phase(f"report written: {report}")
    return report
