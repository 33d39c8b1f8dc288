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

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from ..errors import NumvarsError
from ..programs import get_program, make_pairs
from ..tasks import Task
from .protocol import CrossOptions
from .maps import make_map, set_matrix
from .probe import probe_basis
from .search import parse_variables
from .sites import cache, frozen, get_site


@dataclass
class CrossResult:
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


def _swap(target_map, source_map, k: int, base: Tensor, source: Tensor) -> Tensor:
    """The target's state with its first k aligned dimensions taken from the source model's."""
    aligned = target_map(base)
    taken = source_map(source)[:, :k]
    return target_map.inverse(torch.cat([taken, aligned[:, k:]], dim=1))


class _Direction:
    def __init__(self, name, target_site, target_pairs, target_map, source_pairs, source_map):
        self.name, self.site, self.pairs, self.map = name, target_site, target_pairs, target_map
        self.source_states, self.source_map = source_pairs.states["source"], source_map

    def logits(self, idx, k):
        batch = self.pairs.select(idx)
        state = _swap(self.map, self.source_map, k, batch.states["base"], self.source_states[idx])
        return self.site.run(batch, state), batch


def align_models(model_a: nn.Module, model_b: nn.Module, task: Task, program="up_down", variable: str = "count",
                 k: int | None = None, map: str = "orthogonal", seed: int = 0, n_train: int = 5000,
                 n_val: int = 500, n_test: int = 1000, batch_size: int = 512, lr: float = 3e-3,
                 max_epochs: int = 30, patience: int = 6, within: bool = True, init: str = "probe",
                 device: str = "cpu", progress: bool = False) -> CrossResult:
    """Learn one map per model so that each model's aligned subspace can stand in for the other's."""
    started = time.perf_counter()
    CrossOptions(variable=variable, k=k, map=map, seed=seed, n_train=n_train, n_val=n_val, n_test=n_test,
                 max_epochs=max_epochs, within=within, init=init, device=device)
    program = get_program(program)
    (var,) = parse_variables(program, variable)
    with frozen(model_a, device), frozen(model_b, device):
        sites = {"a": get_site(model_a), "b": get_site(model_b)}
        d = min(s.size for s in sites.values())
        k = d // 2 if k is None else k
        if not 1 <= k <= d:
            raise NumvarsError(f"k={k} must be in 1..{d} (the smaller model's state size)")
        maps = nn.ModuleDict({m: make_map(map, sites[m].size, seed + i).to(device) for i, m in enumerate("ab")})
        sampled = make_pairs(task, program, var, n_train + n_val + n_test, seed)
        pairs = {m: cache(sites[m], sampled.to(device)) for m in "ab"}
        if init == "probe":            # each map starts where a probe reads the variable in its own model
            for m in "ab":
                t = pairs[m].select(slice(0, n_train))
                set_matrix(maps[m], probe_basis(t.states["base"].cpu(), t.base_value.cpu(), t.states["source"].cpu(),
                                                t.source_value.cpu(), t.var_index.cpu(), 1, k))
        names = [("a", "b"), ("b", "a")] + ([("a", "a"), ("b", "b")] if within else [])
        dirs = [_Direction(f"{t}<-{s}", sites[t], pairs[t], maps[t], pairs[s], maps[s]) for t, s in names]
        tr, va, te = (torch.arange(0, n_train), torch.arange(n_train, n_train + n_val),
                      torch.arange(n_train + n_val, n_train + n_val + n_test))
        epochs = _fit(dirs, maps, k, tr.to(device), va.to(device), batch_size, lr, max_epochs, patience, seed, progress)
        verdicts = {dr.name: _correct(dr, te.to(device), k) for dr in dirs}
    info = sampled.select(te).info()
    frames = [info.assign(direction=name, correct=ok.numpy()) for name, ok in verdicts.items()]
    frame = pd.concat(frames, ignore_index=True)
    iia = {name: float(ok.float().mean()) for name, ok in verdicts.items()}
    trivial = torch.tensor(info["trivial"].to_numpy().copy())
    nontrivial = {name: float(ok[~trivial].float().mean())
                  for name, ok in verdicts.items()}
    return CrossResult(iia, nontrivial, k, map, program.name, var, epochs, round(time.perf_counter() - started, 2),
                       frame)


@torch.no_grad()
def _correct(direction: _Direction, idx: Tensor, k: int, chunk: int = 1024) -> Tensor:
    out = []
    with parametrize.cached():
        for part in idx.split(chunk):
            logits, batch = direction.logits(part, k)
            out.append(((logits.argmax(-1) == batch.cont) | ~batch.scored).all(1))
    return torch.cat(out).cpu()


def _fit(dirs, maps, k, tr, va, batch_size, lr, max_epochs, patience, seed, progress) -> int:
    """Adam on both maps, summing every direction's loss; keep the maps with the best mean validation
    IIA over the cross-model directions; stop on a validation plateau."""
    opt = torch.optim.Adam(maps.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    cross = [dr for dr in dirs if dr.name[0] != dr.name[-1]]
    best, best_state, stale, epoch = -1.0, copy.deepcopy(maps.state_dict()), 0, 0
    bar = tqdm(range(1, max_epochs + 1), disable=not progress, desc="align models", unit="ep", leave=False)
    for epoch in bar:
        for part in tr[torch.randperm(len(tr), generator=gen).to(tr.device)].split(batch_size):
            with parametrize.cached():
                loss = 0.0
                for dr in dirs:
                    logits, batch = dr.logits(part, k)
                    loss = loss + F.cross_entropy(logits[batch.scored], batch.cont[batch.scored])
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
        val = sum(float(_correct(dr, va, k).float().mean()) for dr in cross) / len(cross)
        bar.set_postfix(val_iia=f"{val:.3f}")
        if val > best + 1e-3:
            best, best_state, stale = val, copy.deepcopy(maps.state_dict()), 0
        else:
            stale += 1
        if best >= 0.995 or stale >= patience:
            break
    maps.load_state_dict(best_state)
    return epoch
