"""What every adapted model shares: the wrapped model, its site module (by path), the token map, and tracing
the model with nnsight (read a module's output, replace it, or replace its inputs)."""
from __future__ import annotations

import difflib

import torch
from torch import Tensor, nn

from ..errors import NumvarsError
from .tokens import TokenMap


def find_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted path (`transformer.h.1`); a one-line error naming close paths."""
    names = [name for name, _ in model.named_modules() if name]
    try:
        return model.get_submodule(path)
    except AttributeError:
        close = difflib.get_close_matches(path, names, n=4, cutoff=0.5) or names[:6]
        raise NumvarsError(f"the model has no module {path!r}; name one by its path, e.g. "
                           f"{', '.join(close) or '(it has no submodules)'}") from None


def model_logits(out) -> Tensor:
    """The logits of a forward's output: a tensor, a Hugging Face output's `.logits`, or a tuple's first."""
    value = getattr(out, "logits", None)
    if value is None:
        value = out[0] if isinstance(out, (tuple, list)) and out else out
    if not isinstance(value, Tensor) or value.dim() != 3:
        raise NumvarsError("the model's forward does not return logits (batch, positions, vocabulary) for a batch of "
                           "token ids; the adapter needs a causal language model's forward")
    return value


def first(output):
    """The stream of a module's output (a tensor, or a tuple's first element)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def with_first(output, stream):
    """A module's output with its stream replaced (a tuple keeps its other elements)."""
    return (stream, *output[1:]) if isinstance(output, tuple) else stream


class Adapted(nn.Module):
    """A model, a site module inside it and a token map, seen by numvars through nnsight."""

    def __init__(self, model: nn.Module, site: str, token_map: TokenMap):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise NumvarsError(f"the adapter needs a torch.nn.Module or a local Hugging Face model folder, not "
                               f"{type(model).__name__}")
        self.model, self.site, self.tokens = model, site, token_map
        self.train(model.training)                # the wrapped model's mode (an eval-mode model stays so)
        find_module(model, site)

    @property
    def site_module(self) -> nn.Module:
        return self.model.get_submodule(self.site)

    def envelope(self):
        """The model in nnsight's envelope (made per use: cheap, and never copied with the model)."""
        from nnsight import NNsight
        return NNsight(self.model)

    @staticmethod
    def at(envelope, path: str):
        """The envoy of the module at `path` in an nnsight envelope."""
        node = envelope
        for part in path.split("."):
            node = node[int(part)] if part.isdigit() else getattr(node, part)
        return node

    def _device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def forward(self, tokens: Tensor) -> Tensor:
        """Task logits (B, L, V_task) of task tokens (B, L)."""
        return self.tokens.logits(model_logits(self.model(self.tokens.encode(tokens))))
