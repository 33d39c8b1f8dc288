"""Jobs on run directories: train, evaluate, align, full-swap or attention-test a run, each saved once.

Results live under RUN_DIR/align/<name>/ where the name is a hash of the options (and the protocol
version), so a rerun reuses a finished result and a killed one starts again cleanly (files are
written atomically, result.json last). `work(job)` runs any of them for the engine.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import io, loaders, models, versions
from .. import options
from ..align import DASOptions, FullSwapOptions, das, full_swap
from ..align.protocol import AttentionOptions, AlignModelsOptions
from .engine import Job, job
from ..runs import load_run
from ..errors import NumvarsError
from ..paths import component, inside

PAIR_COLUMNS = ("map", "base_value", "source_value", "abs_diff", "correct", "phase_t", "phase_u", "trivial",
                "signed_error")


def job_name(kind: str, key: dict) -> str:
    """A readable name plus a hash of the options that change the result."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
    label = "-".join(component(str(key[k]).replace(",", "+")) for k in ("program", "variable") if k in key)
    return f"{kind}-{label}-{digest}" if label else f"{kind}-{digest}"


def result_dir(run_dir, kind: str, key: dict) -> Path:
    """Where a job's result lives; the key includes the protocol version, so results of older code
    are never reused."""
    return inside(run_dir, "align", job_name(kind, {**key, "protocol": versions.current()}))


def das_key(o: DASOptions, checkpoint: str | None = None) -> dict:
    """An alignment's cache key: its options' key, and the checkpoint it was fitted on (if not the final one)."""
    return {**o.key(), **({"checkpoint": checkpoint} if checkpoint else {})}


def das_options(o: DASOptions) -> tuple:
    """An alignment's options as a job holds them: those given (differing from the defaults), plus where it
    runs; two requests of one alignment give equal tuples, so the engine runs it once."""
    return tuple(sorted({**o.given(), "device": o.device}.items()))


def das_job(run_dir, o: DASOptions, gpu: float = 0.0, **more) -> Job:
    """The job of one alignment of a trained run (`more`: a checkpoint and its epoch, for the dynamics)."""
    return job("das", gpu=gpu, run_dir=str(run_dir), options=das_options(o), **more)


def das_set_job(run_dir, option_sets: list[DASOptions], gpu: float = 0.0) -> Job:
    """One job for several alignments of one variable (a k sweep, maps, controls): they share pairs and states."""
    return job("das_set", gpu=gpu, run_dir=str(run_dir), options=tuple(das_options(o) for o in option_sets))


def set_members(j: Job) -> list[Job]:
    """A das_set job's alignments, each as its own das job."""
    return [das_job(j.get("run_dir"), DASOptions(**dict(o)), j.gpu) for o in j.get("options")]


def _prepare(run_dir, kind: str, key: dict) -> tuple[Path, dict | None]:
    """The job's folder and its finished result (None when it must run); the folder must be writable
    before any work starts. Results of an older protocol are reported and ignored."""
    out = result_dir(run_dir, kind, key)
    done = loaders.read_result(out, kind, key)
    if done is not None:
        return out, done
    io.ensure_writable_dir(out.parent)
    versions.report(out.parent, f"{kind}-*", "result.json", lambda old: _same_job(old, key))
    return out, None


def _same_job(old: dict, key: dict) -> bool:
    """Whether an older result.json is the same job as `key`: by its options, or (results written before
    options were recorded) by the fields its summary holds."""
    if "options" in old:
        return old["options"] == key
    if "variables" in old:
        old = {**old, "variable": ",".join(old["variables"])}
    shared = [k for k in ("program", "variable", "map", "control", "seed", "n", "k")
              if k in old and key.get(k) is not None or k in ("control",) and k in old]
    return bool(shared) and all(old[k] == key[k] for k in shared)


def cached(run_dir, kind: str, key: dict, compute) -> tuple[dict, Path, bool]:
    """(summary, result dir, reused) of a job: its finished result from disk, or compute() saved there
    (the result saves itself; result.json, written last, records the protocol and the options)."""
    out, done = _prepare(run_dir, kind, key)
    if done is not None:
        return done, out, True
    result = compute()
    record = {"protocol": versions.current(), "options": key}
    result.save(out, record)
    return {**result.summary(), **record}, out, False


def align_run(run_dir, o: DASOptions, checkpoint: str | None = None, progress: bool = False) \
        -> tuple[dict, Path, bool]:
    """DAS on a trained run (or one of its checkpoints); returns (summary, result dir, reused)."""
    from ..align.search import check

    model, task, _, _ = load_run(run_dir, require_trained=checkpoint is None, checkpoint=checkpoint)
    check(model, o)                                   # a request that cannot run makes no align/ folder
    return cached(run_dir, "das", das_key(o, checkpoint), lambda: das(model, task, options=o, progress=progress))


def align_set(run_dir, option_sets: list[DASOptions], progress: bool = False) -> list[tuple[dict, Path, bool]]:
    """`align_run` for each options object (one program variable; see `search.das_set`), computing the missing
    ones together; each is saved where `align_run` saves it, so either finds the other's."""
    from ..align.search import das_set

    model, task, _, _ = load_run(run_dir)
    out, todo = [None] * len(option_sets), []
    for i, o in enumerate(option_sets):
        rdir, done = _prepare(run_dir, "das", das_key(o))
        if done is not None:
            out[i] = (done, rdir, True)
        else:
            todo.append(i)
    fitted = iter(das_set(model, task, [option_sets[i] for i in todo], progress=progress) if todo else [])
    for i in todo:
        result = next(fitted)
        out[i] = cached(run_dir, "das", das_key(option_sets[i]), lambda: result)
    return out


def full_swap_run(run_dir, o: FullSwapOptions) -> tuple[dict, Path, bool]:
    """The full-state swap on a trained run."""
    model, task, _, _ = load_run(run_dir)
    return cached(run_dir, "fullswap", o.key(), lambda: full_swap(model, task, options=o))


def attention_run(run_dir, o: AttentionOptions) -> tuple[dict, Path, bool]:
    """The attention test of a trained Transformer run, cached like the alignments."""
    from ..align.attention import attention_test

    model, task, _, _ = load_run(run_dir)
    return cached(run_dir, "attention", o.key(), lambda: attention_test(model, task, options=o))


def work(j: Job) -> dict:
    """Compute one job (in whatever process runs it) and return its small result."""
    p = dict(j.params)
    if j.kind == "train":
        from ..config import from_mapping
        from ..train import train
        result = train(from_mapping(dict(p["config"])), progress=False)
        return {"summary": result.summary, "run_dir": str(result.run_dir)}
    if j.kind == "eval":
        return {"rows": accuracy_per_count(Path(p["run_dir"]), p["max_count"], p["per_count"])}
    if j.kind == "das":
        summary, rdir, _ = align_run(p["run_dir"], DASOptions(**dict(p["options"])), p.get("checkpoint"))
        return das_output(j, summary, rdir)
    if j.kind == "das_set":
        done = align_set(p["run_dir"], [DASOptions(**dict(o)) for o in p["options"]])
        return {"alignments": [{"summary": s, "result_dir": str(d)} for s, d, _ in done]}
    if j.kind == "fullswap":
        summary, rdir, _ = full_swap_run(p["run_dir"], FullSwapOptions(**dict(p["options"])))
        return {"summary": summary, "result_dir": str(rdir)}
    if j.kind == "attention":
        summary, rdir, _ = attention_run(p["run_dir"], AttentionOptions(**dict(p["options"])))
        return {"summary": summary, "result_dir": str(rdir)}
    if j.kind == "align_models":
        summary, rdir, _ = align_models_run(p["run_a"], p["run_b"], AlignModelsOptions(**dict(p["options"])))
        return {"summary": summary, "result_dir": str(rdir)}
    raise NumvarsError(f"unknown job kind {j.kind!r}")


def das_output(j: Job, summary: dict, rdir: Path) -> dict:
    """A das job's result: its summary and where it lives."""
    return {"summary": summary, "result_dir": str(rdir)}


def pair_rows(result_dir, map_: str) -> list[dict]:
    """An alignment's per-pair rows as the reproduction's pairs table keeps them."""
    pairs = loaders.read_job_table(Path(result_dir), "das")
    return pairs[[c for c in PAIR_COLUMNS if c in pairs]].assign(map=map_).to_dict("records")


def accuracy_per_count(run_dir: Path, max_count: int, per_count: int) -> list[dict]:
    """Free-running trial accuracy for counts 1..max_count, inside and beyond the training range (the
    out-of-range analysis), cached as RUN/eval_max<M>_per<N>.csv as `numvars eval` caches it."""
    from ..evaluate import count_table

    name = f"eval_max{max_count}_per{per_count}.csv"
    table = loaders.read_eval(run_dir, name)
    if table is None:
        model, task, _, _ = load_run(run_dir, require_trained=False)
        io.write_table(inside(run_dir) / name, count_table(model, task, max_count, per_count))
        table = loaders.read_eval(run_dir, name)
    return table.to_dict("records")


def align_runs(items: list[tuple]) -> list[tuple[dict, Path, bool]]:
    """`align_run(run_dir, options, checkpoint)` for each (run_dir, checkpoint, options) item, the ones to
    compute fitted together by `das_many` (GRUs or LSTMs of one config). Results are saved as
    `align_run` saves them, so either finds the other's."""
    from ..align import DASRequest, das_many

    out, todo = [None] * len(items), []
    for i, (run_dir, checkpoint, o) in enumerate(items):
        rdir, done = _prepare(run_dir, "das", das_key(o, checkpoint))
        if done is not None:
            out[i] = (done, rdir, True)
            continue
        model, task, _, _ = load_run(run_dir, require_trained=checkpoint is None, checkpoint=checkpoint)
        todo.append((i, DASRequest(model, task, o)))
    fitted = iter(das_many([r for _, r in todo]) if todo else [])
    for i, _ in todo:
        result = next(fitted)
        run_dir, checkpoint, o = items[i]
        out[i] = cached(run_dir, "das", das_key(o, checkpoint), lambda: result)
    return out


CROSS_KEYS = options.schema_of(AlignModelsOptions)


def align_models_run(run_a, run_b, o: AlignModelsOptions, progress: bool = False) -> tuple[dict, Path, bool]:
    """Cross-model alignment of two trained runs (one condition's task), cached under RUN_A/align/ with run B
    named by its run id."""
    from ..align.align_models import align_models

    model_a, task_a, _, _ = load_run(run_a)
    model_b, task_b, _, _ = load_run(run_b)
    if task_a.spec != task_b.spec:
        raise NumvarsError(f"{run_a} and {run_b} were trained on different tasks; align models of one task")
    key = {"other": Path(run_b).name, **o.key()}
    summary, out, reused = cached(run_a, "align_models", key, lambda: align_models(model_a, model_b, task_a, options=o,
                                                                           progress=progress))
    return {**summary, "run_a": str(run_a), "run_b": str(run_b)}, out, reused


# --- a job's state on disk (for plans: what is done, and what a finished job returned) -------------------

def job_dir(j: Job) -> Path:
    """Where a das, fullswap or attention job keeps its result."""
    p = dict(j.params)
    opts = dict(p["options"])
    if j.kind == "das":
        key = das_key(DASOptions(**opts), p.get("checkpoint"))
    elif j.kind == "attention":
        key = AttentionOptions(**opts).key()
    else:
        key = FullSwapOptions(**opts).key()
    return result_dir(p["run_dir"], j.kind, key)


def is_done(j: Job) -> bool:
    p = dict(j.params)
    if j.kind == "das_set":
        return all(is_done(m) for m in set_members(j))
    if j.kind == "eval":
        return (Path(p["run_dir"]) / f"eval_max{p['max_count']}_per{p['per_count']}.csv").is_file()
    return (job_dir(j) / "result.json").is_file()


def finished(j: Job) -> dict | None:
    """A finished job's result as the engine hands it to `expand` (None when it has not run). An evidence
    job (explain's) names its own folder in its options."""
    if j.kind == "evidence":
        folder = Path(j.get("folder", ""))
        return {"result_dir": str(folder)} if j.get("folder") and (folder / "evidence.json").is_file() else None
    if j.kind == "das_set":
        members = [finished(m) for m in set_members(j)]
        return None if any(m is None for m in members) else {"alignments": members}
    if not is_done(j):
        return None
    folder = job_dir(j)
    return {"summary": io.read_json(folder / "result.json"), "result_dir": str(folder)}
