"""Many DAS alignments of one model family as one batched optimisation (site `state`).

`das_many` runs alignments of GRUs or LSTMs of one config (seeds, checkpoints, untrained controls,
programs and variables alike) side by side: each keeps its own pairs, map (initialised as
`make_map(kind, d, seed)`), batch order (its own generator, as `search._fit`), validation, best map
and early stopping; one Adam steps all maps (element-wise, so they stay independent), and each step
runs every alignment's continuation through one `GroupedRNN` of the frozen models, from states
cached once. An alignment that stops keeps its best map; the others go on. Sampling, caching and the
final test scoring are the solo code's, so `das_many` returns the DASResults `das` would (within
float rounding; a test proves it). `seconds` is the batch's wall time shared out evenly.
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from ..errors import NumvarsError
from ..models import GRULM, LSTMLM
from ..models.grouped import GroupedRNN
from ..programs import Pairs, get_program
from ..tasks import PAD, Task
from .scoring import Scores
from .protocol import DASOptions
from .search import (BestMap, DASResult, Prepared, epoch_budget, lr_factor, parse_variables, prepare, result,
                     untrained_copy, validate)
from .sites import frozen

ROWS_PER_PASS = 32_768        # validation rows of all alignments together per forward pass


@dataclass
class DASRequest:
    """One alignment for `das_many`: what `das` takes."""

    model: nn.Module
    task: Task
    options: DASOptions = field(default_factory=DASOptions)
    counts: object = None


def das_many(requests: list[DASRequest], progress: bool = False) -> list[DASResult]:
    """The DASResults of `das(r.model, r.task, counts=r.counts, options=r.options)` for each request, fitted
    together. The models must be GRULMs or LSTMLMs of one config, site `state`."""
    started = time.perf_counter()
    resolved = [(r.options, program, parse_variables(program, r.options.variable))
                for r in requests for program in [get_program(r.options.program)]]
    nets = [untrained_copy(r.model, o.seed + 12_345) if o.control == "untrained" else r.model
            for r, (o, _, _) in zip(requests, resolved)]
    _check(nets, [o for o, _, _ in resolved])
    with ExitStack() as stack:
        for net in {id(n): n for n in nets}.values():
            stack.enter_context(frozen(net, resolved[0][0].device))
        prepared = [prepare(net, r.task, program, variables, o, r.counts)
                    for net, r, (o, program, variables) in zip(nets, requests, resolved)]
        fits = {}
        for kind in ("orthogonal", "linear"):            # one kind per batch: the inverse differs
            idx = [i for i, p in enumerate(prepared) if not p.fixed and p.kind == kind]
            if idx:
                fits.update(zip(idx, _fit_many([prepared[i] for i in idx], [nets[i] for i in idx], progress)))
        out = [result(p, r.task, *(fits[i] if i in fits else ([], 0, 0, validate(p))), started)
               for i, (p, r) in enumerate(zip(prepared, requests))]
    for r in out:
        r.seconds = round((time.perf_counter() - started) / len(out), 2)
    return out


def _check(nets: list[nn.Module], opts) -> None:
    first = nets[0]
    if not isinstance(first, (GRULM, LSTMLM)) or any(type(n) is not type(first) or n.cfg != first.cfg for n in nets):
        raise NumvarsError("das_many aligns GRUs or LSTMs of one config (arch, d_model, vocabulary); align other "
                           "models with das")
    if any(o.site not in (None, "state") for o in opts):
        raise NumvarsError("das_many aligns at the recurrent site 'state'; use das for other sites")
    if len({o.device for o in opts}) > 1:
        raise NumvarsError("das_many runs every alignment on one device; give them all the same device")


class _Groups:
    """GroupedRNNs of subsets of the frozen models, built on first use (a few kept)."""

    def __init__(self, nets: list[nn.Module]):
        self.nets, self.made = nets, {}

    def __call__(self, members: list[int]) -> GroupedRNN:
        key = tuple(members)
        if key not in self.made:
            if len(self.made) >= 4:
                self.made.pop(next(iter(self.made)))
            self.made[key] = GroupedRNN.from_models([self.nets[i] for i in members]).requires_grad_(False).eval()
        return self.made[key]


def _fit_many(items: list[Prepared], nets: list[nn.Module], progress: bool) -> list[tuple]:
    """`search._fit` for every item at once; returns (history, epochs, steps, best val IIA) per item and
    leaves each item's best map in `item.align`."""
    n = len(items)
    opt = torch.optim.Adam([{"params": list(p.align.parameters()), "lr": p.o.lr} for p in items])
    gens = [torch.Generator().manual_seed(p.o.seed) for p in items]
    trains, vals = [p.train for p in items], [p.val for p in items]
    best = [BestMap(p.align, p.o) for p in items]
    budget = [epoch_budget(t, p.o) for t, p in zip(trains, items)]
    steps, ended, active, epoch = [0] * n, [0] * n, list(range(n)), 0
    groups = _Groups(nets)
    bar = tqdm(total=max(budget), disable=not progress, desc=f"DAS x{n}", unit="ep", leave=False)
    while active:
        epoch += 1
        order = {i: torch.randperm(len(trains[i]), generator=gens[i]).split(items[i].o.batch_size) for i in active}
        losses = {i: [] for i in active}
        for s in range(max(len(order[i]) for i in active)):
            now = [i for i in active if s < len(order[i]) and not _spent(items[i].o, steps[i])]
            if not now:
                break
            batches = [trains[i].select(order[i][s].to(trains[i].t.device)) for i in now]
            for i in now:                                   # each map's own schedule (search.lr_factor)
                opt.param_groups[i]["lr"] = items[i].o.lr * lr_factor(steps[i], trains[i], items[i].o)
            for i, value in zip(now, _step(groups(now), [items[i] for i in now], batches, opt)):
                losses[i].append(value)
                steps[i] += 1
        checked = _validate(groups(active), [items[i] for i in active], [vals[i] for i in active])
        for i, scores in zip(list(active), checked):
            if best[i].update(epoch, losses[i], scores, steps[i]) or epoch >= budget[i]:
                best[i].restore()
                ended[i] = epoch
                active.remove(i)
        bar.update(1)
    bar.close()
    return [(b.history, ended[i], steps[i], b.iia) for i, b in enumerate(best)]


def _spent(o, steps: int) -> bool:
    return o.max_steps is not None and steps >= o.max_steps


def _step(group: GroupedRNN, items: list[Prepared], batches: list[Pairs], opt) -> Tensor:
    """One Adam step of every item's map on its own batch (`search.step_loss`); returns the losses (G,)."""
    with parametrize.cached():          # each orthogonal matrix once per step
        logits, cont = _run(group, items, batches)
        on = _pad_stack([b.scored if p.o.loss_on == "scored" else b.cont_roles != PAD
                         for p, b in zip(items, batches)], False)
        values = _token_losses(logits, cont, on).sum((1, 2)) / on.sum((1, 2))
        opt.zero_grad(set_to_none=True)
        values.sum().backward()         # maps not in this step get no gradient, so Adam leaves them alone
    opt.step()
    return values.detach()


def _run(group: GroupedRNN, items: list[Prepared], batches: list[Pairs]) -> tuple[Tensor, Tensor]:
    """Interchange (b' = A⁻¹((1 − M)·A b + M·A s)) and continuation for every item: logits (G, N, M, V)
    and the continuation tokens (G, N, M), rows and tokens PAD-filled to the longest."""
    matrix = torch.stack([p.align.matrix for p in items])                       # (G, d, d)
    base = _pad_stack([b.states["base"] for b in batches], 0.0) @ matrix         # (G, N, d)
    source = _pad_stack([b.states["source"] for b in batches], 0.0) @ matrix
    mask = _pad_stack([p.masks[b.var_index] for p, b in zip(items, batches)], 0.0)
    mixed = base + mask * (source - base)
    if items[0].kind == "orthogonal":
        state = mixed @ matrix.transpose(1, 2)
    else:                                                                        # as LinearMap.inverse
        state = torch.linalg.solve(matrix.transpose(1, 2), mixed.transpose(1, 2)).transpose(1, 2)
    cont = _pad_stack([b.cont for b in batches], PAD)
    return group.run_from(state, cont[..., :-1]), cont


def _token_losses(logits: Tensor, targets: Tensor, on: Tensor) -> Tensor:
    ce = F.cross_entropy(logits.flatten(0, 2), targets.flatten(), reduction="none").view(targets.shape)
    return torch.where(on, ce, 0.0)


@torch.no_grad()
def _validate(group: GroupedRNN, items: list[Prepared], vals: list[Pairs]) -> list[Scores]:
    """Teacher-forced scores of every item on its validation pairs (`scoring.score(..., free=False)`)."""
    n, rows = len(items), max(1, ROWS_PER_PASS // len(items))
    correct, loss_sum, right, total = [[] for _ in items], [0.0] * n, [0] * n, [0] * n
    with parametrize.cached():
        for start in range(0, max(len(v) for v in vals), rows):
            chunk = [v.select(slice(start, start + rows)) for v in vals]
            logits, cont = _run(group, items, chunk)
            scored = _pad_stack([c.scored for c in chunk], False)
            ok = (logits.argmax(-1) == cont) | ~scored                                # (G, N, M)
            sums = _token_losses(logits, cont, scored).sum((1, 2)).tolist()
            for g, c in enumerate(chunk):
                correct[g].append(ok[g, : len(c)].all(1))
                loss_sum[g] += sums[g]
                right[g] += int((ok[g] & scored[g]).sum())
                total[g] += int(scored[g].sum())
    out = []
    for g in range(n):
        verdicts = torch.cat(correct[g]).cpu()
        out.append(Scores(verdicts, verdicts, None, right[g] / max(total[g], 1), loss_sum[g] / max(total[g], 1)))
    return out


def _pad_stack(xs: list[Tensor], value) -> Tensor:
    """Stack tensors of one rank, padding every dimension at its end to the largest size."""
    shape = [max(x.shape[k] for x in xs) for k in range(xs[0].dim())]
    out = xs[0].new_full((len(xs), *shape), value)
    for g, x in enumerate(xs):
        out[(g, *(slice(0, s) for s in x.shape))] = x
    return out
