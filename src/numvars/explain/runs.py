"""`explain` on trained run directories, and the work of explain's jobs wherever they run.

The alignments, swaps and attention tests are cached in each run's align/ folder like every other job (so
`reproduce` and `explain` share them); a run's evidence job, last, caches what it found under
align/evidence-<hash>/. Several runs of one condition pool into one explanation.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import io
from ..jobs.engine import Job, run_graph
from ..jobs.progress import Progress
from ..errors import NumvarsError
from ..versions import note
from ..runs import load_run
from ..jobs.cache import work as job_work
from ..loaders import read_alignment_matrix, read_evidence, read_job_table, read_result, read_trials
from ..paths import check_length, inside
from .explanation import Explanation, named_variables, pool_alignments, shown_alignments, verdict
from .options import ExplainOptions
from .evidence import Evidence, Record, collect
from .plan import ExplainPlan, budget, evidence_dir

FRAMES = ("best", "checks", "duels", "sizes")


def explain_runs(run_dirs: list, out=None, jobs: int = 1, progress: bool = True, options: ExplainOptions | None = None,
                 **opts) -> tuple[Explanation, Path]:
    """Explain one or several trained runs (of one condition); writes explain.json and explain.html.
    `options`, or ExplainOptions fields as keywords."""
    from .page import render

    o = options or ExplainOptions(**opts)
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
    plan = ExplainPlan(o, programs, model, [str(r) for r in run_dirs], after_evidence=named_by_verdict)
    bar = Progress(budget(plan, cfg.model.arch, jobs), "explain", enabled=progress)
    try:
        run_graph(plan.roots(), work, plan, jobs=jobs, progress=bar)
    finally:
        bar.close()
    records = [records_of(plan.results[run]) for run in plan.runs]
    evidence = Evidence.pool([load_evidence(evidence_folder(plan.results[run])) for run in plan.runs])
    explanation = conclude(plan, records, evidence, work, jobs, False)      # its k sweep ran in the graph
    doc = {**explanation.to_json(), "runs": [str(r) for r in run_dirs], "arch": cfg.model.arch,
           "task": cfg.task.name, "d_model": cfg.model.d_model}
    io.write_json(inside(out) / "explain.json", json.loads(json.dumps(doc, default=str)))
    render(explanation, out, f"{cfg.model.arch} on {cfg.task.name}, d = {cfg.model.d_model}, "
                             f"{len(run_dirs)} run(s)", shown=shown_alignments(explanation, records))
    return explanation, out


def conclude(plan: ExplainPlan, records: list[list[Record]], ev: Evidence, work, jobs: int,
             progress: bool | Progress) -> Explanation:
    """The verdict from every run's alignments and evidence, then the k sweep of the named program's variables
    (it sizes what was found; it does not change the verdict) and the verdict again, with the sweep's rows."""
    if plan.sweep_decided:                    # it followed the evidence in the graph: its verdict named the sweep
        explanation, sweep = None, plan.sweep()
    else:
        explanation = verdict(*pool_alignments(records), ev, plan.programs, plan.o)
        sweep = plan.sweep(named_variables(explanation))
    if isinstance(progress, Progress):
        progress.credit(plan.skipped)
    if not sweep:
        return explanation or verdict(*pool_alignments(records), ev, plan.programs, plan.o)
    more, _ = run_graph(sweep, work, lambda j, r: [], jobs=min(jobs, len(sweep)), progress=progress, desc="k sweep")
    for i, run in enumerate(plan.runs):
        records[i] = records[i] + records_of({j: r for j, r in more.items() if j.get("run_dir") == run})
    return verdict(*pool_alignments(records), ev, plan.programs, plan.o)


def explain_plan(run_dir, model, gpu: float = 0.0, options: ExplainOptions | None = None, skipped: list | None = None,
                 **opts) -> ExplainPlan:
    """The plan of `explain` for one run (for a caller that schedules its jobs with its own, as `reproduce`
    does; its k sweep follows the evidence); `model` only tells its sites (an untrained model of the run's
    config will do)."""
    o = options or ExplainOptions(**opts)
    return ExplainPlan(o, o.programs(), model, [str(run_dir)], gpu=gpu, after_evidence=named_by_verdict,
                       skipped=skipped)


def named_by_verdict(plan: ExplainPlan) -> list[tuple[str, str, str, str]]:
    """What the verdict names (program, variable, site, map each), from every run's alignments and evidence on
    disk: what the k sweep sizes."""
    records = [records_of(plan.results[run]) for run in plan.runs]
    evidence = Evidence.pool([load_evidence(evidence_folder(plan.results[run])) for run in plan.runs])
    return named_variables(verdict(*pool_alignments(records), evidence, plan.programs, plan.o))


def evidence_folder(results: dict) -> Path:
    return next(Path(r["result_dir"]) for j, r in results.items() if j.kind == "evidence")


# --- the work of explain's jobs ------------------------------------------------------------------------------

def work(j: Job) -> dict:
    """Any job of `reproduce` or `explain` on run directories (the evidence job here, the rest in `jobs`)."""
    if j.kind == "evidence":
        return evidence_run(j)
    return job_work(j)


def in_memory_work(model, task, j: Job) -> dict:
    """explain's jobs on a model in memory: nothing is written; results carry the fitted alignments."""
    from ..align import DASOptions, FullSwapOptions, das, full_swap
    from ..align.attention import attention_test
    from ..align.protocol import AttentionOptions
    from ..align.search import das_set

    p = dict(j.params)
    if j.kind == "das":
        result = das(model, task, options=DASOptions(**dict(p["options"])))
        return {"summary": result.summary(), "result": result}
    if j.kind == "das_set":
        fitted = das_set(model, task, [DASOptions(**dict(o)) for o in p["options"]])
        return {"alignments": [{"summary": r.summary(), "result": r} for r in fitted]}
    if j.kind == "fullswap":
        result = full_swap(model, task, options=FullSwapOptions(**dict(p["options"])))
        return {"summary": result.summary(), "pairs": result.pairs}
    if j.kind == "attention":
        return {"summary": attention_test(model, task, options=AttentionOptions(**dict(p["options"]))).summary()}
    raise NumvarsError(f"unknown job kind {j.kind!r}")


def evidence_run(j: Job) -> dict:
    """A run's evidence (`evidence.collect`), computed once and kept under its align/ folder."""
    folder = Path(j.get("folder")) if j.get("folder") else evidence_dir(j)
    if (folder / "evidence.json").is_file():
        try:
            load_evidence(folder)
            return {"result_dir": str(folder)}
        except NumvarsError as e:               # a damaged cache: computed again
            note(f"ignoring the damaged evidence in {folder} ({e}); computing it again")
    o = ExplainOptions(**dict(j.get("options")))
    model, task, _, _ = load_run(j.get("run_dir"))
    results = {}
    for d in j.get("alignments"):
        results[Job("das", (("dir", d),))] = {"summary": _summary(d, "das"), "result_dir": d}
    for control, d in j.get("swaps"):
        options = (("control", None if control == "none" else control),)
        results[Job("fullswap", (("options", options), ("dir", d)))] = {"summary": _summary(d, "fullswap"),
                                                                         "result_dir": d}
    if j.get("attention"):
        d = j.get("attention")
        results[Job("attention", (("dir", d),))] = {"summary": _summary(d, "attention"), "result_dir": d}
    frames, summary, attention = swap_inputs(results)
    ev = collect(model, task, o, o.programs(), records_of(results), frames, summary, attention)
    for name, frame in ev.frames().items():
        io.write_table(folder / f"{name}.parquet", frame)
    io.write_json(folder / "evidence.json", {"swap": ev.swap, "attention": ev.attention})   # last: complete
    return {"result_dir": str(folder)}


def _summary(folder, kind: str) -> dict:
    """A finished job's result.json, read by its checking loader (its own options are what it records)."""
    data = io.read_json(inside(folder, "result.json"))
    done = read_result(Path(folder), kind, data.get("options", {}) if isinstance(data, dict) else {})
    if done is None:
        raise NumvarsError(f"{folder} is not a finished {kind} result; delete it and rerun `numvars explain`")
    return done


def load_evidence(folder: Path) -> Evidence:
    meta, frames = read_evidence(folder, FRAMES)
    return Evidence(*(frames[name] for name in FRAMES), swap=meta.get("swap"), attention=meta.get("attention"))


# --- reading results ---------------------------------------------------------------------------------------

def records_of(results: dict) -> list[Record]:
    """The fitted alignments among job results (in memory: with their DASResult; on disk: their folder)."""
    out, seen = [], set()
    for j, r in results.items():
        if j.kind not in ("das", "das_set"):
            continue
        for a in r.get("alignments", [r]):
            s = a["summary"]
            where = a.get("result_dir") or id(a.get("result"))
            if where in seen:
                continue
            seen.add(where)
            if "result" in a:
                matrix, frame, trials = a["result"].matrix, a["result"].pairs, a["result"].trials
            else:
                matrix = read_alignment_matrix(where)
                frame, trials = read_job_table(Path(where), "das"), _trials(Path(where))
            out.append(Record(s["program"], ",".join(s["variables"]), s["site"], s["map"], int(s["k"]),
                              s["control"] or "none", int(s["seed"]), float(s["iia"]), float(s["val_iia"]), matrix,
                              frame, trials))
    # in a fixed order, whatever order the jobs finished in: tables, pages and intervals are then the same
    return sorted(out, key=lambda r: (r.program, r.variable, r.site, r.control, r.map, r.k, r.seed))


def _trials(folder: Path) -> pd.DataFrame | None:
    """An alignment's saved trials; a damaged file is noted and left out (the page says none were saved)."""
    try:
        return read_trials(folder)
    except NumvarsError as e:
        note(f"leaving out the trials of {folder} ({e})")
        return None


def swap_inputs(results: dict) -> tuple[dict, dict | None, dict | None]:
    """(per-pair frames of the full swaps by control, the model's swap summary, the attention test's summary)."""
    frames, summary, attention = {}, None, None
    for j, r in results.items():
        if j.kind == "fullswap":
            control = dict(j.get("options")).get("control") or "none"
            frames[control] = r["pairs"] if "pairs" in r else read_job_table(Path(r["result_dir"]), "fullswap")
            if control == "none":
                summary = r["summary"]
        elif j.kind == "attention":
            attention = r["summary"]
    return frames, summary, attention
