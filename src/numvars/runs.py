"""Trained run directories: what a run holds, loaded and checked (its model, task, config and summary)."""
from __future__ import annotations

from pathlib import Path

from . import loaders, models
from .errors import NumvarsError


def load_run(run_dir, require_trained: bool = True, checkpoint: str | None = None):
    """(model, task, config, summary) of a run directory, or of an adapter folder (`numvars adapt`: a model
    numvars did not train, seen through nnsight; its config is the adapter file's contents, and it counts as
    trained)."""
    run_dir = Path(run_dir)
    from .adapters.folder import is_adapter_folder, read_folder
    if is_adapter_folder(run_dir):
        if checkpoint is not None:
            raise NumvarsError(f"{run_dir} is an adapter folder; it has no checkpoints")
        model, task, data = read_folder(run_dir)
        return model, task, data, {"reached_criterion": True, "adapter": True}
    model = models.load(run_dir, checkpoint)
    cfg = loaders.read_config(run_dir)
    summary = loaders.read_summary(run_dir) if require_trained else None
    if require_trained:
        if summary is None:
            raise NumvarsError(f"run {run_dir} has not finished training; finish it with `numvars train --from "
                               f"{run_dir}`")
        if not summary.get("reached_criterion"):
            raise NumvarsError(f"run {run_dir} never reached the accuracy criterion (trial accuracy "
                               f"{summary.get('trial_accuracy', 0):.3f}); train a new run with a larger max_epochs "
                               f"(e.g. `numvars train --from {run_dir} max_epochs=...`, which starts from scratch)")
    return model, cfg.make_task(), cfg, summary
