"""A causal test of the summing solution: edit what a transformer's attention reads, watch the EOS move.

A transformer that solves the task by re-reading its context (Context-Distributed) decides, at
every response position, from an attention-weighted sum over the demo and response tokens. So if
one more demo token's key and value are added to what every response-phase query attends to, it
should answer with exactly one more response before the EOS; if one demo token's key and value are
removed, exactly one fewer. A model that keeps a running count elsewhere need not move at all.

`attention_test` generates greedily, once as is and once with the edit applied to every query from
the first response-deciding position on (the trigger, or the first response without one), in the
chosen layers, and scores the fraction of trials whose response length moved by exactly ±1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from .. import io
from ..paths import inside
from ..errors import NumvarsError
from ..models import TransformerLM
from ..tasks import DEMO, PAD, RESP, TRIGGER, Task
from .protocol import AttentionOptions
from .sites import frozen

EDITS = ("add", "remove")


@dataclass
class AttentionResult:
    accuracy: dict[str, float]       # edit -> fraction of trials moved by exactly the predicted ±1
    layers: tuple[int, ...]
    n: int
    base_accuracy: float             # trials the unedited model got right (only those are scored)
    trials: pd.DataFrame = field(repr=False)

    def summary(self) -> dict:
        return {"accuracy": self.accuracy, "layers": list(self.layers), "n": self.n,
                "base_accuracy": self.base_accuracy,
                "shift_counts": {e: self.trials[self.trials["edit"] == e]["shift"].value_counts().sort_index()
                                 .to_dict() for e in EDITS}}

    def save(self, out_dir, extra: dict | None = None) -> Path:
        return io.save_result(out_dir, {**self.summary(), **(extra or {})}, {"trials.parquet": self.trials})

    @classmethod
    def load(cls, folder) -> "AttentionResult":
        from .. import loaders
        s = io.read_json(inside(folder, "result.json"))
        return cls(s["accuracy"], tuple(s["layers"]), s["n"], s["base_accuracy"],
                   loaders.read_job_table(Path(folder), "attention"))


def _edit_fn(op: str, start: Tensor, demo_pos: Tensor):
    """An attention edit: queries at positions >= start[b] see one duplicated demo key/value (add) or lose
    the one at demo_pos[b] (remove)."""
    def edit(q: Tensor, k: Tensor, v: Tensor) -> Tensor:                      # (B, H, L, Dh) each
        B, H, L, dh = q.shape
        rows = torch.arange(B, device=q.device)
        scores = (q @ k.transpose(-1, -2)) / dh ** 0.5                       # (B, H, L, L)
        pos = torch.arange(L, device=q.device)
        scores = scores.masked_fill(pos[None, None, None, :] > pos[None, None, :, None], float("-inf"))
        edited = pos[None, :] >= start[:, None]                               # (B, L) queries that are edited
        k_j, v_j = k[rows, :, demo_pos], v[rows, :, demo_pos]                  # (B, H, Dh)
        if op == "add":
            extra = (q @ k_j.unsqueeze(-1)).squeeze(-1) / dh ** 0.5           # (B, H, L)
            extra = extra.masked_fill(~edited[:, None, :], float("-inf"))
            weights = torch.cat([scores, extra.unsqueeze(-1)], -1).softmax(-1)  # (B, H, L, L + 1)
            return weights[..., :L] @ v + weights[..., L:] * v_j.unsqueeze(2)
        drop = edited[:, None, :, None] & (pos[None, None, None, :] == demo_pos[:, None, None, None])
        return scores.masked_fill(drop, float("-inf")).softmax(-1) @ v
    return edit


@torch.no_grad()
def _generate(model: nn.Module, prefix: Tensor, first: Tensor, n_steps: int, edits: dict | None = None) -> Tensor:
    """Greedy tokens from position `first` on (all rows at once, as evaluate.greedy_trials does), with the
    attention edits (layer -> edit) applied at every step."""
    buffer = prefix.clone()
    rows = torch.arange(len(first))
    for j in range(n_steps):
        logits = model(buffer, edits=edits)
        buffer[rows, first + j] = logits[rows, first + j - 1].argmax(-1)
    return buffer


def attention_test(model: nn.Module, task: Task, counts=None, options: AttentionOptions | None = None,
                   **opts) -> AttentionResult:
    """Add or remove one demo token's key/value at every response-phase query; the fraction of trials
    whose response length moves by exactly +1 / −1. `options`, or AttentionOptions fields as keywords (n,
    seed, layers: block indices, default all; device)."""
    o = options or AttentionOptions(**opts)
    n, seed, layers, device = o.n, o.seed, o.layers, o.device
    if not isinstance(model, TransformerLM):
        raise NumvarsError("the attention test needs a Transformer (numvars' own, arch=transformer); this model "
                           "is not one")
    layers = tuple(range(len(model.blocks))) if layers is None else tuple(layers)
    if not layers or any(not 0 <= layer < len(model.blocks) for layer in layers):
        raise NumvarsError(f"layers={list(layers)}: choose among 0..{len(model.blocks) - 1}")
    counts = counts or range(max(2, task.spec.min_count), task.spec.max_count + 1)
    batch = task.sample(n, seed=seed, counts=counts)
    roles = batch.roles
    # the first position whose prediction is a response: the trigger, or (no trigger) the first response
    decide = (roles == (TRIGGER if task.spec.trigger else RESP)).float().argmax(1)
    first = decide + 1                                                  # where generation starts writing
    gen = torch.Generator().manual_seed(seed)
    demo_keys = torch.rand(roles.shape, generator=gen).masked_fill(roles != DEMO, -1.0)
    demo_pos = demo_keys.argmax(1)                                       # one demo token per trial, uniform
    n_steps = int(batch.counts.max()) + 3
    width = batch.tokens.shape[1] + 3
    prefix = torch.nn.functional.pad(batch.tokens, (0, 3), value=PAD)
    prefix = torch.where(torch.arange(width)[None, :] < first[:, None], prefix, PAD)
    eos = task.vocab["EOS"]
    rows_all = []
    with frozen(model, device):
        prefix, first_d, decide_d, demo_d = (x.to(device) for x in (prefix, first, decide, demo_pos))
        base = _generate(model, prefix, first_d, n_steps).cpu()
        lengths = {"none": _resp_length(base, first, eos, task.resp_id)}
        for op in EDITS:
            out = _generate(model, prefix, first_d, n_steps, {layer: _edit_fn(op, decide_d, demo_d)
                                                              for layer in layers}).cpu()
            lengths[op] = _resp_length(out, first, eos, task.resp_id)
    right = lengths["none"] == batch.counts - int(not task.spec.trigger)    # the unedited run counts correctly
    for op, expected in (("add", 1), ("remove", -1)):
        shift = lengths[op] - lengths["none"]
        rows_all.append(pd.DataFrame({"edit": op, "count": batch.counts.numpy(), "base_right": right.numpy(),
                                      "shift": shift.numpy(), "moved": (shift == expected).numpy()}))
    trials = pd.concat(rows_all, ignore_index=True)
    scored = trials[trials["base_right"]]
    accuracy = {op: float(scored[scored["edit"] == op]["moved"].mean()) if len(scored) else float("nan")
                for op in EDITS}
    return AttentionResult(accuracy, layers, n, float(right.float().mean()), trials)


def _resp_length(tokens: Tensor, first: Tensor, eos: int, resp: int) -> Tensor:
    """Response tokens generated from `first` on before the EOS; -1 where something else ends them."""
    m = tokens.shape[1]
    pos = (first[:, None] + torch.arange(m)[None, :]).clamp(max=m - 1)
    seq = tokens.gather(1, pos)                                       # (N, m) from `first` on
    stop = (seq != resp).float().argmax(1)                            # the first token that is not a response
    ended = seq.gather(1, stop[:, None])[:, 0] == eos
    return torch.where(ended, stop, -1)
