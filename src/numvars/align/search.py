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
    def logprob(self) -> float:
        """Mean log-probability of the expected continuation over the test pairs (teacher-forced)."""
        return float(self.pairs["logprob"].mean()) if "logprob" in self.pairs else float("nan")

    @property
    def trivial_fraction(self) -> float:
        return float(self.pairs["trivial"].mean())

    def iia_by_phase(self) -> pd.DataFrame:
        """IIA by the phase of the base position t (rows) and the source position u (columns):
        demo, T (the trigger) or response, with the number of pairs in each cell."""
        return phase_table(self.pairs)

    def summary(self) -> dict:
        keys = ("iia", "iia_free", "token_accuracy", "val_iia", "iia_nontrivial", "trivial_fraction", "logprob", "program",
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
    if test.logprob is not None:
        info["logprob"] = test.logprob.numpy()
    if test.free_tokens is not None:
        length, ended = response_length(test.free_tokens, pairs.scored.cpu(), resp_token, eos_token)
        info["model_resp_len"], info["model_ended"] = length.numpy(), ended.numpy()
        info["signed_error"] = info["model_resp_len"] - info["cf_resp_len"]
    return info


def das(model: nn.Module, task: Task, program="up_down", variable="count", progress: bool = False, counts=None,
        **opts) -> DASResult:
    """Align `variable` (one name, or several as "a,b" in disjoint blocks) of `program` with `model`;
    `opts` are `DASOptions` fields (k, map, seed, site, control, n_train, ...)."""
    return das_set(model, task, program, variable, [opts], counts, progress)[0]


def das_set(model: nn.Module, task: Task, program="up_down", variable="count", options: list[dict] = (),
            counts=None, progress: bool = False) -> list[DASResult]:
    """`das` for each option set (k, map, control, ...) of one program variable, in order. Alignments that
    draw the same pairs (seed, sizes, position rule) sample them once, and those on the same model and site
    also cache its states once: a k sweep over both maps, with its untrained controls, pays for one pair set
    and two caches (the model and its untrained copy), not one per alignment."""
    samples, caches, copies, out = {}, {}, {}, []
    for opts in options:
        started = time.perf_counter()
        o, prog, variables = resolve(program, variable, opts)
        net = model
        if o.control == "untrained":
            net = copies.setdefault(o.seed, untrained_copy(model, o.seed + 12_345))
        with frozen(net, o.device):
            key = pair_key(o)
            if key not in samples:
                samples[key] = sample_pairs(task, prog, variables, o, counts)
            site = get_site(net, o.site)
            where = (key, id(net), site.name, o.device)
            if where not in caches:
                caches[where] = cache(site, samples[key].to(o.device))
            p = prepare(net, task, prog, variables, o, sampled=samples[key], cached=caches[where])
            if p.fixed:                                         # fixed maps: nothing to fit
                history, epochs, steps, val_iia = [], 0, 0, validate(p)
            else:
                p.align, history, epochs, steps, val_iia = _fit(p.site, p.align, p.masks, p.train, p.val, o, progress)
            out.append(result(p, task, history, epochs, steps, val_iia, started))
    return out


@dataclass
class Prepared:
    """An alignment ready to fit: options, site, masks, the sampled pairs with cached states, the map."""

    o: DASOptions
    program: str
    variables: tuple[str, ...]
    site: object
    k: int
    masks: torch.Tensor
    sampled: Pairs           # train, validation and test pairs, without states
    pairs: Pairs             # the same with the site's cached states, on the device
    kind: str                # orthogonal, linear, random or identity
    align: nn.Module

    @property
    def fixed(self) -> bool:
        return self.o.control in ("random", "identity")

    def _part(self, pairs: Pairs, part: str) -> Pairs:
        o = self.o
        bounds = {"train": (0, o.n_train), "val": (o.n_train, o.n_train + o.n_val), "test": (o.n_train + o.n_val, None)}
        return pairs.select(slice(*bounds[part]))

    train = property(lambda self: self._part(self.pairs, "train"))
    val = property(lambda self: self._part(self.pairs, "val"))
    test = property(lambda self: self._part(self.pairs, "test"))


def resolve(program, variable, opts: dict) -> tuple[DASOptions, object, tuple[str, ...]]:
    """(options, program, variable names) of an alignment request, checked."""
    program = get_program(program)
    o = DASOptions(program=program.name, variable=",".join(variable) if not isinstance(variable, str) else variable,
                   **opts)
    return o, program, parse_variables(program, o.variable)


def check(model: nn.Module, program, variable, opts: dict) -> None:
    """Refuse an alignment that cannot run on `model` (program, variables, site, k) before anything is written
    or drawn; the same errors `das` would raise."""
    o, _, variables = resolve(program, variable, opts)
    size = get_site(model, o.site).size
    block_masks(size, size // 2 if o.k is None else o.k, len(variables))


def pair_key(o: DASOptions) -> tuple:
    """The options that decide which pairs an alignment draws (alignments equal in these share them)."""
    return (o.n_train, o.n_val, o.n_test, o.seed, o.positions, o.pair_counts, o.demo_rule, o.max_extra_demo)


def sample_pairs(task: Task, program, variables, o: DASOptions, counts=None) -> Pairs:
    """The train, validation and test pairs of an alignment, in that order, without states."""
    if counts is None and o.pair_counts == "train":
        counts = task.spec.train_counts
    return make_pairs(task, program, variables, o.n_train + o.n_val + o.n_test, o.seed, counts,
                      positions=o.positions, demo_rule=o.demo_rule, max_extra_demo=o.max_extra_demo)


def prepare(model: nn.Module, task: Task, program, variables, o: DASOptions, counts=None, sampled: Pairs = None,
            cached: Pairs = None) -> Prepared:
    """Sample the pairs (or take `sampled`), cache the site's states (or take `cached`, the same pairs with
    this model's states) and initialise the map. The model must be `frozen`."""
    at = get_site(model, o.site)
    d = at.size
    k = d // 2 if o.k is None else o.k
    masks = block_masks(d, k, len(variables)).to(o.device)
    sampled = sample_pairs(task, program, variables, o, counts) if sampled is None else sampled
    cached = cache(at, sampled.to(o.device)) if cached is None else cached
    kind = o.control if o.control in ("random", "identity") else o.map
    p = Prepared(o, program.name, variables, at, k, masks, sampled, cached, kind,
                 make_map(kind, d, o.seed).to(o.device))
    if o.init == "probe" and kind in ("orthogonal", "linear"):      # start where a probe reads the variable
        t = p.train
        set_matrix(p.align, probe_basis(t.states["base"].cpu(), t.base_value.cpu(), t.states["source"].cpu(),
                                        t.source_value.cpu(), t.var_index.cpu(), len(variables), k))
    return p


def validate(p: Prepared) -> float:
    return float(score(p.site, p.align, p.masks, p.val, free=False).correct.float().mean())


def result(p: Prepared, task: Task, history, epochs: int, steps: int, val_iia: float, started: float) -> DASResult:
    """Score the fitted map on the test pairs (the model still frozen) and collect everything."""
    test = score(p.site, p.align, p.masks, p.test)
    frame = pair_frame(p._part(p.sampled, "test"), test, task.resp_id, task.vocab["EOS"])
    with torch.no_grad(), parametrize.cached():
        matrix = p.align.matrix.detach().cpu().clone()
    return DASResult(iia=float(test.correct.float().mean()), iia_free=float(test.correct_free.float().mean()),
                     token_accuracy=test.token_accuracy, val_iia=val_iia, variables=p.variables, program=p.program,
                     k=p.k, map=p.kind, site=p.site.name, control=p.o.control, seed=p.o.seed, epochs=epochs,
                     steps=steps, seconds=round(time.perf_counter() - started, 2), matrix=matrix, pairs=frame,
                     history=pd.DataFrame(history, columns=["epoch", "loss", "val_loss", "val_iia"]))


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


class Best:
    """Keeps the map with the best validation IIA and says when to stop: at the target IIA, or on a
    plateau: `patience` epochs in which the validation loss fell by less than 1e-3 (IIA moves in steps
    of whole pairs and often stalls while the loss still falls, as in the paper's code)."""

    def __init__(self, align: nn.Module, o: DASOptions):
        self.align, self.o = align, o
        self.iia, self.loss, self.stale, self.history = -1.0, math.inf, 0, []
        self.state = copy.deepcopy(align.state_dict())

    def update(self, epoch: int, losses: list[torch.Tensor], checked, steps: int) -> bool:
        """Record an epoch's validation scores; True when the fit should stop."""
        val_iia, o = float(checked.correct.float().mean()), self.o
        self.history.append((epoch, float(torch.stack(losses).mean()), checked.loss, val_iia))
        if val_iia > self.iia:
            self.iia, self.state = val_iia, copy.deepcopy(self.align.state_dict())
        self.stale = 0 if checked.loss < self.loss - 1e-3 else self.stale + 1
        self.loss = min(self.loss, checked.loss)
        return self.iia >= o.target or self.stale >= o.patience or (o.max_steps is not None and steps >= o.max_steps)

    def restore(self) -> nn.Module:
        self.align.load_state_dict(self.state)
        return self.align


def epoch_budget(train: Pairs, o: DASOptions) -> int:
    per_epoch = math.ceil(len(train) / o.batch_size)
    return o.max_epochs if o.max_steps is None else math.ceil(o.max_steps / per_epoch)


def lr_factor(step: int, train: Pairs, o: DASOptions) -> float:
    """The learning rate of optimiser step `step` (0-based) over lr: 1 (constant), or a cosine decay
    to 0 over the whole budget (max_steps, or max_epochs of steps)."""
    if o.schedule == "constant":
        return 1.0
    total = o.max_steps or epoch_budget(train, o) * math.ceil(len(train) / o.batch_size)
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def lr_schedule(opt: torch.optim.Optimizer, train: Pairs, o: DASOptions) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, train, o))


def _fit(site, align, masks, train: Pairs, val: Pairs, o: DASOptions, progress: bool):
    """Adam on the alignment; keep the map with the best validation IIA, stop as `Best` says."""
    opt = torch.optim.Adam(align.parameters(), lr=o.lr)
    sched = lr_schedule(opt, train, o)
    gen = torch.Generator().manual_seed(o.seed)
    best, steps = Best(align, o), 0
    bar = tqdm(range(1, epoch_budget(train, o) + 1), disable=not progress, desc="DAS", unit="ep", leave=False)
    for epoch in bar:
        losses = []
        for idx in torch.randperm(len(train), generator=gen).split(o.batch_size):
            if o.max_steps is not None and steps >= o.max_steps:
                break
            losses.append(das_step(site, align, masks, train.select(idx.to(train.t.device)), opt, o.loss_on))
            sched.step()
            steps += 1
        stop = best.update(epoch, losses, score(site, align, masks, val, free=False), steps)
        bar.set_postfix(loss=f"{best.history[-1][1]:.3f}", val_iia=f"{best.history[-1][3]:.3f}")
        if stop:
            break
    return best.restore(), best.history, epoch, steps, best.iia
