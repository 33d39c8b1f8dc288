"""Alignment maps: small modules with `forward` (into the aligned basis) and `inverse`.

The interchange intervention composes a map with a mask:
    b' = A⁻¹((1 − M)·A b + M·A s)
Orthogonal maps use torch's orthogonal parametrization; wrap a DAS step in
`torch.nn.utils.parametrize.cached()` so the matrix is computed once per step, not per use.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from ..errors import NumvarsError

from .protocol import MAPS

ROTATIONS = ("orthogonal", "random", "identity")     # maps whose inverse is the transpose


def random_orthogonal(d: int, generator: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator))
    return q * torch.sign(torch.diagonal(r))      # sign fix: Haar-distributed


class OrthogonalMap(nn.Module):
    """A learnable rotation R; aligned coordinates are x @ R, and the inverse is y @ Rᵀ."""

    def __init__(self, d: int, generator: torch.Generator):
        super().__init__()
        self.lin = nn.Linear(d, d, bias=False)
        parametrizations.orthogonal(self.lin)
        with torch.no_grad():
            self.lin.weight = random_orthogonal(d, generator)

    @property
    def matrix(self) -> Tensor:
        return self.lin.weight

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.matrix

    def inverse(self, y: Tensor) -> Tensor:
        return y @ self.matrix.T


class FixedMap(nn.Module):
    """A fixed orthogonal matrix (the identity, or a random rotation): the untrained controls."""

    def __init__(self, matrix: Tensor):
        super().__init__()
        self.register_buffer("weight", matrix)

    @property
    def matrix(self) -> Tensor:
        return self.weight

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight

    def inverse(self, y: Tensor) -> Tensor:
        return y @ self.weight.T


class LinearMap(FixedMap):
    """A learnable general invertible linear map W (initialised orthogonal); inverse via a solve."""

    def __init__(self, d: int, generator: torch.Generator):
        nn.Module.__init__(self)
        self.weight = nn.Parameter(random_orthogonal(d, generator))

    def inverse(self, y: Tensor) -> Tensor:
        # y = x W  ⇔  Wᵀ xᵀ = yᵀ
        return torch.linalg.solve(self.weight.T, y.T).T


def make_map(kind: str, d: int, seed: int) -> nn.Module:
    """An alignment map; its initial matrix comes from `seed` alone (the global random stream,
    which nn.Linear's default init would draw from, is left untouched)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "orthogonal":
        with torch.random.fork_rng(devices=[]):
            return OrthogonalMap(d, g)
    if kind == "linear":
        return LinearMap(d, g)
    if kind == "identity":
        return FixedMap(torch.eye(d))
    if kind == "random":
        return FixedMap(random_orthogonal(d, g))
    raise NumvarsError(f"unknown map {kind!r}; choose one of {', '.join(MAPS)}")


def from_matrix(kind: str, matrix: Tensor) -> nn.Module:
    """A fitted map, fixed, from its saved matrix: an orthogonal one (or a fixed control) inverts by its
    transpose, a general linear one by a solve, exactly as while it was fitted."""
    if kind == "linear":
        fitted = LinearMap.__new__(LinearMap)
        nn.Module.__init__(fitted)
        fitted.register_buffer("weight", matrix.clone())
        return fitted
    if kind in ROTATIONS:
        return FixedMap(matrix.clone())
    raise NumvarsError(f"unknown map {kind!r}; choose one of {', '.join((*MAPS, 'random', 'identity'))}")


def set_matrix(align: nn.Module, matrix: Tensor) -> nn.Module:
    """Start a learnable map from a given orthogonal matrix (an orthogonal map keeps its parametrization)."""
    with torch.no_grad():
        if isinstance(align, OrthogonalMap):
            align.lin.weight = matrix.to(align.lin.weight.device)
        else:
            align.weight.copy_(matrix)
    return align


def subspace_size(k, d: int, blocks: int = 1) -> int:
    """The aligned dimensions per variable, the one place the `k` option is read: an int, "d/N" (of the state
    size d), or None for the default d/2; a one-line error unless `blocks` variables of k dims fit in d."""
    word = "d/2" if k is None else str(k).strip()
    try:
        size = d // int(word[2:]) if word.startswith("d/") else int(word)
    except (ValueError, ZeroDivisionError):
        raise NumvarsError(f"k={k!r}: give an integer or d/N with N >= 1, e.g. k=10 or k=d/4") from None
    if not 1 <= size or size * blocks > d:
        raise NumvarsError(f"k={word} is {size} dims: {blocks} variable(s) × k must fit in the state size {d}; use "
                           f"1 <= k <= {d // blocks}")
    return size


def block_masks(d: int, k, n_blocks: int) -> Tensor:
    """(n_blocks, d) 0/1 masks: block i selects aligned dims [i·k, (i+1)·k) (k as `subspace_size` reads it)."""
    k = subspace_size(k, d, n_blocks)
    masks = torch.zeros(n_blocks, d)
    for i in range(n_blocks):
        masks[i, i * k:(i + 1) * k] = 1.0
    return masks


def interchange(align: nn.Module, mask: Tensor, base: Tensor, source: Tensor) -> Tensor:
    """b' = A⁻¹((1 − M)·A b + M·A s); mask is (d,) or per row (N, d)."""
    a_base, a_source = align(base), align(source)
    return align.inverse(a_base + mask * (a_source - a_base))
