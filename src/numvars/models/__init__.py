"""Models: GRU, LSTM and Transformer language models, and loading trained runs."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import NumvarsError
from ..io import load_tensors
from .config import ARCHS, ModelConfig
from .grouped import GroupedRNN
from .rnn import GRULM, LSTMLM, RecurrentLM, step_states
from .transformer import TransformerLM

__all__ = ["ARCHS", "ModelConfig", "GRULM", "GroupedRNN", "LSTMLM", "RecurrentLM", "TransformerLM", "build", "load",
           "load_weights", "is_recurrent", "default_site", "step_states"]

_CLASSES = {"gru": GRULM, "lstm": LSTMLM, "transformer": TransformerLM}


def build(cfg: ModelConfig, seed: int | None = None) -> nn.Module:
    """A freshly initialised model; with a seed, the same seed gives the same weights (and the
    caller's global random stream is left as it was)."""
    if seed is None:
        return _CLASSES[cfg.arch](cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _CLASSES[cfg.arch](cfg)


def is_recurrent(model: nn.Module) -> bool:
    """True for any model that follows the step protocol (initial_state, step, readout)."""
    return all(callable(getattr(model, name, None)) for name in ("initial_state", "step", "readout"))


def default_site(model: nn.Module) -> str:
    """A model's own `default_site`, else its first named site, else `state` (the step protocol)."""
    named = getattr(model, "default_site", None) or next(iter(getattr(model, "site_names", ())), None)
    return named or "state"


def load_weights(model: nn.Module, path, tensors: dict | None = None) -> nn.Module:
    tensors = load_tensors(path) if tensors is None else tensors
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:160]      # torch's message, on one line
        raise NumvarsError(f"weights {path} do not fit this model ({detail}); check the run's config") from None
    return model


def load(run_dir, checkpoint: str | None = None) -> nn.Module:
    """The trained model of a run directory (in eval mode), or one of its checkpoints by file name."""
    from ..loaders import read_config, read_weights

    cfg = read_config(run_dir)
    path, tensors = read_weights(run_dir, checkpoint)
    return load_weights(build(cfg.model), path, tensors).eval()
