"""The full-state swap: the test that tells context-distributed from cumulative.

Swap the whole site state at base position t with a source state at u of the same phase. The
Context-Distributed program stores nothing, so it predicts the base continuation is unchanged;
a cumulative program (Up-Down) predicts it follows the source's count. IIA for a program is the
fraction of pairs whose continuation matches that program's prediction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .. import io
from ..paths import inside
from ..programs import get_program, make_pairs
from ..tasks import Task
from .intervention import Intervention
from .protocol import FullSwapOptions
from .scoring import score
from .sites import cache, frozen, get_site


@dataclass
class FullSwapResult:
    iia: float                       # for the first program (ctx_distributed by default)
    iia_by_program: dict[str, float]
    site: str
    n: int
    seed: int
    pairs: pd.DataFrame = field(repr=False)

    def summary(self) -> dict:
        first = self.pairs[self.pairs["program"] == self.pairs["program"].iloc[0]]
        by_phase = first.groupby("phase_t")["correct"].mean().to_dict()
        out = {"iia": self.iia, "iia_by_program": self.iia_by_program, "site": self.site, "n": self.n,
               "seed": self.seed, "iia_by_base_phase": by_phase}
        if "same_token" in first:       # a stream also says which token sits there: same token or another one
            out["iia_by_token"] = {("same token" if k else "other token"): float(v)
                                   for k, v in first.groupby("same_token")["correct"].mean().items()}
        return out

    def save(self, out_dir, extra: dict | None = None) -> Path:
        return io.save_result(out_dir, {**self.summary(), **(extra or {})}, {"pairs.parquet": self.pairs})

    @classmethod
    def load(cls, folder) -> "FullSwapResult":
        from .. import loaders
        s = io.read_json(inside(folder, "result.json"))
        return cls(s["iia"], s["iia_by_program"], s["site"], s["n"], s["seed"],
                   loaders.read_job_table(Path(folder), "fullswap"))


@torch.no_grad()
def full_swap(model: nn.Module, task: Task, counts=None, options: FullSwapOptions | None = None,
              **opts) -> FullSwapResult:
    """Swap the whole state and score the model's continuation against each program's prediction; `options`,
    or `FullSwapOptions` fields as keywords (programs, site, n, seed, match, device)."""
    o = options or FullSwapOptions(**opts)
    programs = [p.strip() for p in o.programs.split(",") if p.strip()]
    if o.control == "untrained":
        from .search import untrained_copy
        model = untrained_copy(model, o.seed + 12_345)
    scores, frames = {}, []
    with frozen(model, o.device):
        at = get_site(model, o.site)
        swap = Intervention.whole_state(at, o.device)
        for name in programs:
            program = get_program(name)
            sampled = make_pairs(task, program, None, o.n, o.seed, counts, match=o.match,   # same seed: same pairs
                                 positions=o.positions)
            verdict = score(swap, cache(at, sampled.to(o.device)), free=False)
            scores[program.name] = float(verdict.correct.float().mean())
            frames.append(sampled.info().assign(program=program.name, correct=verdict.correct.numpy()))
    first = get_program(programs[0]).name
    return FullSwapResult(scores[first], scores, at.name, o.n, o.seed, pd.concat(frames, ignore_index=True))
