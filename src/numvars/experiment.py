"""Jobs on run directories: load a trained run, align or full-swap it, save the result once.

Results live under RUN_DIR/align/<name>/ where the name is a hash of the options, so a rerun
reuses a finished result and a killed one starts again cleanly (files are written atomically,
result.json last).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import io, models
from .align import das, full_swap
from .config import RunConfig, parse_typed
from .errors import NumvarsError
from .train import resolve_device


def load_run(run_dir, require_trained: bool = True, checkpoint: str | None = None):
    """(model, task, config, summary) of a run directory."""
    run_dir = Path(run_dir)
    model = models.load(run_dir, checkpoint)
    cfg = RunConfig.from_sections(io.read_yaml(run_dir / "config.yaml"))
    summary = io.read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else None
    if require_trained:
        if summary is None:
            raise NumvarsError(f"run {run_dir} has not finished training; rerun `numvars train` with its config")
        if not summary.get("reached_criterion"):
            raise NumvarsError(f"run {run_dir} never reached the accuracy criterion (trial accuracy "
                               f"{summary.get('trial_accuracy', 0):.3f}); train longer with a larger max_epochs")
    return model, cfg.make_task(), cfg, summary


def _job_name(kind: str, opts: dict) -> str:
    """A readable name plus a hash of the options that change the result (not the device)."""
    keyed = {k: v for k, v in opts.items() if k != "device"}
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:8]
    label = "-".join(str(opts[k]).replace(",", "+") for k in ("program", "variable") if k in opts)
    return f"{kind}-{label}-{digest}" if label else f"{kind}-{digest}"


def align_run(run_dir, checkpoint: str | None = None, progress: bool = False, **opts) -> tuple[dict, Path, bool]:
    """DAS on a trained run (or one of its checkpoints); returns (summary, result dir, reused)."""
    if "device" in opts:
        opts["device"] = str(resolve_device(opts["device"]))
    model, task, _, _ = load_run(run_dir, require_trained=checkpoint is None, checkpoint=checkpoint)
    key = {**opts, "checkpoint": checkpoint} if checkpoint else dict(opts)
    out = Path(run_dir) / "align" / _job_name("das", key)
    if (out / "result.json").is_file():
        return io.read_json(out / "result.json"), out, True
    result = das(model, task, progress=progress, **opts)
    result.save(out)
    return result.summary(), out, False


FULLSWAP_KEYS = {"site": str, "n": int, "seed": int}


def full_swap_run(run_dir, **raw) -> tuple[dict, Path, bool]:
    """The full-state swap on a trained run; options (site, n, seed) may be strings from the CLI."""
    opts = parse_typed(raw, FULLSWAP_KEYS, "fullswap")
    model, task, _, _ = load_run(run_dir)
    out = Path(run_dir) / "align" / _job_name("fullswap", opts)
    if (out / "result.json").is_file():
        return io.read_json(out / "result.json"), out, True
    result = full_swap(model, task, **opts)
    io.write_table(out / "pairs.parquet", result.pairs)
    io.write_json(out / "result.json", result.summary())
    return result.summary(), out, False
