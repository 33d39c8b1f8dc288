"""Training: next-token prediction on fresh samples until every evaluation trial is right.

A run directory holds config.yaml, model.safetensors, checkpoints/, metrics.parquet and
summary.json. While training, resume.safetensors holds everything needed to continue
bit-identically (model, optimiser, scheduler, RNG state, metrics so far; see `resume`); a killed
run resumes from it. A finished run (summary.json written and model.safetensors loadable) is
skipped; one whose weights went missing or bad is trained again.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import io, loaders, models, resume, versions
from .config import CRITERION, UNHASHED, RunConfig, TrainConfig
from .errors import NumvarsError
from .evaluate import trial_accuracy
from .device import resolve_device, setup_threads
from .tasks import PAD

RESUME_EVERY_S = 20.0
FIXED_SET = 7_919         # seeds the fixed training set apart from the fresh samples


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    skipped: bool = False


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to lr over warmup_steps, then inverse-square-root decay, floored at min_lr."""
    if step < cfg.warmup_steps:
        factor = (step + 1) / cfg.warmup_steps
    else:
        factor = math.sqrt(max(cfg.warmup_steps, 1) / (step + 1))
    return max(factor, cfg.min_lr / cfg.lr)


def checkpoint_epochs(max_epochs: int) -> set[int]:
    """Dense early, sparse late: epochs 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, ... (powers of √2)."""
    return {round(2 ** (i / 2)) for i in range(int(2 * math.log2(max_epochs)) + 2)} & set(range(1, max_epochs + 1))


def next_token_loss(model, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy on every position except padding; `targets` (default: the tokens themselves)
    differ from the inputs when the model is fed its own predictions."""
    targets = tokens if targets is None else targets
    logits = model(tokens[:, :-1])                                  # (B, L-1, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[:, 1:].reshape(-1), ignore_index=PAD)


def run_dir_for(cfg: RunConfig) -> Path:
    return Path(cfg.placement.out) / cfg.run_name()


def finished_summary(run_dir: Path) -> dict | None:
    """The summary of a finished run, or None. summary.json is written last; the run counts as finished
    only if its summary agrees with its metrics and its weights load and are finite."""
    try:
        summary = loaders.read_summary(run_dir)
        if summary is not None:
            models.load(run_dir)
    except NumvarsError:
        return None
    return summary


def is_finished(run_dir: Path) -> bool:
    return finished_summary(run_dir) is not None


def train(cfg: RunConfig, progress: bool = True) -> RunResult:
    """Train one run to the criterion (and on, as configured) or the epoch budget; skip it if finished,
    resume it if not."""
    run_dir = run_dir_for(cfg)
    summary = finished_summary(run_dir)
    if summary is not None:
        return RunResult(run_dir, summary, skipped=True)
    device = resolve_device(cfg.placement.device)
    setup_threads(cfg.placement.threads, device)
    _unfinish(run_dir)
    tc, task = cfg.train, cfg.make_task()
    model = models.build(cfg.model, seed=tc.seed).to(device)
    if tc.inputs == "model" and type(model).forward is torch.nn.Module.forward:
        raise NumvarsError("inputs=model needs a model with a forward pass over whole sequences")
    torch.manual_seed(tc.seed)                       # dropout's stream, saved and restored on resume
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, tc))
    cuda = device if device.type == "cuda" else None
    info = resume.load(run_dir, model, opt, sched, cuda)
    if info is None:
        _begin(cfg, run_dir)
        info = {"rows": [], "epoch": 0, "elapsed": 0.0}
    rows, epoch = info["rows"], info["epoch"]
    batches = Batches(task, tc, device)
    start, last_save = time.perf_counter() - info["elapsed"], time.perf_counter()
    bar = tqdm(total=tc.max_epochs, initial=epoch, disable=not progress, desc=cfg.run_name(), unit="ep", leave=False)
    model.train()
    while epoch < tc.max_epochs and not done(rows, tc):
        losses = []
        for _ in range(tc.steps_per_epoch):
            tokens, mask = batches(epoch * tc.steps_per_epoch + len(losses))
            loss = next_token_loss(model, model_fed(model, tokens, mask) if tc.inputs == "model" else tokens,
                                   targets=tokens)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.detach())
        epoch += 1
        end_epoch(run_dir, cfg, task, model, rows, epoch, losses, sched.get_last_lr()[0], start, device)
        if time.perf_counter() - last_save > RESUME_EVERY_S:
            resume.save(run_dir, model, opt, sched, {"rows": rows, "epoch": epoch,
                                                     "elapsed": time.perf_counter() - start}, cuda)
            last_save = time.perf_counter()
        bar.update(1)
        bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}", acc=f"{rows[-1]['trial_accuracy']:.3f}")
    bar.close()
    return RunResult(run_dir, _finish(run_dir, cfg, model, rows, device))


def _unfinish(run_dir: Path) -> None:
    io.ensure_writable_dir(run_dir)
    (run_dir / "summary.json").unlink(missing_ok=True)     # weights missing or bad: this run is not finished


def _begin(cfg: RunConfig, run_dir: Path) -> None:
    """A run starting from scratch: note older protocols' runs of it, write config.yaml."""
    _note_older(cfg, run_dir)
    io.write_yaml(run_dir / "config.yaml", cfg.sections())


def end_epoch(run_dir: Path, cfg: RunConfig, task, model, rows: list[dict], epoch: int, losses: list[torch.Tensor],
              lr: float, start: float, device) -> None:
    """Record an epoch just trained: its mean loss, the evaluation, the metrics row and, at a checkpoint epoch
    or the criterion, the weights. A non-finite training loss, weight or validation loss ends the run: the
    loss of each step is measured before its update, so the last update of an epoch (with lr=1e30, the only
    one) can blow the weights up while every loss of the epoch was finite."""
    tc = cfg.train
    mean_loss = float(torch.stack(losses).mean())
    if not math.isfinite(mean_loss) or not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        _diverged(run_dir, epoch, tc)
    eval_counts = range(cfg.task.min_count, cfg.task.max_count + 1)   # held-out counts included
    trials = trial_accuracy(model, task, eval_counts, tc.eval_per_count, device=device)
    if not math.isfinite(trials.loss):
        _diverged(run_dir, epoch, tc)
    first = criterion_epoch(rows) is None and trials.accuracy >= CRITERION
    rows.append({"epoch": epoch, "step": epoch * tc.steps_per_epoch, "loss": mean_loss, "lr": lr,
                 "trial_accuracy": trials.accuracy, "val_loss": trials.loss,
                 "seconds": time.perf_counter() - start,
                 "checkpoint": epoch in checkpoint_epochs(tc.max_epochs) or first})
    if rows[-1]["checkpoint"]:
        io.save_tensors(run_dir / "checkpoints" / f"epoch_{epoch:06d}.safetensors", model.state_dict())


class Batches:
    """The training batch of each step: fresh samples seeded by (seed, step), or rows of one fixed
    training set of `train_set` sequences drawn by (seed, step). Either way a resumed run sees
    exactly the batches an uninterrupted one would. Returns (tokens, task_mask) on the device,
    trimmed to the batch's longest sequence."""

    def __init__(self, task, tc: TrainConfig, device):
        self.task, self.tc, self.device = task, tc, device
        self.fixed = task.sample(tc.train_set, seed=[tc.seed, FIXED_SET]) if tc.train_set else None

    def __call__(self, step: int):
        if self.fixed is None:
            batch = self.task.sample(self.tc.batch_size, seed=[self.tc.seed, step])
        else:
            rng = np.random.default_rng([self.tc.seed, FIXED_SET, step])
            n = len(self.fixed)
            rows = rng.choice(n, self.tc.batch_size, replace=self.tc.batch_size > n)
            batch = self.fixed.select(torch.as_tensor(rows))
            width = int(batch.lengths.max())
            batch = type(batch)(batch.tokens[:, :width], batch.task_mask[:, :width], batch.counts,
                                batch.roles[:, :width], batch.lengths)
        return batch.tokens.to(self.device), batch.task_mask.to(self.device)


def criterion_epoch(rows: list[dict]) -> int | None:
    """The first epoch at which every evaluation trial was right."""
    return next((r["epoch"] for r in rows if r["trial_accuracy"] >= CRITERION), None)


def done(rows: list[dict], tc: TrainConfig) -> bool:
    """Stop at the criterion; or `extra_epochs` after it; or once the validation loss has not improved
    (by 1e-4) for `plateau` epochs after it."""
    first = criterion_epoch(rows)
    if first is None:
        return False
    if tc.extra_epochs:
        return rows[-1]["epoch"] >= first + tc.extra_epochs
    if tc.plateau:
        after = [r["val_loss"] for r in rows if r["epoch"] >= first]
        best, best_at = after[0], 0
        for i, value in enumerate(after):
            if value < best - 1e-4:
                best, best_at = value, i
        return len(after) - 1 - best_at >= tc.plateau
    return True


@torch.no_grad()
def model_fed(model, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The inputs a model sees when its own greedy predictions replace the true tokens at response
    positions (where the task mask is set): the fixed point of "input = prediction of the step before".
    Causality makes it exact: each pass fixes at least one more response position from the left, and
    the loop stops as soon as the inputs no longer change (once, for a model that is already right).
    A group's (G, B, L) batches work the same way."""
    was_training = model.training
    model.eval()                                   # greedy predictions without dropout
    inputs = tokens.clone()
    try:
        for _ in range(int(mask.sum(-1).max()) + 1):
            pred = model(inputs[..., :-1]).argmax(-1)              # (..., B, L-1): predicts tokens[..., 1:]
            fed = torch.where(mask[..., 1:], pred, tokens[..., 1:])
            if torch.equal(fed, inputs[..., 1:]):
                break
            inputs[..., 1:] = fed
    finally:
        model.train(was_training)
    return inputs


def _note_older(cfg: RunConfig, run_dir: Path) -> None:
    """Say so when the same config was trained by an older protocol (its run id differs)."""
    mine = cfg.sections()

    def same(sec: dict) -> bool:
        return all(sec.get(k) == mine[k] for k in ("task", "model")) and \
            {k: v for k, v in sec.get("train", {}).items() if k not in UNHASHED} == \
            {k: v for k, v in mine["train"].items() if k not in UNHASHED}

    versions.report(run_dir.parent, f"{cfg.task.name}-{cfg.model.arch}-d{cfg.model.d_model}-s{cfg.seed}-*",
                 "config.yaml", same, kind="train")


def _diverged(run_dir: Path, epoch: int, tc) -> None:
    saved = sorted((run_dir / "checkpoints").glob("epoch_*.safetensors"))
    last = f"the last good checkpoint is {saved[-1]}" if saved else "no checkpoint was saved before it"
    raise NumvarsError(f"the training loss or the weights became non-finite in epoch {epoch} (lr={tc.lr:g}); "
                       f"nothing of that "
                       f"epoch was saved and {last}; train again with a smaller lr")


def _finish(run_dir: Path, cfg: RunConfig, model, rows: list[dict], device) -> dict:
    if not rows[-1]["checkpoint"]:
        rows[-1]["checkpoint"] = True
        io.save_tensors(run_dir / "checkpoints" / f"epoch_{rows[-1]['epoch']:06d}.safetensors", model.state_dict())
    io.save_tensors(run_dir / "model.safetensors", model.state_dict())
    if cfg.model.arch == "hf":                     # and the Hugging Face folder, for any HF tool
        model.save(run_dir / models.hf.FOLDER)
    io.write_table(run_dir / "metrics.parquet", pd.DataFrame(rows))
    last = rows[-1]
    first = criterion_epoch(rows)
    summary = {"run_id": cfg.run_id(), "run_name": cfg.run_name(), "reached_criterion": first is not None,
               "criterion_epoch": first, "epochs": last["epoch"], "steps": last["step"],
               "trial_accuracy": last["trial_accuracy"],
               "seconds": round(last["seconds"], 2), "device": str(device), "threads": cfg.placement.threads,
               "torch": torch.__version__, "protocol": versions.current("train")}
    io.write_json(run_dir / "summary.json", summary)   # written last: its presence means "finished"
    resume.remove(run_dir)
    return summary
