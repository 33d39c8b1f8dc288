"""A starting point for DAS: the subspace a least-squares probe reads the variable from.

For each aligned variable, regress a one-hot code of its value on the cached site states (base
states at t with their values, source states at u with theirs); the top-k left singular vectors
of the probe's coefficients span the directions that best predict the variable, whether it lies on
a line or bends through several dimensions. The blocks are stacked in the order of the variables
(each orthogonalised against the ones before, as disjoint DAS blocks need), and the rest of the
basis is completed with the states' principal components, then anything orthogonal. DAS then
starts from this rotation instead of a random one; it still learns freely from there.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _one_hot(values: Tensor) -> Tensor:
    levels, index = torch.unique(values, return_inverse=True)
    return torch.nn.functional.one_hot(index, len(levels)).double()


def probe_directions(states: Tensor, values: Tensor, k: int) -> Tensor:
    """(d, ≤ k + C) candidate directions of `states` (N, d) predictive of `values` (N,), best first: the
    ridge regression of the value itself (a line), then the top singular directions of a ridge probe of
    its one-hot code (a value encoded along a curve)."""
    d = states.shape[1]
    if len(states) < 2:                                  # nothing to regress: the filler completes the block
        return torch.zeros(d, 0, dtype=torch.double)
    x = states.double() - states.double().mean(0)
    # the ridge scales with the states' spread, and stays positive where they do not vary at all (a site
    # whose state is the same for every pair, e.g. a Transformer's first stream at a repeated token)
    spread = max(float(x.var(0).sum()), 1e-12)
    gram = x.T @ x + 1e-3 * spread * torch.eye(d, dtype=x.dtype)
    scalar = values.double() - values.double().mean()
    line = torch.linalg.solve(gram, x.T @ scalar[:, None])                  # (d, 1)
    y = _one_hot(values)
    coef = torch.linalg.solve(gram, x.T @ (y - y.mean(0)))                  # (d, C)
    u, _, _ = torch.linalg.svd(coef, full_matrices=False)
    return torch.cat([line / line.norm().clamp_min(1e-12), u[:, :k]], 1)


def _extend(basis: list[Tensor], candidates: Tensor, n: int) -> list[Tensor]:
    """Gram–Schmidt: add up to n of the candidate columns, in order, that are not (nearly) in the span."""
    added = 0
    for column in candidates.T:
        for b in basis:
            column = column - (b @ column) * b
        norm = column.norm()
        if norm > 1e-6 and added < n:
            basis.append(column / norm)
            added += 1
    return basis


def probe_basis(base: Tensor, base_value: Tensor, source: Tensor, source_value: Tensor, var_index: Tensor,
                n_vars: int, k: int) -> Tensor:
    """(d, d) orthonormal matrix, in the states' dtype: k probe directions per variable (in order), then the
    rest."""
    d = base.shape[1]
    states, values, which = torch.cat([base, source]), torch.cat([base_value, source_value]), var_index.repeat(2)
    x = states.double() - states.double().mean(0)
    pcs = torch.linalg.svd(x, full_matrices=False)[2].T                 # (d, d) principal directions
    filler = torch.cat([pcs, torch.eye(d, dtype=torch.double)], 1)
    basis: list[Tensor] = []
    for v in range(n_vars):
        rows = which == v
        before = len(basis)
        basis = _extend(basis, probe_directions(states[rows], values[rows], k), k)
        basis = _extend(basis, filler, k - (len(basis) - before))          # a block of exactly k columns
    basis = _extend(basis, filler, d - len(basis))
    return torch.stack(basis, 1).to(base.dtype)
