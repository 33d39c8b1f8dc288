"""An interchange intervention as one object: where (a site), how (an alignment map) and what (the masks).

    b' = A⁻¹((1 − M)·A b + M·A s)

`Intervention(site, map, masks)` computes the intervened state of a pair set whose states the site has
cached, the model's logits for the counterfactual continuation from it, and the per-pair scores. A fitted
alignment is rebuilt from what `DASResult.save` wrote (`Intervention.load`), so that a saved alignment can
be scored again on new pairs: the controls, the isolation pairs and the rival programs' pairs of `explain`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import io
from ..programs import Pairs
from .maps import block_masks, from_matrix, make_map
from .scoring import Scores, intervene, score
from .sites import cache, get_site


@dataclass
class Intervention:
    site: object            # a site of a frozen model (`sites.get_site`)
    map: nn.Module          # forward into the aligned basis, inverse back
    masks: Tensor           # (variables, d): which aligned dimensions each swapped variable takes

    @property
    def k(self) -> int:
        return int(self.masks[0].sum())

    def state(self, pairs: Pairs) -> Tensor:
        """(N, d) the base state at t with the masked aligned dimensions taken from the source at u."""
        return intervene(self.map, self.masks, pairs)

    def logits(self, pairs: Pairs) -> Tensor:
        """(N, M, V) the model's predictions along the continuation, from the intervened state."""
        return self.site.run(pairs, self.state(pairs))

    def score(self, pairs: Pairs, free: bool = False) -> Scores:
        """Per-pair verdicts (and log-probabilities) of pairs *without* cached states: they are cached here."""
        return score(self.site, self.map, self.masks, cache(self.site, pairs), free=free)

    @classmethod
    def load(cls, model: nn.Module, result_dir, device="cpu") -> "Intervention":
        """A saved alignment (result.json and alignment.safetensors of `DASResult.save`) on `model`."""
        summary = io.read_json(Path(result_dir) / "result.json")
        matrix = io.load_tensors(Path(result_dir) / "alignment.safetensors")["matrix"]
        return cls.fitted(model, summary["site"], summary["map"], matrix, summary["k"], len(summary["variables"]),
                          device)

    @classmethod
    def fitted(cls, model: nn.Module, site: str, kind: str, matrix: Tensor, k: int, n_vars: int = 1,
               device="cpu") -> "Intervention":
        at = get_site(model, site)
        return cls(at, from_matrix(kind, matrix).to(device), block_masks(at.size, k, n_vars).to(device))

    @classmethod
    def random(cls, model: nn.Module, site: str, k: int, seed: int, device="cpu") -> "Intervention":
        """A random subspace of size k at the site (a fixed random rotation): the matched random control."""
        at = get_site(model, site)
        return cls(at, make_map("random", at.size, seed).to(device), block_masks(at.size, k, 1).to(device))
