"""An interchange intervention as one object: where (a site), how (an alignment map) and what (the masks).

    b' = A⁻¹((1 − M)·A b + M·A' s)

A' is A itself, except across two models (cross-model alignment), where the source's aligned coordinates
come from the source model's own map. DAS fits the map of an `Intervention`, the full swap is one with the
identity map and every dimension, a cross-model direction is one with two maps. It computes the intervened
state of a pair set whose states its site has cached, and the model's logits for the continuation from it;
`scoring.score` turns those into per-pair verdicts. A saved alignment is rebuilt with `Intervention.load`,
so that it can be scored again on new pairs (explain's controls, isolation pairs and rival programs).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import io
from ..loaders import read_alignment_matrix
from ..paths import inside
from ..programs import Pairs
from .maps import block_masks, from_matrix, make_map


@dataclass
class Intervention:
    site: object                      # a site of a frozen model (`sites.get_site`)
    map: nn.Module                    # forward into the aligned basis, inverse back
    masks: Tensor                     # (variables, d): which aligned dimensions each swapped variable takes
    source_map: nn.Module | None = None   # the source's own map (another model's); default: `map`

    @property
    def k(self) -> int:
        return int(self.masks[0].sum())

    def state(self, pairs: Pairs) -> Tensor:
        """(N, d) the base state at t with the masked aligned dimensions taken from the source at u."""
        mask = self.masks[pairs.var_index]
        aligned, taken = self.map(pairs.states["base"]), (self.source_map or self.map)(pairs.states["source"])
        if taken.shape[-1] != aligned.shape[-1]:       # another model's state size: its first k aligned dims
            k = self.k
            taken = torch.nn.functional.pad(taken[:, :k], (0, aligned.shape[-1] - k))
        return self.map.inverse(aligned + mask * (taken - aligned))

    def logits(self, pairs: Pairs) -> Tensor:
        """(N, M, V) the model's predictions along the continuation, from the intervened state."""
        return self.site.run(pairs, self.state(pairs))

    def evaluate(self, pairs: Pairs, free: bool = False):
        """`scoring.score` of pairs *without* cached states (they are cached here). The model must be frozen."""
        from .scoring import score
        from .sites import cache
        return score(self, cache(self.site, pairs), free=free)

    @classmethod
    def load(cls, model: nn.Module, result_dir, device="cpu") -> "Intervention":
        """A saved alignment (result.json and alignment.safetensors of `DASResult.save`) on `model`."""
        summary = io.read_json(inside(result_dir, "result.json"))
        matrix = read_alignment_matrix(result_dir)
        return cls.fitted(model, summary["site"], summary["map"], matrix, summary["k"], len(summary["variables"]),
                          device)

    @classmethod
    def fitted(cls, model: nn.Module, site: str, kind: str, matrix: Tensor, k: int, n_vars: int = 1,
               device="cpu") -> "Intervention":
        from .sites import get_site
        at = get_site(model, site)
        return cls(at, from_matrix(kind, matrix).to(device), block_masks(at.size, k, n_vars).to(device))

    @classmethod
    def random(cls, model: nn.Module, site: str, k: int, seed: int, device="cpu") -> "Intervention":
        """A random subspace of size k at the site (a fixed random rotation): the matched random control."""
        from .sites import get_site
        at = get_site(model, site)
        return cls(at, make_map("random", at.size, seed).to(device), block_masks(at.size, k, 1).to(device))

    @classmethod
    def whole_state(cls, site, device="cpu") -> "Intervention":
        """The full-state swap: every dimension of the state taken from the source."""
        return cls(site, make_map("identity", site.size, 0).to(device), torch.ones(1, site.size, device=device))
