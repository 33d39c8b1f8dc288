"""Intervention sites: where a state is read, replaced, and the run continued from.

Every site follows one small protocol: `name`, `size`, and
    cache(pairs)            -> dict of tensors computed once per pair set (they do not depend on
                               the alignment): at least "base" (N, d), the base state at t, and
                               "source" (N, d), the source state at u;
    run(pairs, state)       -> logits (N, M, V), [:, j] predicting the j-th continuation token,
                               when the base's state at t is replaced by `state`;
    free_run(pairs, state, scored) -> (N, M) greedy predictions, the model's own tokens fed back
                               at scored positions.

Two kinds of model get sites without any change to numvars:
- the step protocol (`initial_state`, `step`, `readout`): site `state`, the recurrent state after
  token t. The fast path continues through a fused kernel (`run_from`) when the model has one; the
  plain path steps token by token. A test proves they agree.
- the named-site protocol (`site_names`, `activations(tokens, site)`, `logits_from(site, acts,
  positions)`), e.g. the Transformer's `resid.L`: the stream of the counterfactual sequence
  before the intervention is cached; a step replaces position t and runs what follows the site.
"""
from __future__ import annotations

import re
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ..errors import NumvarsError
from ..models import default_site, is_recurrent, step_states
from ..programs import Pairs
from ..tasks import PAD


def _gather(seq: Tensor, pos: Tensor) -> Tensor:
    """seq (N, L, d), pos (N,) → (N, d)."""
    return seq[torch.arange(len(pos), device=seq.device), pos]


def has_named_sites(model: nn.Module) -> bool:
    return all(callable(getattr(model, m, None)) for m in ("activations", "logits_from")) and \
        bool(getattr(model, "site_names", ()))


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
    def cache(self, pairs: Pairs) -> dict[str, Tensor]:
        return {"base": _gather(self.states(pairs.base), pairs.t), "source": _gather(self.states(pairs.source), pairs.u)}

    def run(self, pairs: Pairs, state: Tensor) -> Tensor:
        if self.fast:
            return self.model.run_from(state, pairs.cont[:, :-1])
        logits = []
        for j in range(pairs.cont.shape[1]):
            logits.append(self.model.readout(state))
            state = self.model.step(pairs.cont[:, j], state)
        return torch.stack(logits, dim=1)

    @torch.no_grad()
    def free_run(self, pairs: Pairs, state: Tensor, scored: Tensor) -> Tensor:
        out = []
        for j in range(pairs.cont.shape[1]):
            pred = self.model.readout(state).argmax(-1)
            out.append(pred)
            state = self.model.step(torch.where(scored[:, j], pred, pairs.cont[:, j]), state)
        return torch.stack(out, dim=1)


class StreamSite:
    """A named site of a model with the named-site protocol (a residual stream, say). A model that also
    offers a window (`site_cache`, `logits_window`; `token_cache`, `site_stream` for generation) runs only the
    positions from t on, the keys and values of the others cached: the same numbers as the whole sequence
    (tested), a fraction of the work."""

    def __init__(self, model: nn.Module, name: str):
        self.model, self.name = model, name
        self.windowed = all(callable(getattr(model, m, None)) for m in ("site_cache", "logits_window"))
        self.generates = self.windowed and all(callable(getattr(model, m, None))
                                               for m in ("token_cache", "site_stream"))
        with torch.no_grad():
            probe = torch.zeros(1, 1, dtype=torch.long, device=_device(model))
            self.size = int(model.activations(probe, name).shape[-1])

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
    def cache(self, pairs: Pairs) -> dict[str, Tensor]:
        prefix = self.splice(pairs.base, pairs.t, pairs.cont)
        acts = self.model.activations(prefix, self.name)
        source = _gather(self.model.activations(pairs.source, self.name), pairs.u)
        out = {"base": _gather(acts, pairs.t), "source": source, "acts": acts, "prefix": prefix}
        if self.windowed:                     # keys and values as (N, L, H, Dh): rows and positions first
            for layer, (k, v) in self.model.site_cache(self.name, acts).items():
                out[f"k.{layer}"], out[f"v.{layer}"] = k.transpose(1, 2), v.transpose(1, 2)
        return out

    def _past(self, states: dict) -> dict[int, list[Tensor]]:
        layers = sorted(int(key[2:]) for key in states if key.startswith("k."))
        return {layer: [states[f"k.{layer}"].transpose(1, 2), states[f"v.{layer}"].transpose(1, 2)]
                for layer in layers}

    def _logits_after(self, acts: Tensor, t: Tensor, state: Tensor, m: int) -> Tensor:
        rows = torch.arange(len(t), device=acts.device)
        acts = acts.index_put((rows, t), state)                    # out of place: keeps the graph to `state`
        positions = t[:, None] + torch.arange(m, device=t.device)[None, :]
        return self.model.logits_from(self.name, acts, positions)

    def run(self, pairs: Pairs, state: Tensor) -> Tensor:
        acts, t, m = pairs.states["acts"], pairs.t, pairs.cont.shape[1]
        if not self.windowed:
            return self._logits_after(acts, t, state, m)
        positions = t[:, None] + torch.arange(m, device=t.device)[None, :]                   # (N, M)
        rest = acts.gather(1, positions[:, 1:, None].expand(-1, -1, acts.shape[-1]))
        window = torch.cat([state[:, None], rest], 1)                                        # (N, M, d)
        return self.model.logits_window(self.name, window, positions, self._past(pairs.states))

    @torch.no_grad()
    def free_run(self, pairs: Pairs, state: Tensor, scored: Tensor) -> Tensor:
        own = getattr(self.model, "free_run_from", None)    # a model's own generation (an adapter's KV cache)
        if callable(own):
            return own(self.name, pairs.states["prefix"], pairs.t, state, pairs.cont, scored)
        if self.generates:
            return self._generate(pairs, state, scored)
        seq, out = pairs.states["prefix"].clone(), []
        rows, m = torch.arange(len(pairs.t), device=seq.device), pairs.cont.shape[1]
        for j in range(m):
            acts = self.model.activations(seq, self.name)          # later tokens changed: recompute
            pred = self._logits_after(acts, pairs.t, state, j + 1)[:, j].argmax(-1)
            out.append(pred)
            seq[rows, pairs.t + 1 + j] = torch.where(scored[:, j], pred, pairs.cont[:, j])
        return torch.stack(out, dim=1)

    def _generate(self, pairs: Pairs, state: Tensor, scored: Tensor) -> Tensor:
        """free_run one position per step: the site's stream of each fed token from the blocks below (their
        cache moving on), then the blocks above from that stream (theirs too)."""
        t, m, out = pairs.t, pairs.cont.shape[1], []
        below, above = self.model.token_cache(self.name, pairs.states["prefix"]), self._past(pairs.states)
        x, positions = state[:, None], t[:, None]
        for j in range(m):
            pred = self.model.logits_window(self.name, x, positions, above, store=True)[:, 0].argmax(-1)
            out.append(pred)
            if j + 1 < m:
                token = torch.where(scored[:, j], pred, pairs.cont[:, j])
                positions = (t + 1 + j)[:, None]
                x = self.model.site_stream(token[:, None], self.name, positions, below)
        return torch.stack(out, dim=1)


def _device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _pad_cat(xs: list[Tensor]) -> Tensor:
    """Concatenate chunks along rows; per-chunk sequence widths differ, so pad dim 1 to the widest."""
    if xs[0].dim() < 2:
        return torch.cat(xs)
    width = max(x.shape[1] for x in xs)
    value = PAD if xs[0].dtype == torch.long else 0.0
    return torch.cat([torch.nn.functional.pad(x, (0, 0) * (x.dim() - 2) + (0, width - x.shape[1]), value=value)
                      for x in xs])


def cache(site, pairs: Pairs, chunk: int = 4096) -> Pairs:
    """The pairs with the site's cached states, built in chunks (states do not depend on the alignment)."""
    parts = [site.cache(pairs.select(slice(i, i + chunk))) for i in range(0, len(pairs), chunk)]
    return pairs.with_states({key: _pad_cat([p[key] for p in parts]) for key in parts[0]})


@contextmanager
def frozen(model: nn.Module, device):
    """The model as interventions need it: eval mode (no dropout), parameters without gradients, on
    `device`. Fused RNN modules stay in train mode, because cuDNN refuses backward through an RNN in
    eval mode; an RNN without inter-layer dropout computes the same numbers in either mode.
    Everything is restored on exit: mode, requires_grad flags and device."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    home = _device(model)
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


_HOOK = re.compile(r"^blocks\.(\d{1,4})\.hook_resid_(pre|post)$")


def from_hook_name(name: str) -> str:
    """numvars' site for a TransformerLens hook name (`blocks.{l}.hook_resid_post` is `resid.{l+1}`,
    `blocks.{l}.hook_resid_pre` is `resid.{l}`); any other name is returned as it is."""
    match = _HOOK.match(name)
    if match is None:
        return name
    layer = int(match.group(1))
    return f"resid.{layer + 1 if match.group(2) == 'post' else layer}"


def resid_layer(site: str) -> int | None:
    """L of a residual-stream site `resid.L` (the stream after L blocks); None for any other site."""
    match = re.match(r"^resid\.(\d+)$", site)
    return None if match is None else int(match.group(1))


def hook_name(site: str) -> str | None:
    """The TransformerLens hook name of a residual-stream site (`resid.L` is `blocks.{L-1}.hook_resid_post`,
    `resid.0` is `blocks.0.hook_resid_pre`); None for a site that has none (a recurrent state)."""
    layer = resid_layer(site)
    if layer is None:
        return None
    return "blocks.0.hook_resid_pre" if layer == 0 else f"blocks.{layer - 1}.hook_resid_post"


def get_site(model: nn.Module, name: str | None = None):
    """The site object for a model and a site name (default: the model's own default site); a Transformer's
    sites also answer to their TransformerLens hook names."""
    name = name or default_site(model)
    if has_named_sites(model):
        name = from_hook_name(name)
        if name not in model.site_names:
            raise NumvarsError(f"unknown site {name!r}; this model's sites: {', '.join(model.site_names)}")
        return StreamSite(model, name)
    if is_recurrent(model):
        if name != "state":
            raise NumvarsError(f"unknown site {name!r} for a recurrent model; its site is 'state'")
        return RecurrentSite(model)
    raise NumvarsError("this model has no intervention site: implement initial_state, step and readout, or "
                       "site_names, activations and logits_from (see docs/concepts.md)")
