"""Jobs on run directories: train, evaluate, align, full-swap or attention-test a run, each saved once.

Results live under RUN_DIR/align/<name>/ where the name is a hash of the options (and the protocol
version), so a rerun reuses a finished result and a killed one starts again cleanly (files are
written atomically, result.json last). `work(job)` runs any of them for the engine.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from . import io, models, stale
from .align import DASOptions, FullSwapOptions, das, full_swap
from .config import RunConfig
from .engine import Job, job
from .errors import NumvarsError

PAIR_COLUMNS = ("map", "base_value", "source_value", "abs_diff", "correct", "phase_t", "phase_u", "trivial",
                "signed_error")


def load_run(run_dir, require_trained: bool = True, checkpoint: str | None = None):
    """(model, task, config, summary) of a run directory."""
    run_dir = Path(run_dir)
    model = models.load(run_dir, checkpoint)
    cfg = RunConfig.from_sections(io.read_yaml(run_dir / "config.yaml"))
    summary = io.read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else None
    if require_trained:
        if summary is None:
            raise NumvarsError(f"run {run_dir} has not finished training; finish it with `numvars train --from "
                               f"{run_dir}`")
        if not summary.get("reached_criterion"):
            raise NumvarsError(f"run {run_dir} never reached the accuracy criterion (trial accuracy "
                               f"{summary.get('trial_accuracy', 0):.3f}); train a new run with a larger max_epochs "
                               f"(e.g. `numvars train --from {run_dir} max_epochs=...`, which starts from scratch)")
    return model, cfg.make_task(), cfg, summary


def job_name(kind: str, key: dict) -> str:
    """A readable name plus a hash of the options that change the result."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
    label = "-".join(str(key[k]).replace(",", "+") for k in ("program", "variable") if k in key)
    return f"{kind}-{label}-{digest}" if label else f"{kind}-{digest}"


def result_dir(run_dir, kind: str, key: dict) -> Path:
    """Where a job's result lives; the key includes the protocol version, so results of older code
    are never reused."""
    return Path(run_dir) / "align" / job_name(kind, {**key, "protocol": stale.current()})


def das_key(checkpoint: str | None = None, **opts) -> dict:
    return {**DASOptions(**opts).key(), **({"checkpoint": checkpoint} if checkpoint else {})}


def das_options(opts: dict) -> tuple:
    """An alignment's options as a job holds them: those that change its result, plus where it runs; two
    requests of one alignment give equal tuples, so the engine runs it once."""
    o = DASOptions(**opts)
    return tuple(sorted({**o.key(), "device": o.device}.items()))


def das_job(run_dir, gpu: float = 0.0, **opts) -> Job:
    """The job of one alignment of a trained run."""
    return job("das", gpu=gpu, run_dir=str(run_dir), options=das_options(opts))


def das_set_job(run_dir, option_sets: list[dict], gpu: float = 0.0) -> Job:
    """One job for several alignments of one variable (a k sweep, maps, controls): they share pairs and states."""
    return job("das_set", gpu=gpu, run_dir=str(run_dir), options=tuple(das_options(o) for o in option_sets))


def _prepare(run_dir, kind: str, key: dict) -> tuple[Path, dict | None]:
    """The job's folder and its finished result (None when it must run); the folder must be writable
    before any work starts. Results of an older protocol are reported and ignored."""
    out = result_dir(run_dir, kind, key)
    key = {**key, "protocol": stale.current()}
    if (out / "result.json").is_file():
        return out, io.read_json(out / "result.json")
    io.ensure_writable_dir(out.parent)
    same = {k: v for k, v in key.items() if k != "protocol"}
    stale.report(out.parent, f"{kind}-*", "result.json", lambda old: _same_job(old, same))
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


def align_run(run_dir, checkpoint: str | None = None, progress: bool = False, **opts) -> tuple[dict, Path, bool]:
    """DAS on a trained run (or one of its checkpoints); returns (summary, result dir, reused).
    `opts` are DASOptions fields (strings from the command line are parsed)."""
    from .align.search import check

    o = DASOptions(**opts)
    model, task, _, _ = load_run(run_dir, require_trained=checkpoint is None, checkpoint=checkpoint)
    fields = {k: v for k, v in vars(o).items() if k not in ("program", "variable")}
    check(model, o.program, o.variable, fields)          # a request that cannot run makes no align/ folder
    key = das_key(checkpoint, **opts)
    out, done = _prepare(run_dir, "das", key)
    if done is not None:
        return done, out, True
    result = das(model, task, o.program, o.variable, progress=progress, **fields)
    record = {"protocol": stale.current(), "options": key}
    result.save(out, record)
    return {**result.summary(), **record}, out, False


def align_set(run_dir, option_sets: list[dict], progress: bool = False) -> list[tuple[dict, Path, bool]]:
    """`align_run` for each option set (one program variable; see `search.das_set`), computing the missing
    ones together; each is saved where `align_run` saves it, so either finds the other's."""
    from .align.search import das_set

    model, task, _, _ = load_run(run_dir)
    out, todo = [None] * len(option_sets), []
    for i, opts in enumerate(option_sets):
        key = das_key(**opts)
        rdir, done = _prepare(run_dir, "das", key)
        if done is not None:
            out[i] = (done, rdir, True)
        else:
            todo.append((i, rdir, key, {k: v for k, v in vars(DASOptions(**opts)).items()
                                        if k not in ("program", "variable")}))
    if todo:
        first = DASOptions(**option_sets[todo[0][0]])
        fitted = das_set(model, task, first.program, first.variable, [t[3] for t in todo], progress=progress)
        for (i, rdir, key, _), result in zip(todo, fitted):
            record = {"protocol": stale.current(), "options": key}
            result.save(rdir, record)
            out[i] = ({**result.summary(), **record}, rdir, False)
    return out


def full_swap_run(run_dir, **opts) -> tuple[dict, Path, bool]:
    """The full-state swap on a trained run; `opts` are FullSwapOptions fields."""
    o = FullSwapOptions(**opts)
    model, task, _, _ = load_run(run_dir)
    out, done = _prepare(run_dir, "fullswap", o.key())
    if done is not None:
        return done, out, True
    result = full_swap(model, task, **vars(o))
    summary = {**result.summary(), "protocol": stale.current(), "options": o.key()}
    io.write_table(out / "pairs.parquet", result.pairs)
    io.write_json(out / "result.json", summary)
    return summary, out, False


def attention_key(n: int = 300, seed: int = 0, layers: tuple[int, ...] | None = None, device: str = "cpu") -> dict:
    """The options of an attention test that change its result (its job key)."""
    return {"n": n, "seed": seed, **({"layers": list(layers)} if layers is not None else {})}


def attention_run(run_dir, n: int = 300, seed: int = 0, layers: tuple[int, ...] | None = None,
                  device: str = "cpu") -> tuple[dict, Path, bool]:
    """The attention test of a trained Transformer run, cached like the alignments."""
    from .align.attention import attention_test

    key = attention_key(n, seed, layers)
    model, task, _, _ = load_run(run_dir)
    out, done = _prepare(run_dir, "attention", key)
    if done is not None:
        return done, out, True
    result = attention_test(model, task, n=n, seed=seed, layers=layers, device=device)
    summary = {**result.summary(), "protocol": stale.current(), "options": key}
    io.write_table(out / "trials.parquet", result.trials)
    io.write_json(out / "result.json", summary)
    return summary, out, False


def work(j: Job) -> dict:
    """Compute one job (in whatever process runs it) and return its small result."""
    p = dict(j.params)
    if j.kind == "train":
        from .config import from_mapping
        from .train import train
        result = train(from_mapping(dict(p["config"])), progress=False)
        return {"summary": result.summary, "run_dir": str(result.run_dir)}
    if j.kind == "oor":
        return {"rows": _oor(Path(p["run_dir"]), p["max_count"], p["per_count"])}
    if j.kind == "das":
        summary, rdir, _ = align_run(p["run_dir"], checkpoint=p.get("checkpoint"), **dict(p["options"]))
        return das_output(j, summary, rdir)
    if j.kind == "das_set":
        done = align_set(p["run_dir"], [dict(o) for o in p["options"]])
        return {"alignments": [{"summary": s, "result_dir": str(d)} for s, d, _ in done]}
    if j.kind == "fullswap":
        summary, rdir, _ = full_swap_run(p["run_dir"], **dict(p["options"]))
        return {"summary": summary, "result_dir": str(rdir)}
    if j.kind == "attention":
        summary, rdir, _ = attention_run(p["run_dir"], **dict(p["options"]))
        return {"summary": summary, "result_dir": str(rdir)}
    if j.kind == "cross":
        summary, rdir, _ = cross_run(p["run_a"], p["run_b"], **dict(p["options"]))
        return {"summary": summary, "result_dir": str(rdir)}
    raise NumvarsError(f"unknown job kind {j.kind!r}")


def das_output(j: Job, summary: dict, rdir: Path) -> dict:
    """A das job's result: its summary and where it lives."""
    return {"summary": summary, "result_dir": str(rdir)}


def pair_rows(result_dir, map_: str) -> list[dict]:
    """An alignment's per-pair rows as the reproduction's pairs table keeps them."""
    pairs = pd.read_parquet(Path(result_dir) / "pairs.parquet")
    return pairs[[c for c in PAIR_COLUMNS if c in pairs]].assign(map=map_).to_dict("records")


def _oor(run_dir: Path, max_count: int, per_count: int) -> list[dict]:
    from .evaluate import count_table

    path = run_dir / f"eval_max{max_count}_per{per_count}.csv"
    if not path.is_file():
        model, task, _, _ = load_run(run_dir, require_trained=False)
        io.write_table(path, count_table(model, task, max_count, per_count))
    return pd.read_csv(path).to_dict("records")


def align_runs(items: list[tuple]) -> list[tuple[dict, Path, bool]]:
    """`align_run(run_dir, checkpoint, **opts)` for each (run_dir, checkpoint, opts) item, the ones to
    compute fitted together by `das_many` (GRUs or LSTMs of one config). Results are saved as
    `align_run` saves them, so either finds the other's."""
    from .align import DASRequest, das_many

    out, todo = [None] * len(items), []
    for i, (run_dir, checkpoint, opts) in enumerate(items):
        o = DASOptions(**opts)
        model, task, _, _ = load_run(run_dir, require_trained=checkpoint is None, checkpoint=checkpoint)
        key = das_key(checkpoint, **opts)
        rdir, done = _prepare(run_dir, "das", key)
        if done is not None:
            out[i] = (done, rdir, True)
            continue
        fields = {k: v for k, v in vars(o).items() if k not in ("program", "variable")}
        todo.append((i, rdir, key, DASRequest(model, task, o.program, o.variable, options=fields)))
    for (i, rdir, key, _), result in zip(todo, das_many([t[3] for t in todo]) if todo else []):
        record = {"protocol": stale.current(), "options": key}
        result.save(rdir, record)
        out[i] = ({**result.summary(), **record}, rdir, False)
    return out


CROSS_KEYS = {"program": str, "variable": str, "k": int, "map": str, "seed": int, "n_train": int, "n_val": int,
              "n_test": int, "max_epochs": int, "within": bool, "init": str, "device": str}


def cross_run(run_a, run_b, progress: bool = False, **opts) -> tuple[dict, Path, bool]:
    """Cross-model alignment of two trained runs (one condition's task), cached under RUN_A/align/."""
    from .align.cross import align_models

    model_a, task_a, _, _ = load_run(run_a)
    model_b, task_b, _, _ = load_run(run_b)
    if task_a.spec != task_b.spec:
        raise NumvarsError(f"{run_a} and {run_b} were trained on different tasks; align models of one task")
    key = {"other": Path(run_b).name, **{k: v for k, v in opts.items() if k != "device"}}   # run B by its run id
    out, done = _prepare(run_a, "cross", key)
    if done is not None:
        return done, out, True
    result = align_models(model_a, model_b, task_a, progress=progress, **opts)
    summary = {**result.summary(), "run_a": str(run_a), "run_b": str(run_b), "protocol": stale.current(),
               "options": key}
    io.write_table(out / "pairs.parquet", result.pairs)
    io.write_json(out / "result.json", summary)
    return summary, out, False
