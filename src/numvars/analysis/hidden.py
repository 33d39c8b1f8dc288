"""Looking inside trained models for the figures: hidden-state PCA and attention weights.

These read run directories (the only analyses that need the models themselves) and return plain
arrays and rows; `numvars.figures` draws them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import NumvarsError
from ..figures import TRAIN_MAX_COUNT
from ..paths import inside
from ..runs import load_run
from ..programs import get_program, trace
from ..tasks import PAD
from .tables import where


def run_dir(root: Path, recorded) -> Path | None:
    """A run directory as recorded (absolute, or relative to the working directory or the results), or by
    its name under RESULTS/runs/ (a results folder that was moved); only inside the results folder: a table
    naming a folder elsewhere reads nothing there."""
    recorded = Path(str(recorded))
    for path in (recorded, root / recorded, root.parent / recorded, root / "runs" / recorded.name):
        try:
            if (inside(root, path.resolve().relative_to(root.resolve())) / "config.yaml").is_file():
                return path
        except (ValueError, OSError, NumvarsError):
            continue
    return None


def pick_runs(runs: pd.DataFrame, arch: str, variants, d_model: int) -> list[tuple[str, pd.Series]]:
    """(variant, run row) for each variant present: Multi-Object first, the closest d, the lowest seed."""
    picked = []
    for variant in variants:
        rows = where(runs, arch=arch, variant=variant)
        if rows.empty:
            continue
        rank = rows.assign(_task=rows["task"] != "multi_object", _gap=(rows["d_model"] - d_model).abs())
        picked.append((variant, rank.sort_values(["_task", "_gap", "seed"]).iloc[0]))
    return picked


def load(root: Path, row: pd.Series):
    """(model on the CPU, task) of a recorded run, or None when it cannot be loaded."""
    path = run_dir(root, row["run_dir"])
    if path is None:
        return None
    try:
        model, task, _, _ = load_run(path, require_trained=False)
    except NumvarsError:
        return None
    return model.cpu(), task


def pca_states(model, task, n: int = 200, seed: int = 0, train_max: int = TRAIN_MAX_COUNT) -> dict:
    """Hidden states at non-PAD positions of n sequences (counts 1..train_max), projected on their top PCs."""
    batch = task.sample(n, seed=seed, counts=range(1, train_max + 1))
    with torch.no_grad():
        states = model.states(batch.tokens)                      # (B, L, d)
    keep = batch.roles != PAD
    x = states[keep].double().numpy()
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    program = trace(get_program("up_down"), batch.roles)
    return {"pcs": x @ vt[:2].T, "explained": s ** 2 / (s ** 2).sum(), "d_model": int(states.shape[-1]),
            "count": program["count"][keep].numpy(), "phase": program["phase"][keep].numpy()}


def pca_inputs(root: Path, runs: pd.DataFrame, d_model: int, train_max: int = TRAIN_MAX_COUNT) \
        -> list[tuple[pd.Series, dict]]:
    """One GRU and one LSTM run (variant default) with the PCA of their states."""
    found = []
    for arch in ("gru", "lstm"):
        for _, row in pick_runs(runs, arch, ("default",), d_model)[:1]:
            loaded = load(root, row)
            if loaded is not None and callable(getattr(loaded[0], "states", None)):
                found.append((row, pca_states(*loaded, train_max=train_max)))
    return found


def pca_table(found: list[tuple[pd.Series, dict]]) -> pd.DataFrame:
    rows = [{"run_name": row["run_name"], "arch": row["arch"], "task": row["task"], "d_model": res["d_model"],
             "pc": i + 1, "explained_variance": float(v)} for row, res in found for i, v in enumerate(res["explained"][:5])]
    return pd.DataFrame(rows, columns=["run_name", "arch", "task", "d_model", "pc", "explained_variance"])


def attention_inputs(root: Path, runs: pd.DataFrame, d_model: int) -> list[tuple[str, pd.Series, np.ndarray, list]]:
    """(variant, run row, weights (n_layers, H, L, L), token names) for one count-5 sequence, for the
    RoPE transformer and, where it ran, the one without positional encoding."""
    maps = []
    for variant, row in pick_runs(runs, "transformer", ("default", "npe"), d_model):
        loaded = load(root, row)
        if loaded is not None and callable(getattr(loaded[0], "attention_weights", None)):
            model, task = loaded
            batch = task.sample(1, seed=0, counts=[5])
            length = int(batch.lengths[0])
            weights = model.attention_weights(batch.tokens[:, :length])[:, 0]      # (n_layers, H, L, L)
            names = {i: name for name, i in task.vocab.items()}
            maps.append((variant, row, weights.numpy(), [names[int(t)] for t in batch.tokens[0, :length]]))
    return maps
