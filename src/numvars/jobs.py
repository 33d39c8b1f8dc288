"""Jobs on run directories: load a trained run, align or full-swap it, save the result once.

Results live under RUN_DIR/align/<name>/ where the name is a hash of the options, so a rerun
reuses a finished result and a killed one starts again cleanly (files are written atomically,
result.json last).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import io, models, stale
from .align import DASOptions, FullSwapOptions, das, full_swap
from .config import RunConfig
from .errors import NumvarsError


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
                               f"{summary.get('trial_accuracy', 0):.3f}); train longer with a larger max_epochs")
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
    o = DASOptions(**opts)
    model, task, _, _ = load_run(run_dir, require_trained=checkpoint is None, checkpoint=checkpoint)
    key = das_key(checkpoint, **opts)
    out, done = _prepare(run_dir, "das", key)
    if done is not None:
        return done, out, True
    fields = {k: v for k, v in vars(o).items() if k not in ("program", "variable")}
    result = das(model, task, o.program, o.variable, progress=progress, **fields)
    record = {"protocol": stale.current(), "options": key}
    result.save(out, record)
    return {**result.summary(), **record}, out, False


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
