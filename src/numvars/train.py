"""Training (SPEC §3): next-token prediction on fresh samples until every evaluation trial is right.

A run directory holds config.yaml, model.safetensors, checkpoints/, metrics.parquet and
summary.json. While training, resume.pt holds everything needed to continue bit-identically
(model, optimiser, scheduler, RNG state, metrics so far); a killed run resumes from it, and a
finished run is skipped.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import io, models
from .config import RunConfig
from .errors import NumvarsError
from .evaluate import trial_accuracy
from .tasks import PAD

CRITERION = 0.9999
RESUME_EVERY_S = 20.0


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    skipped: bool = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NumvarsError("device=cuda but no CUDA GPU is visible; use device=cpu")
    return torch.device(name)


def setup_threads(threads: int, device: torch.device) -> None:
    if device.type == "cpu" and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)   # tiny models: one thread is fastest and stable here


def lr_factor(step: int, cfg: RunConfig) -> float:
    """Linear warm-up to lr over warmup_steps, then inverse-square-root decay, floored at min_lr."""
    if step < cfg.warmup_steps:
        factor = (step + 1) / cfg.warmup_steps
    else:
        factor = math.sqrt(max(cfg.warmup_steps, 1) / (step + 1))
    return max(factor, cfg.min_lr / cfg.lr)


def checkpoint_epochs(max_epochs: int) -> set[int]:
    """Dense early, sparse late: epochs 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, ... (powers of √2)."""
    return {round(2 ** (i / 2)) for i in range(int(2 * math.log2(max_epochs)) + 2)} & set(range(1, max_epochs + 1))


def next_token_loss(model, tokens: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on every position except padding."""
    logits = model(tokens[:, :-1])                                  # (B, L-1, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), ignore_index=PAD)


def run_dir_for(cfg: RunConfig) -> Path:
    return Path(cfg.out) / cfg.run_name()


def train(cfg: RunConfig, progress: bool = True) -> RunResult:
    """Train one run to the criterion or the epoch budget; skip it if finished, resume it if not."""
    run_dir = run_dir_for(cfg)
    if (run_dir / "summary.json").is_file():
        return RunResult(run_dir, io.read_json(run_dir / "summary.json"), skipped=True)
    device = resolve_device(cfg.device)
    setup_threads(cfg.threads, device)
    task = cfg.make_task()
    model = models.build(cfg.model_config(), seed=cfg.seed).to(device)
    torch.manual_seed(cfg.seed)                      # dropout's stream, saved and restored on resume
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    rows, epoch, elapsed = [], 0, 0.0
    resume = run_dir / "resume.pt"
    if resume.is_file():
        try:
            state = torch.load(resume, map_location="cpu", weights_only=False)
        except Exception as e:
            raise NumvarsError(f"{resume} is unreadable ({type(e).__name__}); delete it to restart the run") from None
        model.load_state_dict(state["model"]), opt.load_state_dict(state["opt"]), sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:   # dropout draws from the GPU's generator
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        rows, epoch, elapsed = state["rows"], state["epoch"], state["elapsed"]
    else:
        io.write_yaml(run_dir / "config.yaml", cfg.sections())
    save_at = checkpoint_epochs(cfg.max_epochs)
    eval_counts = range(cfg.min_count, cfg.max_count + 1)   # held-out counts included
    start, last_save = time.perf_counter() - elapsed, time.perf_counter()
    bar = tqdm(total=cfg.max_epochs, initial=epoch, disable=not progress, desc=cfg.run_name(), unit="ep", leave=False)
    acc = rows[-1]["trial_accuracy"] if rows else 0.0
    model.train()
    while epoch < cfg.max_epochs and acc < CRITERION:
        losses = []
        for _ in range(cfg.steps_per_epoch):
            step = epoch * cfg.steps_per_epoch + len(losses)
            tokens = task.sample(cfg.batch_size, seed=[cfg.seed, step]).tokens.to(device)
            loss = next_token_loss(model, tokens)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.detach())
        epoch += 1
        acc = trial_accuracy(model, task, eval_counts, cfg.eval_per_count, device=device).accuracy
        rows.append({"epoch": epoch, "step": epoch * cfg.steps_per_epoch, "loss": float(torch.stack(losses).mean()),
                     "lr": sched.get_last_lr()[0], "trial_accuracy": acc, "seconds": time.perf_counter() - start,
                     "checkpoint": epoch in save_at or acc >= CRITERION})
        if rows[-1]["checkpoint"]:
            io.save_tensors(run_dir / "checkpoints" / f"epoch_{epoch:06d}.safetensors", model.state_dict())
        if time.perf_counter() - last_save > RESUME_EVERY_S:
            io.save_torch(resume, {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                                   "rng": torch.get_rng_state(), "rows": rows, "epoch": epoch,
                                   "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                                   "elapsed": time.perf_counter() - start})
            last_save = time.perf_counter()
        bar.update(1)
        bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}", acc=f"{acc:.3f}")
    bar.close()
    return RunResult(run_dir, _finish(run_dir, cfg, model, rows, device))


def _finish(run_dir: Path, cfg: RunConfig, model, rows: list[dict], device) -> dict:
    if not rows[-1]["checkpoint"]:
        rows[-1]["checkpoint"] = True
        io.save_tensors(run_dir / "checkpoints" / f"epoch_{rows[-1]['epoch']:06d}.safetensors", model.state_dict())
    io.save_tensors(run_dir / "model.safetensors", model.state_dict())
    io.write_table(run_dir / "metrics.parquet", pd.DataFrame(rows))
    last = rows[-1]
    summary = {"run_id": cfg.run_id(), "run_name": cfg.run_name(), "reached_criterion": last["trial_accuracy"] >= CRITERION,
               "epochs": last["epoch"], "steps": last["step"], "trial_accuracy": last["trial_accuracy"],
               "seconds": round(last["seconds"], 2), "device": str(device), "threads": cfg.threads,
               "torch": torch.__version__}
    io.write_json(run_dir / "summary.json", summary)   # written last: its presence means "finished"
    (run_dir / "resume.pt").unlink(missing_ok=True)
    return summary
