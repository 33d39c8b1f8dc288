"""Distributed Alignment Search: learn where a program's variable lives in a model.

`das` learns an alignment map so that swapping k aligned dimensions of the site state between a
base and a source run makes the frozen model produce the program's counterfactual continuation.
States at the site are cached once; each optimisation step only rotates, swaps, rotates back and
runs the continuation (see `sites`).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from .. import io
from ..errors import NumvarsError
from ..programs import Pairs, get_program, make_pairs
from ..tasks import PAD, Task
from .maps import block_masks, make_map, set_matrix
from .probe import probe_basis
from .protocol import DASOptions
from .scoring import intervene, loss, response_length, score
from .sites import cache, frozen, get_site


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
    steps: int
    seconds: float
    matrix: torch.Tensor = field(repr=False)
    pairs: pd.DataFrame = field(repr=False)
    history: pd.DataFrame = field(repr=False)

    def iia_by(self, column: str) -> pd.DataFrame:
        """IIA broken down by a pair column: base_value, source_value, abs_diff, variable, base_count, ..."""
        return self.pairs.groupby(column, as_index=False).agg(iia=("correct", "mean"), pairs=("correct", "size"))

    def per_variable(self) -> dict[str, float]:
        return self.pairs.groupby("variable")["correct"].mean().to_dict()

    @property
    def iia_nontrivial(self) -> float:
        """IIA on the pairs whose swap changes what the program predicts (NaN if there are none)."""
        return float(self.pairs.loc[~self.pairs["trivial"], "correct"].mean())

    @property
    def trivial_fraction(self) -> float:
        return float(self.pairs["trivial"].mean())

    def iia_by_phase(self) -> pd.DataFrame:
        """IIA by the phase of the base position t (rows) and the source position u (columns):
        demo, T (the trigger) or response, with the number of pairs in each cell."""
        return phase_table(self.pairs)

    def summary(self) -> dict:
        keys = ("iia", "iia_free", "token_accuracy", "val_iia", "iia_nontrivial", "trivial_fraction", "program",
                "k", "map", "site", "control", "seed", "epochs", "steps", "seconds")
        return {**{k: getattr(self, k) for k in keys}, "variables": list(self.variables),
                "iia_per_variable": self.per_variable()}

    def save(self, out_dir, extra: dict | None = None) -> Path:
        out = Path(out_dir)
        io.save_tensors(out / "alignment.safetensors", {"matrix": self.matrix})
        io.write_table(out / "pairs.parquet", self.pairs)
        io.write_table(out / "history.parquet", self.history)
        io.write_json(out / "result.json", {**self.summary(), **(extra or {})})   # last: its presence means "complete"
        return out


PHASES = ("demo", "T", "response")


def phase_table(pairs: pd.DataFrame, correct: str = "correct") -> pd.DataFrame:
    """Long table: phase_t, phase_u, iia, pairs (every combination of demo / T / response)."""
    grid = pd.MultiIndex.from_product([PHASES, PHASES], names=["phase_t", "phase_u"])
    table = pairs.groupby(["phase_t", "phase_u"])[correct].agg(iia="mean", pairs="size")
    table = table.reindex(grid).reset_index()
    table["pairs"] = table["pairs"].fillna(0).astype(int)
    return table


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
    resettable = [m for m in fresh.modules() if m is not fresh and callable(getattr(m, "reset_parameters", None))]
    if not resettable:
        raise NumvarsError(f"control=untrained needs submodules with reset_parameters (nn.Linear, nn.GRU, ...); "
                           f"{type(model).__name__} has none, so its copy would be the trained model itself")
    with torch.random.fork_rng(devices=[]):         # leave the caller's random stream alone
        torch.manual_seed(seed)
        for m in resettable:
            m.reset_parameters()
    return fresh


def pair_frame(pairs: Pairs, test, resp_token: int, eos_token: int) -> pd.DataFrame:
    """The per-pair diagnostics of a scored pair set."""
    info = pairs.info()
    info["abs_diff"] = (info["base_value"] - info["source_value"]).abs()
    info["correct"], info["correct_free"] = test.correct.numpy(), test.correct_free.numpy()
    if test.free_tokens is not None:
        length, ended = response_length(test.free_tokens, pairs.scored.cpu(), resp_token, eos_token)
        info["model_resp_len"], info["model_ended"] = length.numpy(), ended.numpy()
        info["signed_error"] = info["model_resp_len"] - info["cf_resp_len"]
    return info


def das(model: nn.Module, task: Task, program="up_down", variable="count", progress: bool = False, counts=None,
        **opts) -> DASResult:
    """Align `variable` (one name, or several as "a,b" in disjoint blocks) of `program` with `model`;
    `opts` are `DASOptions` fields (k, map, seed, site, control, n_train, ...)."""
    started = time.perf_counter()
    program = get_program(program)
    o = DASOptions(program=program.name, variable=",".join(variable) if not isinstance(variable, str) else variable,
                   **opts)
    variables = parse_variables(program, o.variable)
    device = o.device
    if o.control == "untrained":
        model = untrained_copy(model, o.seed + 12_345)
    with frozen(model, device):
        at = get_site(model, o.site)
        d = at.size
        k = d // 2 if o.k is None else o.k
        masks = block_masks(d, k, len(variables)).to(device)
        if counts is None and o.pair_counts == "train":
            counts = task.spec.train_counts
        sampled = make_pairs(task, program, variables, o.n_train + o.n_val + o.n_test, o.seed, counts,
                             positions=o.positions, demo_rule=o.demo_rule, max_extra_demo=o.max_extra_demo)
        pairs = cache(at, sampled.to(device))
        tr, va, te = slice(0, o.n_train), slice(o.n_train, o.n_train + o.n_val), slice(o.n_train + o.n_val, None)
        kind = o.control if o.control in ("random", "identity") else o.map
        align = make_map(kind, d, o.seed).to(device)
        if o.init == "probe" and kind in ("orthogonal", "linear"):
            t = pairs.select(tr)
            set_matrix(align, probe_basis(t.states["base"].cpu(), t.base_value, t.states["source"].cpu(),
                                          t.source_value, t.var_index.cpu(), len(variables), k))
        if o.control in ("random", "identity"):             # fixed maps: nothing to fit
            history, epochs, steps = [], 0, 0
            val_iia = float(score(at, align, masks, pairs.select(va), free=False).correct.float().mean())
        else:
            align, history, epochs, steps, val_iia = _fit(at, align, masks, pairs.select(tr), pairs.select(va), o,
                                                          progress)
        test = score(at, align, masks, pairs.select(te))
    frame = pair_frame(sampled.select(te), test, task.resp_id, task.vocab["EOS"])
    with torch.no_grad(), parametrize.cached():
        matrix = align.matrix.detach().cpu().clone()
    return DASResult(iia=float(test.correct.float().mean()), iia_free=float(test.correct_free.float().mean()),
                     token_accuracy=test.token_accuracy, val_iia=val_iia,
                     variables=variables, program=program.name, k=k, map=kind, site=at.name, control=o.control,
                     seed=o.seed, epochs=epochs, steps=steps, seconds=round(time.perf_counter() - started, 2), matrix=matrix,
                     pairs=frame, history=pd.DataFrame(history, columns=["epoch", "loss", "val_loss", "val_iia"]))


def das_step(site, align, masks, batch: Pairs, opt: torch.optim.Optimizer, loss_on: str = "scored") -> torch.Tensor:
    """One optimisation step on a batch of cached pairs: rotate, swap, rotate back, run the
    continuation, cross-entropy on the scored tokens (or, loss_on="all", on every continuation
    token, forced demo tokens and trigger included). Returns the (detached) loss."""
    on = batch.scored if loss_on == "scored" else batch.cont_roles != PAD
    with parametrize.cached():          # the orthogonal matrix once per step, not once per use
        value = loss(site.run(batch, intervene(align, masks, batch)), batch.cont, on)
        opt.zero_grad(set_to_none=True)
        value.backward()
    opt.step()
    return value.detach()


def _fit(site, align, masks, train: Pairs, val: Pairs, o: DASOptions, progress: bool):
    """Adam on the alignment; keep the map with the best validation IIA. Stop at the target IIA, or on a
    plateau: `patience` epochs in which the validation loss fell by less than 1e-3 (IIA moves in steps
    of whole pairs and often stalls while the loss still falls, as in the paper's code)."""
    opt = torch.optim.Adam(align.parameters(), lr=o.lr)
    gen = torch.Generator().manual_seed(o.seed)
    best, best_loss, best_state, stale, history = -1.0, math.inf, copy.deepcopy(align.state_dict()), 0, []
    per_epoch = math.ceil(len(train) / o.batch_size)
    epochs = o.max_epochs if o.max_steps is None else math.ceil(o.max_steps / per_epoch)
    total = o.max_steps or epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 1.0 if o.schedule == "constant" else 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    steps = 0
    bar = tqdm(range(1, epochs + 1), disable=not progress, desc="DAS", unit="ep", leave=False)
    for epoch in bar:
        losses = []
        for idx in torch.randperm(len(train), generator=gen).split(o.batch_size):
            if o.max_steps is not None and steps >= o.max_steps:
                break
            losses.append(das_step(site, align, masks, train.select(idx.to(train.t.device)), opt, o.loss_on))
            sched.step()
            steps += 1
        checked = score(site, align, masks, val, free=False)
        val_iia = float(checked.correct.float().mean())
        history.append((epoch, float(torch.stack(losses).mean()), checked.loss, val_iia))
        bar.set_postfix(loss=f"{history[-1][1]:.3f}", val_iia=f"{val_iia:.3f}")
        if val_iia > best:
            best, best_state = val_iia, copy.deepcopy(align.state_dict())
        stale = 0 if checked.loss < best_loss - 1e-3 else stale + 1
        best_loss = min(best_loss, checked.loss)
        if best >= o.target or stale >= o.patience or (o.max_steps is not None and steps >= o.max_steps):
            break
    align.load_state_dict(best_state)
    return align, history, epoch, steps, best
