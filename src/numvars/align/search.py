"""Distributed Alignment Search (SPEC §5.2–5.5): learn where a program's variable lives.

`das` learns an alignment map so that swapping k aligned dimensions of the site state between a
base and a source run makes the frozen model produce the program's counterfactual continuation.
States at the site are cached once; each optimisation step only rotates, swaps, rotates back and
runs the continuation (see `sites`). `full_swap` is the Context-Distributed test (SPEC §5.4).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from .. import io
from ..errors import NumvarsError
from ..programs import get_program
from ..tasks import Task
from .maps import MAPS, block_masks, interchange, make_map
from .pairs import cache_pairs, make_pairset
from .sites import Cache, frozen, get_site

CONTROLS = ("untrained", "random", "identity")


@dataclass
class Scores:
    correct: torch.Tensor       # (N,) teacher-forced: every scored token right
    correct_free: torch.Tensor  # (N,) free-running: the same, feeding the model its own tokens
    token_accuracy: float
    loss: float                 # mean cross-entropy over scored tokens (teacher-forced)


@dataclass
class DASResult:
    """A fitted alignment and its test-set scores; `pairs` has one row per test pair."""

    iia: float
    iia_free: float
    token_accuracy: float
    val_iia: float
    variables: tuple[str, ...]
    program: str
    k: int
    map: str
    site: str
    control: str | None
    seed: int
    epochs: int
    seconds: float
    matrix: torch.Tensor = field(repr=False)
    pairs: pd.DataFrame = field(repr=False)
    history: pd.DataFrame = field(repr=False)

    def iia_by(self, column: str) -> pd.DataFrame:
        """IIA broken down by a pair column: base_value, source_value, abs_diff, variable, base_count, ..."""
        return self.pairs.groupby(column, as_index=False).agg(iia=("correct", "mean"), pairs=("correct", "size"))

    def per_variable(self) -> dict[str, float]:
        return self.pairs.groupby("variable")["correct"].mean().to_dict()

    def summary(self) -> dict:
        keys = ("iia", "iia_free", "token_accuracy", "val_iia", "program", "k", "map", "site", "control", "seed",
                "epochs", "seconds")
        return {**{k: getattr(self, k) for k in keys}, "variables": list(self.variables),
                "iia_per_variable": self.per_variable()}

    def save(self, out_dir) -> Path:
        out = Path(out_dir)
        io.save_tensors(out / "alignment.safetensors", {"matrix": self.matrix})
        io.write_table(out / "pairs.parquet", self.pairs)
        io.write_table(out / "history.parquet", self.history)
        io.write_json(out / "result.json", self.summary())   # last: its presence means "complete"
        return out


def parse_variables(program, variable) -> tuple[str, ...]:
    names = tuple(v.strip() for v in variable.split(",")) if isinstance(variable, str) else tuple(variable)
    if not program.variables:
        raise NumvarsError(f"program {program.name!r} has no variables to align; test it with full_swap")
    for v in names:
        if v not in program.variables:
            raise NumvarsError(f"program {program.name!r} has no variable {v!r}; its variables: "
                               f"{', '.join(program.variables)}")
    if len(set(names)) != len(names) or not names:
        raise NumvarsError(f"variable={variable!r}: name each variable once, e.g. variable=count,phase")
    return names


def untrained_copy(model: nn.Module, seed: int) -> nn.Module:
    """The same architecture with fresh weights (every submodule's own reset_parameters)."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):         # leave the caller's random stream alone
        torch.manual_seed(seed)
        for m in fresh.modules():
            if m is not fresh and callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
    return fresh


def _loss(logits: torch.Tensor, cont: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[scored], cont[scored])


def _intervened(site, align, masks, cache: Cache, var_index: torch.Tensor) -> torch.Tensor:
    return interchange(align, masks[var_index], cache.base, cache.source)


@torch.no_grad()
def score(site, align, masks, cache: Cache, pairs_scored: torch.Tensor, var_index: torch.Tensor,
          free: bool = True, chunk: int = 1024) -> Scores:
    """IIA verdicts per pair, teacher-forced and (optionally) free-running."""
    correct, correct_free, tok_right, tok_total, loss_sum = [], [], 0, 0, 0.0
    with parametrize.cached():
        for i in range(0, len(cache.t), chunk):
            sl = slice(i, i + chunk)
            c, scored = cache.select(sl), pairs_scored[sl]
            state = _intervened(site, align, masks, c, var_index[sl])
            logits = site.run(c, state)
            loss_sum += float(F.cross_entropy(logits[scored], c.cont[scored], reduction="sum"))
            right = (logits.argmax(-1) == c.cont) | ~scored
            correct.append(right.all(1))
            tok_right += int((right & scored).sum())
            tok_total += int(scored.sum())
            if free:
                gen = site.free_run(c, state, scored)
                correct_free.append(((gen == c.cont) | ~scored).all(1))
    correct = torch.cat(correct).cpu()
    return Scores(correct, torch.cat(correct_free).cpu() if free else correct, tok_right / max(tok_total, 1),
                  loss_sum / max(tok_total, 1))


def das(model: nn.Module, task: Task, program, variable="count", k: int | None = None, map: str = "orthogonal",
        seed: int = 0, site: str | None = None, control: str | None = None, n_train: int = 10_000,
        n_val: int = 1_000, n_test: int = 1_000, batch_size: int = 512, lr: float = 3e-3, max_epochs: int = 50,
        patience: int = 8, target: float = 0.995, counts=None, device: str = "cpu",
        progress: bool = False) -> DASResult:
    """Align `variable` (one name, or several as "a,b" in disjoint blocks) of `program` with `model`."""
    started = time.perf_counter()
    program = get_program(program)
    variables = parse_variables(program, variable)
    if map not in MAPS:
        raise NumvarsError(f"unknown map {map!r}; choose one of {', '.join(MAPS)}")
    if control not in (None, *CONTROLS):
        raise NumvarsError(f"unknown control {control!r}; choose one of {', '.join(CONTROLS)}")
    if min(n_train, n_val, n_test, batch_size, max_epochs) < 1:
        raise NumvarsError("n_train, n_val, n_test, batch_size and max_epochs must be >= 1")
    if lr <= 0 or seed < 0:
        raise NumvarsError(f"lr={lr} must be > 0 and seed={seed} >= 0")
    if control == "untrained":
        model = untrained_copy(model, seed + 12_345)
    with frozen(model, device):
        at = get_site(model, site)
        d = at.size
        k = d // 2 if k is None else k
        masks = block_masks(d, k, len(variables)).to(device)
        pairs = make_pairset(task, program, variables, n_train + n_val + n_test, seed, counts)
        cache = cache_pairs(at, pairs, device)
        scored, var_index = pairs.scored.to(device), pairs.var_index.to(device)
        tr, va, te = slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None)
        kind = control if control in ("random", "identity") else map
        align = make_map(kind, d, seed).to(device)
        if control in ("random", "identity"):             # fixed maps: nothing to fit
            history, epochs = [], 0
            val_iia = float(score(at, align, masks, cache.select(va), scored[va], var_index[va],
                                  free=False).correct.float().mean())
        else:
            align, history, epochs, val_iia = _fit(at, align, masks, cache, scored, var_index, tr, va, batch_size,
                                                   lr, max_epochs, patience, target, seed, progress)
        test = score(at, align, masks, cache.select(te), scored[te], var_index[te])
    info = pairs.info.iloc[n_train + n_val:].reset_index(drop=True)
    info["abs_diff"] = (info["base_value"] - info["source_value"]).abs()
    info["correct"], info["correct_free"] = test.correct.numpy(), test.correct_free.numpy()
    with torch.no_grad(), parametrize.cached():
        matrix = align.matrix.detach().cpu().clone()
    return DASResult(iia=float(test.correct.float().mean()), iia_free=float(test.correct_free.float().mean()),
                     token_accuracy=test.token_accuracy, val_iia=val_iia,
                     variables=variables, program=program.name, k=k, map=kind, site=at.name, control=control,
                     seed=seed, epochs=epochs, seconds=round(time.perf_counter() - started, 2), matrix=matrix,
                     pairs=info, history=pd.DataFrame(history, columns=["epoch", "loss", "val_loss", "val_iia"]))


def das_step(site, align, masks, batch: Cache, var_index: torch.Tensor, scored: torch.Tensor,
             opt: torch.optim.Optimizer) -> torch.Tensor:
    """One optimisation step on a batch of cached pairs: rotate, swap, rotate back, run the
    continuation, cross-entropy on the scored tokens. Returns the (detached) loss."""
    with parametrize.cached():          # the orthogonal matrix once per step, not once per use
        state = _intervened(site, align, masks, batch, var_index)
        loss = _loss(site.run(batch, state), batch.cont, scored)
        opt.zero_grad(set_to_none=True)
        loss.backward()
    opt.step()
    return loss.detach()


def _fit(site, align, masks, cache, scored, var_index, tr, va, batch_size, lr, max_epochs, patience, target, seed,
         progress):
    """Adam on the alignment; keep the map with the best validation IIA. Stop at the target IIA, or on a
    plateau: `patience` epochs in which the validation loss fell by less than 1e-3 (IIA moves in steps
    of whole pairs and often stalls while the loss still falls, as in the paper's code)."""
    opt = torch.optim.Adam(align.parameters(), lr=lr)
    train_cache, train_scored, train_var = cache.select(tr), scored[tr], var_index[tr]
    val_cache, val_scored, val_var = cache.select(va), scored[va], var_index[va]
    gen = torch.Generator().manual_seed(seed)
    best, best_loss, best_state, stale, history = -1.0, math.inf, copy.deepcopy(align.state_dict()), 0, []
    bar = tqdm(range(1, max_epochs + 1), disable=not progress, desc="DAS", unit="ep", leave=False)
    for epoch in bar:
        losses = []
        for idx in torch.randperm(len(train_cache.t), generator=gen).split(batch_size):
            idx = idx.to(train_scored.device)
            losses.append(das_step(site, align, masks, train_cache.select(idx), train_var[idx], train_scored[idx], opt))
        checked = score(site, align, masks, val_cache, val_scored, val_var, free=False)
        val = float(checked.correct.float().mean())
        history.append((epoch, float(torch.stack(losses).mean()), checked.loss, val))
        bar.set_postfix(loss=f"{history[-1][1]:.3f}", val_iia=f"{val:.3f}")
        if val > best:
            best, best_state = val, copy.deepcopy(align.state_dict())
        stale = 0 if checked.loss < best_loss - 1e-3 else stale + 1
        best_loss = min(best_loss, checked.loss)
        if best >= target or stale >= patience:
            break
    align.load_state_dict(best_state)
    return align, history, epoch, best
