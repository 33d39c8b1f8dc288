"""Intervention data: program counterfactuals turned into model tokens and site caches."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import programs as P
from ..tasks import Task
from .sites import Cache


@dataclass
class PairSet:
    """n (base, source) pairs with the program's counterfactual continuation, as tokens."""

    base: torch.Tensor        # (N, L) base tokens
    source: torch.Tensor      # (N, L') source tokens
    t: torch.Tensor           # (N,) base positions
    u: torch.Tensor           # (N,) source positions
    cont: torch.Tensor        # (N, M) counterfactual continuation tokens after t
    scored: torch.Tensor      # (N, M) positions IIA scores (the program's predictions)
    var_index: torch.Tensor   # (N,) which variable each pair swaps (index into `variables`)
    info: pd.DataFrame        # per pair: variable, base_count, source_count, base_value, source_value, t, u
    variables: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.t)


def make_pairset(task: Task, program, variables, n: int, seed: int, counts=None,
                 same_phase: bool = False) -> PairSet:
    """Sample pairs and their counterfactuals (SPEC §4); variables=None swaps all (full swap).
    Counts are uniform over `counts`, by default every count of the task's range (held-out ones too)."""
    if counts is None:
        counts = range(task.spec.min_count, task.spec.max_count + 1)
    base, source, t, u, cf = P.make_pairs(task, program, variables, n, seed=seed, counts=counts,
                                          same_phase=same_phase, one_per_row=variables is not None)
    gen = torch.Generator().manual_seed(seed + 1)
    cont = task.role_tokens(cf.cont_roles, generator=gen)
    var_index = cf.var_index if cf.var_index is not None else torch.zeros(n, dtype=torch.long)
    names = np.asarray(cf.variables or ("(all)",))
    info = pd.DataFrame({"variable": names[var_index.numpy()],
                         "base_count": base.counts.numpy(), "source_count": source.counts.numpy(),
                         "base_value": cf.base_value.numpy(), "source_value": cf.source_value.numpy(),
                         "t": t.numpy(), "u": u.numpy()})
    return PairSet(base.tokens, source.tokens, t, u, cont, cf.cont_scored, var_index, info, cf.variables)


def cache_pairs(site, pairs: PairSet, device, chunk: int = 4096) -> Cache:
    """The site cache for all pairs, built in chunks (states do not depend on the alignment)."""
    parts = []
    for i in range(0, len(pairs), chunk):
        sl = slice(i, i + chunk)
        parts.append(site.cache(pairs.base[sl].to(device), pairs.t[sl].to(device), pairs.source[sl].to(device),
                                pairs.u[sl].to(device), pairs.cont[sl].to(device)))
    if len(parts) == 1:
        return parts[0]

    def cat(name):
        xs = [getattr(p, name) for p in parts]
        if xs[0] is None or xs[0].dim() == 1:
            return None if xs[0] is None else torch.cat(xs)
        width = max(x.shape[1] for x in xs)     # transformer prefixes differ in length per chunk
        return torch.cat([torch.nn.functional.pad(x, (0, 0) * (x.dim() - 2) + (0, width - x.shape[1])) for x in xs])

    return Cache(*(cat(f) for f in ("base", "source", "cont", "t", "resid", "prefix")))
