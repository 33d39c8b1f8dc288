"""Training many runs that differ only in seed as one grouped model (a GPU's way to train small RNNs).

The members share one block-diagonal fused RNN (`models.GroupedRNN`) and one Adam. Nothing couples
them: Adam is element-wise, the loss is the sum of the members' own mean losses (so each member's
gradient is its solo gradient), there is no gradient clipping across the group, each member reads
its own batches (`train.Batches` with its seed, padded to the group's longest; PAD targets are
ignored) and draws its head-dropout masks from its own generator seeded as the solo run seeds the
global stream. So a member ends with the weights, metrics, checkpoints and summary its solo
`train` would give (within float rounding: a test proves it).

Each member is evaluated, stopped and written on its own: when it is done its run directory is
written exactly as `train` writes it, and the others train on in a smaller group. A group has no
resume state: a killed group restarts its unfinished members from scratch, which gives the same
result (finished members are skipped).
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import io, models
from .config import RunConfig
from .errors import NumvarsError
from .models.grouped import GroupedRNN
from .device import resolve_device, setup_threads
from .tasks import PAD
from .train import Batches, RunResult, _begin, _finish, _unfinish, done, end_epoch, finished_summary, lr_factor, model_fed, run_dir_for


def train_group(cfgs: list[RunConfig], progress: bool = True) -> list[RunResult]:
    """Train runs that differ only in seed (GRU or LSTM) as one group; results in the order of `cfgs`.
    Finished runs are skipped."""
    _check_group(cfgs)
    results = [None] * len(cfgs)
    todo = []
    for i, cfg in enumerate(cfgs):
        summary = finished_summary(run_dir_for(cfg))
        if summary is not None:
            results[i] = RunResult(run_dir_for(cfg), summary, skipped=True)
        else:
            todo.append(i)
    if todo:
        for i, summary in zip(todo, _train([cfgs[i] for i in todo], progress)):
            results[i] = RunResult(run_dir_for(cfgs[i]), summary)
    return results


def _check_group(cfgs: list[RunConfig]) -> None:
    if not cfgs:
        raise NumvarsError("train_group needs at least one run")
    if cfgs[0].model.arch not in ("gru", "lstm"):
        raise NumvarsError(f"only GRUs and LSTMs train as a group; train arch={cfgs[0].model.arch} runs one by one")
    same = [replace(c, train=replace(c.train, seed=0)) for c in cfgs]
    if any(c != same[0] for c in same):
        raise NumvarsError("a group's runs must differ only in seed; train the others in their own groups")
    if len({c.seed for c in cfgs}) != len(cfgs):
        raise NumvarsError("a group names each seed once")


class _Member:
    """One run inside the group: its config, batches, dropout generator and metrics so far."""

    def __init__(self, cfg: RunConfig, task, device):
        self.cfg, self.run_dir, self.rows = cfg, run_dir_for(cfg), []
        self.batches = Batches(task, cfg.train, device)
        self.dropout = torch.Generator(device).manual_seed(cfg.seed)   # as train's torch.manual_seed(seed)


def _train(cfgs: list[RunConfig], progress: bool) -> list[dict]:
    tc, task = cfgs[0].train, cfgs[0].make_task()
    device = resolve_device(cfgs[0].placement.device)
    setup_threads(cfgs[0].placement.threads, device)
    for cfg in cfgs:
        _unfinish(run_dir_for(cfg))
        _begin(cfg, run_dir_for(cfg))
    members = [_Member(cfg, task, device) for cfg in cfgs]
    model = GroupedRNN.from_models([models.build(c.model, seed=c.seed).to(device) for c in cfgs]).train()
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr * lr_factor(0, tc))
    summaries, failed, active = {}, [], list(range(len(cfgs)))
    start, epoch = time.perf_counter(), 0
    bar = tqdm(total=tc.max_epochs, disable=not progress, desc=f"group of {len(cfgs)}", unit="ep", leave=False)
    while active:
        losses = [_step(model, opt, [members[i] for i in active], epoch * tc.steps_per_epoch + s, tc)
                  for s in range(tc.steps_per_epoch)]                       # each (G,)
        epoch += 1
        finished = []
        for pos, i in enumerate(active):
            m, solo = members[i], model.member(pos)
            try:
                end_epoch(m.run_dir, m.cfg, task, solo, m.rows, epoch, [loss[pos] for loss in losses],
                          opt.param_groups[0]["lr"], start, device)
            except NumvarsError as e:                                        # diverged: the others go on
                failed.append(str(e))
                finished.append(pos)
                continue
            if epoch >= tc.max_epochs or done(m.rows, tc):
                summaries[i] = _finish(m.run_dir, m.cfg, solo, m.rows, device)
                finished.append(pos)
        if finished:
            keep = [pos for pos in range(len(active)) if pos not in finished]
            active = [active[pos] for pos in keep]
            if active:
                model, opt = _shrink(model, opt, keep)
        bar.update(1)
    bar.close()
    if failed:
        raise NumvarsError(f"{len(failed)} run(s) of the group failed (the others were written): {failed[0]}")
    return [summaries[i] for i in range(len(cfgs))]


def _step(model: GroupedRNN, opt, members: list[_Member], step: int, tc) -> torch.Tensor:
    """One Adam step of the whole group on each member's own batch; returns each member's loss (G,)."""
    batches = [m.batches(step) for m in members]
    width = max(tokens.shape[1] for tokens, _ in batches)
    tokens = torch.stack([F.pad(t, (0, width - t.shape[1]), value=PAD) for t, _ in batches])   # (G, B, L)
    inputs = tokens
    if tc.inputs == "model":
        mask = torch.stack([F.pad(k, (0, width - k.shape[1]), value=False) for _, k in batches])
        inputs = model_fed(model, tokens, mask)
    logits = model(inputs[..., :-1], widths=[t.shape[1] - 1 for t, _ in batches],
                   generators=[m.dropout for m in members])               # (G, B, L-1, V)
    targets = tokens[..., 1:]
    ce = F.cross_entropy(logits.flatten(0, 2), targets.flatten(), ignore_index=PAD, reduction="none")
    losses = ce.view(targets.shape).sum((1, 2)) / (targets != PAD).sum((1, 2))   # each member's own mean
    opt.zero_grad(set_to_none=True)
    losses.sum().backward()
    opt.step()
    for group in opt.param_groups:                   # the schedule of train's LambdaLR, by hand (groups shrink)
        group["lr"] = tc.lr * lr_factor(step + 1, tc)
    return losses.detach()


def _shrink(model: GroupedRNN, opt: torch.optim.Optimizer, keep: list[int]):
    """The group of the members `keep`, with their weights and Adam state."""
    smaller = model.select(keep)
    new_opt = torch.optim.Adam(smaller.parameters(), lr=opt.param_groups[0]["lr"])
    old = dict(model.named_parameters())
    moments = {}
    for key in ("exp_avg", "exp_avg_sq"):
        grouped = {name: opt.state[p][key] for name, p in old.items()}
        moments[key] = smaller.pack([model.unpack(grouped, i) for i in keep])
    step = opt.state[next(iter(old.values()))]["step"]
    for name, p in smaller.named_parameters():
        new_opt.state[p] = {"step": step.clone(), **{key: moments[key][name] for key in moments}}
    return smaller, new_opt
