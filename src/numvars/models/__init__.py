"""Models: GRU, LSTM and Transformer language models, and loading trained runs."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import NumvarsError
from ..io import load_tensors, read_yaml
from ..paths import inside, run_folder
from .config import ARCHS, PAPER_ARCHS, ModelConfig
from .grouped import GroupedRNN
from .hf import HFCausalLM
from .rnn import GRULM, LSTMLM, RecurrentLM, step_states
from .transformer import TransformerLM

__all__ = ["ARCHS", "PAPER_ARCHS", "ModelConfig", "GRULM", "GroupedRNN", "HFCausalLM", "LSTMLM", "RecurrentLM", "TransformerLM", "build", "load",
           "load_weights", "is_recurrent", "default_site", "step_states", "read_weights", "model_config"]

_CLASSES = {"gru": GRULM, "lstm": LSTMLM, "transformer": TransformerLM, "hf": HFCausalLM}


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


def model_config(run_dir) -> ModelConfig:
    """The model section of RUN/config.yaml, typed and checked (the rest of the config is training's)."""
    run_dir = run_folder(run_dir)
    section = read_yaml(inside(run_dir, "config.yaml")).get("model")
    if not isinstance(section, dict):
        raise NumvarsError(f"{run_dir}/config.yaml has no valid model section; the run cannot be used: train it again "
                           f"with its keys (`numvars train key=value ...`)")
    try:
        return ModelConfig(**section)
    except TypeError as e:
        raise NumvarsError(f"{run_dir}/config.yaml has an invalid model section ({e}); train the run again") from None


CHECKPOINT = re.compile(r"^epoch_\d{6,}\.safetensors$")


def read_weights(run_dir, checkpoint: str | None = None) -> tuple[Path, dict]:
    """(path, tensors) of RUN/model.safetensors or a checkpoint, every value finite."""
    if checkpoint is not None and not CHECKPOINT.match(str(checkpoint)):
        raise NumvarsError(f"checkpoint={checkpoint!r}: give a file name of the run's checkpoints/ folder, e.g. "
                           "epoch_000008.safetensors")
    path = inside(run_dir, "checkpoints", checkpoint) if checkpoint else inside(run_dir, "model.safetensors")
    tensors = load_tensors(path)
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise NumvarsError(f"weights file {path} holds NaN or infinite values (in {bad[0]}); retrain it with `numvars train --from {run_dir}`")
    return path, tensors



def load(run_dir, checkpoint: str | None = None) -> nn.Module:
    """The trained model of a run directory (in eval mode), or one of its checkpoints by file name."""
    cfg = model_config(run_dir)                   # first: a missing or wrong folder is named as such
    path, tensors = read_weights(run_dir, checkpoint)
    if cfg.arch == "hf" and checkpoint is None:    # the final model: from its save_pretrained folder
        from .hf import FOLDER
        model = HFCausalLM.from_folder(inside(run_dir, FOLDER))
        check_same(model, tensors, path)
        return model
    return load_weights(build(cfg), path, tensors).eval()


def check_same(model: nn.Module, tensors: dict, path) -> None:
    """A model read from elsewhere (a save_pretrained folder) must hold the run's own weights."""
    mine = model.state_dict()
    if set(mine) != set(tensors) or any(not torch.equal(mine[k], tensors[k]) for k in tensors):
        raise NumvarsError(f"{path} and the model's save_pretrained folder hold different weights; retrain the run")
