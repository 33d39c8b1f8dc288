"""The full-state swap (SPEC §5.4): the test that tells context-distributed from cumulative.

Swap the whole site state at base position t with a source state at u of the same phase. The
Context-Distributed program stores nothing, so it predicts the base continuation is unchanged;
a cumulative program (Up-Down) predicts it follows the source's count. IIA for a program is the
fraction of pairs whose continuation matches that program's prediction.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from ..programs import get_program
from ..tasks import Task
from .search import score
from .maps import make_map
from .pairs import cache_pairs, make_pairset
from ..errors import NumvarsError
from .sites import frozen, get_site


@dataclass
class FullSwapResult:
    iia: float                       # for the first program (ctx_distributed by default)
    iia_by_program: dict[str, float]
    site: str
    n: int
    seed: int
    pairs: pd.DataFrame = field(repr=False)

    def summary(self) -> dict:
        return {"iia": self.iia, "iia_by_program": self.iia_by_program, "site": self.site, "n": self.n,
                "seed": self.seed}


@torch.no_grad()
def full_swap(model: nn.Module, task: Task, programs=("ctx_distributed", "up_down"), site: str | None = None,
              n: int = 1000, seed: int = 0, counts=None, device: str = "cpu") -> FullSwapResult:
    """Swap the whole state and score the model's continuation against each program's prediction."""
    if n < 1 or seed < 0:
        raise NumvarsError(f"n={n} must be >= 1 and seed={seed} >= 0")
    scores, frames = {}, []
    with frozen(model, device):
        at = get_site(model, site)
        identity, everything = make_map("identity", at.size, seed).to(device), torch.ones(1, at.size, device=device)
        for name in programs:
            program = get_program(name)
            pairs = make_pairset(task, program, None, n, seed, counts, same_phase=True)   # same seed: same pairs
            cache = cache_pairs(at, pairs, device)
            verdict = score(at, identity, everything, cache, pairs.scored.to(device), pairs.var_index.to(device),
                            free=False)
            scores[program.name] = float(verdict.correct.float().mean())
            frames.append(pairs.info.assign(program=program.name, correct=verdict.correct.numpy()))
    first = get_program(programs[0]).name
    return FullSwapResult(scores[first], scores, at.name, n, seed, pd.concat(frames, ignore_index=True))
