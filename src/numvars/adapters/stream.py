"""A sequence model (attention, or anything that reads the whole sequence per call) adapted through nnsight:
its site is the output stream (B, L, d) of one module, and numvars' named-site protocol reads and replaces it.
The positions after an intervened one are recomputed from the replaced stream by the model's own forward;
free running uses the model's key/value cache when it has one (`cached`)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import NumvarsError
from .base import Adapted, first, model_logits, with_first
from .cached import free_run_cached, has_cache


class StreamAdapter(Adapted):
    use_cache = True          # free-run with the model's key/value cache when it has one (False: recompute)

    @property
    def site_names(self) -> tuple[str, ...]:
        return (self.site,)

    @property
    def default_site(self) -> str:
        return self.site

    @property
    def state_size(self) -> int:
        with torch.no_grad():
            probe = torch.zeros(1, 1, dtype=torch.long, device=self._device())
            return int(self.activations(probe, self.site).shape[-1])

    def activations(self, tokens: Tensor, site: str) -> Tensor:
        """The site module's output stream for every position: (B, L, d)."""
        env = self.envelope()
        with env.trace(self.tokens.encode(tokens)):
            out = first(self.at(env, site).output).save()
        if not isinstance(out, Tensor) or out.dim() != 3 or out.shape[:2] != tokens.shape:
            kind = f"a {type(out).__name__}" if not isinstance(out, Tensor) else f"of shape {tuple(out.shape)}"
            raise NumvarsError(f"module {site!r} outputs {kind}, not a stream (batch, positions, d) for tokens of shape "
                               f"{tuple(tokens.shape)}; name a module whose output is one, e.g. a block")
        return out

    def logits_from(self, site: str, acts: Tensor, positions: Tensor) -> Tensor:
        """Task logits (B, P, V) at positions (B, P) when the site's stream is `acts` (B, L, d); the modules
        before the site run on placeholder tokens, their output replaced."""
        env = self.envelope()
        placeholder = torch.zeros(acts.shape[:2], dtype=torch.long, device=acts.device)
        with env.trace(self.tokens.encode(placeholder)):
            node = self.at(env, site)
            node.output = with_first(node.output, acts)
            out = env.output.save()
        logits = self.tokens.logits(model_logits(out))
        return logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))

    @property
    def free_run_from(self):
        """Generation after a swap with the model's own key/value cache (`cached.free_run_cached`), for a model
        that has one; None otherwise (the site then recomputes the sequence per generated token)."""
        if self.use_cache and has_cache(self.model):
            return lambda site, prefix, t, state, cont, scored: free_run_cached(self, site, prefix, t, state, cont,
                                                                                scored)
        return None
