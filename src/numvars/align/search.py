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

from .. import io, versions
from ..errors import NumvarsError
from ..paths import inside
from ..programs import PHASES, Pairs, Program, get_program, make_pairs
from ..tasks import PAD, Task
from .maps import block_masks, make_map, set_matrix, subspace_size
from .probe import probe_basis
from .protocol import DASOptions
from .fit import optimise
from .intervention import Intervention
from . import trials
from .scoring import loss, response_length, score
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
    trials: pd.DataFrame | None = field(default=None, repr=False)   # a bounded sample, token by token (`trials`)

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
        tables = {"pairs.parquet": self.pairs, "history.parquet": self.history}
        if self.trials is not None:
            tables["trials.parquet"] = self.trials
        return io.save_result(out_dir, {**self.summary(), **(extra or {})}, tables, {"matrix": self.matrix})

    @classmethod
    def load(cls, folder) -> "DASResult":
        """A saved alignment (its result.json, map and per-pair table, read by their checking loaders)."""
        from .. import loaders
        folder = Path(folder)
        s = io.read_json(inside(folder, "result.json"))
        history = folder / "history.parquet"
        return cls(**{k: s[k] for k in ("iia", "iia_free", "token_accuracy", "val_iia", "program", "k", "map", "site",
                                        "control", "seed", "epochs", "steps", "seconds")},
                   variables=tuple(s["variables"]),
                   matrix=loaders.read_alignment_matrix(folder),
                   pairs=loaders.read_job_table(folder, "das"),
                   history=io.read_table(history) if history.is_file() else pd.DataFrame(),
                   trials=loaders.read_trials(folder))


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
    covered = {id(p) for m in resettable for p in m.parameters(recurse=False)}
    with torch.random.fork_rng(devices=[]):         # leave the caller's random stream alone
        torch.manual_seed(seed)
        for m in resettable:
            m.reset_parameters()
        for m in fresh.modules():                   # Hugging Face models: their own initialisation, which also
            if callable(getattr(m, "_init_weights", None)) and hasattr(m, "config"):   # covers GPT-2's Conv1D
                with torch.no_grad():
                    m.apply(m._init_weights)
                covered |= {id(p) for p in m.parameters()}
    # what no initialiser reached (a parameter reset to the value it had, as a LayerNorm's ones, was reached)
    kept = [name for (name, new), old in zip(fresh.named_parameters(), model.parameters())
            if id(new) not in covered and torch.equal(new, old)]
    if kept:
        versions.note(f"control=untrained: {len(kept)} parameter(s) of {type(model).__name__} have no initialiser "
                      f"and keep their trained values (e.g. {kept[0]}); the control is partly trained")
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
        options: DASOptions | None = None, **opts) -> DASResult:
    """Align `variable` (one name, or several as "a,b" in disjoint blocks) of `program` with `model`. Give
    either `options`, a DASOptions (its program and variable are then the ones aligned), or DASOptions
    fields as keywords (k, map, seed, site, control, n_train, ...). `program` may also be a Program."""
    if options is None:
        options = DASOptions(program=program_spec(program), variable=variable if isinstance(variable, str) else
                             ",".join(variable), **opts)
    return das_set(model, task, [options], counts, progress, program if isinstance(program, Program) else None)[0]


def program_spec(program) -> str:
    """How options name a program: a built-in name, or a user's path/to/file.py:ClassName."""
    return getattr(program, "_spec", program.name) if isinstance(program, Program) else program


def das_set(model: nn.Module, task: Task, options: list[DASOptions], counts=None, progress: bool = False,
            program: Program | None = None) -> list[DASResult]:
    """`das` for each options object (k, map, control, ...) of one program variable, in order. Alignments that
    draw the same pairs (seed, sizes, position rule) sample them once, and those on the same model and site
    also cache its states once: a k sweep over both maps, with its untrained controls, pays for one pair set
    and two caches (the model and its untrained copy), not one per alignment."""
    if len({(o.program, o.variable) for o in options}) > 1:
        raise NumvarsError("das_set aligns one program variable; give options of one program and variable")
    prog = program or get_program(options[0].program)
    variables = parse_variables(prog, options[0].variable)
    samples, caches, copies, out = {}, {}, {}, []
    for o in options:
        started = time.perf_counter()
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
                _, history, epochs, steps, val_iia = _fit(p, progress)
            out.append(result(p, task, history, epochs, steps, val_iia, started))
    return out


@dataclass
class Prepared:
    """An alignment ready to fit: options, the intervention (site, map, masks), the sampled pairs with cached
    states."""

    o: DASOptions
    program: str
    variables: tuple[str, ...]
    intervention: Intervention
    sampled: Pairs           # train, validation and test pairs, without states
    pairs: Pairs             # the same with the site's cached states, on the device
    kind: str                # orthogonal, linear, random or identity

    site = property(lambda self: self.intervention.site)
    align = property(lambda self: self.intervention.map)
    masks = property(lambda self: self.intervention.masks)
    k = property(lambda self: self.intervention.k)

    @property
    def fixed(self) -> bool:
        return self.o.control in ("random", "identity")

    def split(self, pairs: Pairs, part: str) -> Pairs:
        """The train, val or test part of a pair set drawn for this alignment."""
        o = self.o
        bounds = {"train": (0, o.n_train), "val": (o.n_train, o.n_train + o.n_val), "test": (o.n_train + o.n_val, None)}
        return pairs.select(slice(*bounds[part]))

    train = property(lambda self: self.split(self.pairs, "train"))
    val = property(lambda self: self.split(self.pairs, "val"))
    test = property(lambda self: self.split(self.pairs, "test"))


def check(model: nn.Module, o: DASOptions) -> None:
    """Refuse an alignment that cannot run on `model` (program, variables, site, k) before anything is written
    or drawn; the same errors `das` would raise."""
    variables = parse_variables(get_program(o.program), o.variable)
    subspace_size(o.k, get_site(model, o.site).size, len(variables))


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
    k = subspace_size(o.k, d, len(variables))
    masks = block_masks(d, k, len(variables)).to(o.device)
    sampled = sample_pairs(task, program, variables, o, counts) if sampled is None else sampled
    cached = cache(at, sampled.to(o.device)) if cached is None else cached
    kind = o.control if o.control in ("random", "identity") else o.map
    p = Prepared(o, program.name, variables, Intervention(at, make_map(kind, d, o.seed).to(o.device), masks),
                 sampled, cached, kind)
    if o.init == "probe" and kind in ("orthogonal", "linear"):      # start where a probe reads the variable
        t = p.train
        set_matrix(p.align, probe_basis(t.states["base"].cpu(), t.base_value.cpu(), t.states["source"].cpu(),
                                        t.source_value.cpu(), t.var_index.cpu(), len(variables), k))
    return p


def validate(p: Prepared) -> float:
    return float(score(p.intervention, p.val, free=False).correct.float().mean())


def result(p: Prepared, task: Task, history, epochs: int, steps: int, val_iia: float, started: float) -> DASResult:
    """Score the fitted map on the test pairs (the model still frozen) and collect everything."""
    test = score(p.intervention, p.test, tokens=True)
    tested = p.split(p.sampled, "test")
    frame = pair_frame(tested, test, task.resp_id, task.vocab["EOS"])
    sampled = trials.sample(tested, frame, test, task, p.program, f"{p.program}.{','.join(p.variables)}")
    with torch.no_grad(), parametrize.cached():
        matrix = p.align.matrix.detach().cpu().clone()
    return DASResult(iia=float(test.correct.float().mean()), iia_free=float(test.correct_free.float().mean()),
                     token_accuracy=test.token_accuracy, val_iia=val_iia, variables=p.variables, program=p.program,
                     k=p.k, map=p.kind, site=p.site.name, control=p.o.control, seed=p.o.seed, epochs=epochs,
                     steps=steps, seconds=round(time.perf_counter() - started, 2), matrix=matrix, pairs=frame,
                     history=pd.DataFrame(history, columns=["epoch", "loss", "val_loss", "val_iia"]), trials=sampled)


def step_loss(intervention: Intervention, batch: Pairs, loss_on: str = "scored") -> torch.Tensor:
    """A batch's DAS loss: rotate, swap, rotate back, run the continuation, cross-entropy on the scored
    tokens (or, loss_on="all", on every continuation token, forced demo tokens and trigger included)."""
    on = batch.scored if loss_on == "scored" else batch.cont_roles != PAD
    return loss(intervention.logits(batch), batch.cont, on)


class BestMap:
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


def _fit(p: Prepared, progress: bool) -> tuple:
    """Fit the alignment (`fit.optimise`); keep the map with the best validation IIA, stop as `BestMap` says.
    Returns (map, history, epochs, steps, best validation IIA)."""
    o, train = p.o, p.train
    best = BestMap(p.align, o)
    check = lambda epoch, losses, steps: best.update(epoch, losses, score(p.intervention, p.val, free=False),  # noqa
                                                     steps)
    epochs, steps = optimise(p.align.parameters(), len(train), o.batch_size, o.lr, o.seed, epoch_budget(train, o),
                             lambda idx: step_loss(p.intervention, train.select(idx.to(train.t.device)), o.loss_on),
                             check, lambda step: lr_factor(step, train, o), o.max_steps, progress)
    return best.restore(), best.history, epochs, steps, best.iia
