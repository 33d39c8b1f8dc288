"""Intervention sites: where a state is read, replaced, and the run continued from.

A site turns a set of pairs into a cache computed once (the base state at t, the source state
at u, and whatever the continuation needs), then runs only what an intervention changes:
- `state` (any model with the step protocol): the recurrent state after token t. The fast path
  continues through the fused kernel (`run_from`) when the model has one; the plain path steps
  token by token. A test proves they agree.
- `resid.L` (Transformer): the residual stream after L blocks at position t. The stream of the
  counterfactual sequence before the intervention is cached; a step replaces position t and runs
  blocks L.. only.
Both return logits (N, M, V) where [:, j] predicts the j-th continuation token.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import NumvarsError
from ..models import TransformerLM, default_site, is_recurrent, step_states
from ..tasks import PAD


@dataclass
class Cache:
    base: Tensor          # (N, d) base state at t
    source: Tensor        # (N, d) source state at u
    cont: Tensor          # (N, M) continuation tokens after t (PAD-filled)
    t: Tensor             # (N,)
    resid: Tensor | None = None   # (N, Lc, d) transformer: the counterfactual sequence's stream
    prefix: Tensor | None = None  # (N, Lc) transformer: base[:t+1] + cont, PAD-filled

    def select(self, idx) -> "Cache":
        pick = lambda x: None if x is None else x[idx]  # noqa: E731
        return Cache(*(pick(getattr(self, f)) for f in ("base", "source", "cont", "t", "resid", "prefix")))


def _gather(seq: Tensor, pos: Tensor) -> Tensor:
    """seq (N, L, d), pos (N,) → (N, d)."""
    return seq[torch.arange(len(pos), device=seq.device), pos]


class RecurrentSite:
    name = "state"

    def __init__(self, model: nn.Module, fast: bool = True):
        self.model = model
        self.fast = fast and callable(getattr(model, "run_from", None))

    @property
    def size(self) -> int:
        return int(self.model.initial_state(1).shape[-1])

    def states(self, tokens: Tensor) -> Tensor:
        """(N, L, d): the state after each token."""
        if callable(getattr(self.model, "states", None)):
            return self.model.states(tokens)
        return step_states(self.model, tokens)

    @torch.no_grad()
    def cache(self, base: Tensor, t: Tensor, source: Tensor, u: Tensor, cont: Tensor) -> Cache:
        return Cache(base=_gather(self.states(base), t), source=_gather(self.states(source), u), cont=cont, t=t)

    def run(self, cache: Cache, state: Tensor) -> Tensor:
        if self.fast:
            return self.model.run_from(state, cache.cont[:, :-1])
        logits = []
        for j in range(cache.cont.shape[1]):
            logits.append(self.model.readout(state))
            state = self.model.step(cache.cont[:, j], state)
        return torch.stack(logits, dim=1)

    @torch.no_grad()
    def free_run(self, cache: Cache, state: Tensor, scored: Tensor) -> Tensor:
        """Greedy continuation: the model's own token at scored positions, the forced one elsewhere."""
        out = []
        for j in range(cache.cont.shape[1]):
            pred = self.model.readout(state).argmax(-1)
            token = torch.where(scored[:, j], pred, cache.cont[:, j])
            out.append(pred)
            state = self.model.step(token, state)
        return torch.stack(out, dim=1)


class ResidualSite:
    def __init__(self, model: TransformerLM, layer: int):
        if not 0 <= layer <= model.cfg.n_layers:
            raise NumvarsError(f"site resid.{layer} does not exist; this model has resid.0..resid.{model.cfg.n_layers}")
        self.model, self.layer = model, layer
        self.name = f"resid.{layer}"

    @property
    def size(self) -> int:
        return self.model.cfg.d_model

    @staticmethod
    def splice(base: Tensor, t: Tensor, cont: Tensor) -> Tensor:
        """base[:t+1] followed by cont, per row: (N, max(t)+1+M), PAD-filled."""
        n, m = cont.shape
        width = int(t.max()) + 1 + m
        pos = torch.arange(width, device=base.device)[None, :]
        base_part = torch.nn.functional.pad(base, (0, max(0, width - base.shape[1])), value=PAD)[:, :width]
        idx = (pos - t[:, None] - 1).clamp(0, m - 1)
        spliced = torch.where(pos <= t[:, None], base_part, cont.gather(1, idx))
        return torch.where(pos <= t[:, None] + m, spliced, PAD)

    @torch.no_grad()
    def cache(self, base: Tensor, t: Tensor, source: Tensor, u: Tensor, cont: Tensor) -> Cache:
        prefix = self.splice(base, t, cont)
        resid = self.model.residual(prefix, self.layer)
        src = _gather(self.model.residual(source, self.layer), u)
        return Cache(base=_gather(resid, t), source=src, cont=cont, t=t, resid=resid, prefix=prefix)

    def _logits_after(self, resid: Tensor, t: Tensor, state: Tensor, m: int) -> Tensor:
        rows = torch.arange(len(t), device=resid.device)
        resid = resid.index_put((rows, t), state)                  # out of place: keeps the graph to `state`
        final = self.model.final_stream(resid, self.layer)         # (N, Lc, d)
        pos = t[:, None] + torch.arange(m, device=t.device)[None, :]
        # the head only where predictions are read: positions t .. t+m-1
        return self.model.unembed(final.gather(1, pos.unsqueeze(-1).expand(-1, -1, final.shape[-1])))

    def run(self, cache: Cache, state: Tensor) -> Tensor:
        return self._logits_after(cache.resid, cache.t, state, cache.cont.shape[1])

    @torch.no_grad()
    def free_run(self, cache: Cache, state: Tensor, scored: Tensor) -> Tensor:
        seq, out = cache.prefix.clone(), []
        rows, m = torch.arange(len(cache.t), device=seq.device), cache.cont.shape[1]
        for j in range(m):
            resid = self.model.residual(seq, self.layer)           # later tokens changed: recompute
            pred = self._logits_after(resid, cache.t, state, j + 1)[:, j].argmax(-1)
            out.append(pred)
            seq[rows, cache.t + 1 + j] = torch.where(scored[:, j], pred, cache.cont[:, j])
        return torch.stack(out, dim=1)


@contextmanager
def frozen(model: nn.Module, device):
    """The model as interventions need it: eval mode (no dropout), parameters without gradients, on
    `device`. Fused RNN modules stay in train mode, because cuDNN refuses backward through an RNN in
    eval mode; an RNN without inter-layer dropout computes the same numbers in either mode.
    Everything is restored on exit: mode, requires_grad flags and device."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    first = next(model.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    model.eval().to(device)
    for m in model.modules():
        if isinstance(m, nn.RNNBase) and (m.num_layers == 1 or m.dropout == 0):
            m.train()                     # no dropout inside, so train mode changes no number
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training).to(home)


def get_site(model: nn.Module, name: str | None = None):
    """The site object for a model and a site name (default: `state` for RNNs, `resid.1` for Transformers)."""
    name = name or default_site(model)
    if isinstance(model, TransformerLM):
        head, _, layer = name.partition(".")
        if head != "resid" or not layer.isdigit():
            raise NumvarsError(f"unknown site {name!r} for a Transformer; use resid.L, e.g. resid.1")
        return ResidualSite(model, int(layer))
    if is_recurrent(model):
        if name != "state":
            raise NumvarsError(f"unknown site {name!r} for a recurrent model; its site is 'state'")
        return RecurrentSite(model)
    raise NumvarsError("this model has no intervention site: implement initial_state, step and readout (SPEC §9)")
