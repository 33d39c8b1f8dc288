"""`explain` on trained run directories: the same alignments as jobs, cached in each run's align/ folder,
run by the engine (in parallel with --jobs), then one explanation over all the runs given (several
runs of one condition pool into IIA means and run-and-pair bootstrap intervals)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import io
from ..align.sites import get_site
from ..engine import job, run_graph
from ..errors import NumvarsError
from ..jobs import load_run, work
from ..loaders import read_job_table
from ..paths import check_length, inside
from ..models import build, default_site
from . import ExplainOptions, Explanation, requests, summarize, verdict


def explain_runs(run_dirs: list, out=None, jobs: int = 1, progress: bool = True, **opts) -> tuple[Explanation, Path]:
    """Explain one or several trained runs (of one condition); writes explain.json and explain.html."""
    from .page import render

    o = ExplainOptions(**opts)
    run_dirs = [Path(r) for r in run_dirs]
    if not run_dirs:
        raise NumvarsError("give at least one run directory to explain")
    loaded = [load_run(r) for r in run_dirs]
    model, task, cfg, _ = loaded[0]
    for r, (_, other, _, _) in zip(run_dirs[1:], loaded[1:]):
        if other.spec != task.spec:
            raise NumvarsError(f"{r} was trained on another task than {run_dirs[0]}; explain runs of one condition")
    if out is not None:
        check_length(out, "out")
    out = Path(out) if out else inside(run_dirs[0], "explain")
    io.ensure_writable_dir(out)
    programs = o.programs()
    roots = [j for r in run_dirs for j in _jobs(o, programs, model, r)]
    results, _ = run_graph(roots, work, lambda j, res: [], jobs=jobs, progress=progress, desc="explain")
    rows, frames = [], []
    for j in roots:
        if j.kind == "das":
            s, rdir = results[j]["summary"], Path(results[j]["result_dir"])
            rows.append({"program": s["program"], "variable": ",".join(s["variables"]), "site": s["site"],
                         "map": s["map"], "k": s["k"], "control": s["control"], "iia": s["iia"], "val_iia": s["val_iia"]})
            frames.append(read_job_table(rdir, "das"))
    table, pair_frames = summarize(rows, frames)
    swap, attention = _pooled(roots, results)
    explanation = verdict(table, pair_frames, swap, attention, programs, o)
    doc = {**explanation.to_json(), "runs": [str(r) for r in run_dirs], "arch": cfg.model.arch,
           "task": cfg.task.name, "d_model": cfg.model.d_model}
    io.write_json(inside(out) / "explain.json", json.loads(json.dumps(doc, default=str)))
    render(explanation, out, title=f"{cfg.model.arch} on {cfg.task.name}, d = {cfg.model.d_model}, "
                                   f"{len(run_dirs)} run(s)")
    return explanation, out


def explain_jobs(run_dir, model_config, **opts) -> list:
    """The jobs `explain` runs on one run (for a caller that schedules them with its own); the run need not
    be trained yet: its sites come from an untrained model of `model_config` (a ModelConfig)."""
    o = ExplainOptions(**opts)
    return _jobs(o, o.programs(), build(model_config), Path(run_dir))


def _jobs(o: ExplainOptions, programs: dict, model, run_dir: Path) -> list:
    """The alignments, full swaps and attention test that explain one run, as engine jobs."""
    sites, default = o.sites(model), default_site(model)
    d = get_site(model, sites[0]).size
    out = [job("das", run_dir=str(run_dir), options=tuple(sorted(q.items())), keep_pairs=False)
           for q in requests(o, programs, sites, d, default)]
    if any(not p.variables for p in programs.values()):
        site = default if default in sites else sites[0]
        for control in (None, "untrained"):
            swap = {"match": "role", "seed": o.seed, "device": o.device, **({} if site == default else {"site": site}),
                    **({"control": control} if control else {})}
            out.append(job("fullswap", run_dir=str(run_dir), options=tuple(sorted(swap.items()))))
    if o.attention and hasattr(model, "blocks"):
        out.append(job("attention", run_dir=str(run_dir), options=(("device", o.device), ("seed", o.seed))))
    return out


def _pooled(roots, results) -> tuple[dict | None, dict | None]:
    swaps = [(dict(j.get("options")).get("control"), results[j]["summary"]) for j in roots if j.kind == "fullswap"]
    swap = None
    if swaps:
        on = [s for c, s in swaps if c is None]
        off = [s for c, s in swaps if c == "untrained"]
        swap = {"site": on[0]["site"], "iia": float(pd.Series([s["iia"] for s in on]).mean()),
                "untrained": float(pd.Series([s["iia"] for s in off]).mean()),
                "iia_by_program": {p: float(pd.Series([s["iia_by_program"][p] for s in on]).mean())
                                   for p in on[0]["iia_by_program"]}}
    tests = [results[j]["summary"] for j in roots if j.kind == "attention"]
    attention = None
    if tests:
        attention = {"accuracy": {e: float(pd.Series([t["accuracy"][e] for t in tests]).mean())
                                  for e in tests[0]["accuracy"]},
                     "base_accuracy": float(pd.Series([t["base_accuracy"] for t in tests]).mean()),
                     "layers": tests[0]["layers"], "n": sum(t["n"] for t in tests)}
    return swap, attention
