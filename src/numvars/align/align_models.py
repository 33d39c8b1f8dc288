"""Cross-model alignment (Model Alignment Search): does model B hold the same variable where model A does?

One invertible map per model (A_a, A_b). Swapping B's aligned subspace into A's state,
    a' = A_a⁻¹( (1 − M)·A_a a + M·A_b b ),
should make A continue with B's value of the variable, as the program says; and the other way
round. Both maps are learned together on both directions (and, by default, on each model with
itself, which keeps each map meaningful on its own, as in the authors' code). IIA is reported for
every direction: "a<-b" is B's count put into A.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import io
from ..paths import inside
from ..programs import Pairs, get_program, make_pairs
from ..tasks import Task
from .fit import optimise
from .intervention import Intervention
from .maps import block_masks, make_map, set_matrix, subspace_size
from .probe import probe_basis
from .protocol import AlignModelsOptions
from .scoring import score
from .search import parse_variables
from .sites import cache, frozen, get_site


@dataclass
class AlignModelsResult:
    iia: dict[str, float]            # direction ("a<-b", "b<-a", "a<-a", "b<-b") -> test IIA
    iia_nontrivial: dict[str, float]
    k: int
    map: str
    program: str
    variable: str
    epochs: int
    seconds: float
    pairs: pd.DataFrame = field(repr=False)

    def summary(self) -> dict:
        return {"iia": self.iia, "iia_nontrivial": self.iia_nontrivial, "k": self.k, "map": self.map,
                "program": self.program, "variable": self.variable, "epochs": self.epochs, "seconds": self.seconds}


    def save(self, out_dir, extra: dict | None = None) -> Path:
        return io.save_result(out_dir, {**self.summary(), **(extra or {})}, {"pairs.parquet": self.pairs})

    @classmethod
    def load(cls, folder) -> "AlignModelsResult":
        from .. import loaders
        s = io.read_json(inside(folder, "result.json"))
        return cls(s["iia"], s["iia_nontrivial"], s["k"], s["map"], s["program"], s["variable"], s["epochs"],
                   s["seconds"], loaders.read_job_table(Path(folder), "align_models"))


def align_models(model_a: nn.Module, model_b: nn.Module, task: Task, options: AlignModelsOptions | None = None,
                 progress: bool = False, batch_size: int = 512, lr: float = 3e-3, patience: int = 6,
                 **opts) -> AlignModelsResult:
    """Learn one map per model so that each model's aligned subspace can stand in for the other's.
    `options`, or AlignModelsOptions fields as keywords (program, variable, k, map, seed, n_train, ...)."""
    started = time.perf_counter()
    o = options or AlignModelsOptions(**opts)
    program = get_program(o.program)
    (var,) = parse_variables(program, o.variable)
    with frozen(model_a, o.device), frozen(model_b, o.device):
        sites = {"a": get_site(model_a), "b": get_site(model_b)}
        k = subspace_size(o.k, min(s.size for s in sites.values()))
        maps = nn.ModuleDict({m: make_map(o.map, sites[m].size, o.seed + i).to(o.device) for i, m in enumerate("ab")})
        sampled = make_pairs(task, program, var, o.n_train + o.n_val + o.n_test, o.seed)
        pairs = {m: cache(sites[m], sampled.to(o.device)) for m in "ab"}
        if o.init == "probe":          # each map starts where a probe reads the variable in its own model
            for m in "ab":
                t = pairs[m].select(slice(0, o.n_train))
                set_matrix(maps[m], probe_basis(t.states["base"].cpu(), t.base_value.cpu(), t.states["source"].cpu(),
                                                t.source_value.cpu(), t.var_index.cpu(), 1, k))
        names = [("a", "b"), ("b", "a")] + ([("a", "a"), ("b", "b")] if o.within else [])
        dirs = {f"{t}<-{s}": _direction(sites[t], maps[t], maps[s], pairs[t], pairs[s], k) for t, s in names}
        n = o.n_train + o.n_val
        train = {name: p.select(slice(0, o.n_train)) for name, (_, p) in dirs.items()}
        val = {name: p.select(slice(o.n_train, n)) for name, (_, p) in dirs.items()}
        plateau = IIAPlateau(maps, {name: (iv, val[name]) for name, (iv, _) in dirs.items() if name[0] != name[-1]},
                             patience)
        epochs, _ = optimise(maps.parameters(), o.n_train, batch_size, lr, o.seed, o.max_epochs,
                             lambda idx: sum(_loss(iv, train[name].select(idx.to(train[name].t.device)))
                                             for name, (iv, _) in dirs.items()),
                             plateau.check, progress=progress, desc="align models")
        plateau.restore()
        verdicts = {name: score(iv, p.select(slice(n, None)), free=False).correct for name, (iv, p) in dirs.items()}
    info = sampled.select(slice(n, None)).info()
    frames = [info.assign(direction=name, correct=ok.numpy()) for name, ok in verdicts.items()]
    frame = pd.concat(frames, ignore_index=True)
    iia = {name: float(ok.float().mean()) for name, ok in verdicts.items()}
    trivial = torch.tensor(info["trivial"].to_numpy().copy())
    nontrivial = {name: float(ok[~trivial].float().mean()) for name, ok in verdicts.items()}
    return AlignModelsResult(iia, nontrivial, k, o.map, program.name, var, epochs, round(time.perf_counter() - started, 2),
                       frame)


def _direction(site, target_map, source_map, target: Pairs, source: Pairs, k: int) -> tuple[Intervention, Pairs]:
    """The intervention of one direction (the source model's aligned count into the target) and its pairs: the
    target's with the source model's states at u."""
    masks = block_masks(site.size, k, 1).to(target.t.device)
    return Intervention(site, target_map, masks, source_map), target.with_states({**target.states,
                                                                                 "source": source.states["source"]})


def _loss(iv: Intervention, batch: Pairs):
    logits = iv.logits(batch)
    return F.cross_entropy(logits[batch.scored], batch.cont[batch.scored])


class IIAPlateau:
    """Keeps the maps with the best mean validation IIA over the cross-model directions and stops at 0.995 or
    after `patience` epochs without a gain of 1e-3 (the check of `fit.optimise`)."""

    def __init__(self, maps: nn.Module, directions: dict, patience: int):
        self.maps, self.directions, self.patience = maps, directions, patience
        self.best, self.state, self.stale = -1.0, copy.deepcopy(maps.state_dict()), 0

    def check(self, epoch: int, losses, steps: int) -> bool:
        val = sum(float(score(iv, pairs, free=False).correct.float().mean()) for iv, pairs in
                  self.directions.values()) / len(self.directions)
        if val > self.best + 1e-3:
            self.best, self.state, self.stale = val, copy.deepcopy(self.maps.state_dict()), 0
        else:
            self.stale += 1
        return self.best >= 0.995 or self.stale >= self.patience

    def restore(self) -> None:
        self.maps.load_state_dict(self.state)
