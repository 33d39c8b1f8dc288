"""Training speed: sequences/s of training steps, and time to criterion.

    python benchmarks/train_speed.py                          # all archs, multi_object, seed 0
    python benchmarks/train_speed.py --skip-criterion         # only the step timings (about a minute)
    python benchmarks/train_speed.py --archs gru --seeds 0 1 2 --tasks multi_object same_object

Step timings: one Adam step (forward, backward, update) of a d=20 model at batch 128 on freshly
sampled sequences, timed alone (the batch is sampled beforehand; sampling is timed separately).
Each number is the median over many repeats, with the 25th-75th percentile range, because these
machines have bursts of 10-100x slowness. CPU runs use one torch thread unless
--threads says otherwise; CUDA is timed too when a GPU is visible.

Time to criterion: `numvars.train.train` with the default settings (the paper's), run directories
under --out; a finished run is not retrained, so its stored time is reported (delete the run
directories to measure again).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from numvars import models
from numvars.config import from_mapping
from numvars.models import ARCHS, PAPER_ARCHS
from numvars.tasks import VARIANTS
from numvars.train import lr_factor, next_token_loss, train


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _quantiles(xs: list[float]) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(xs, [25, 50, 75])
    return float(q25), float(q50), float(q75)


def step_timings(task_name: str, arch: str, device: torch.device, d_model: int, batch: int,
                 repeats: int, warmup: int) -> dict:
    """Median seconds per training step and per batch sample, over `repeats` timed repeats."""
    cfg = from_mapping({"task": task_name, "arch": arch, "d_model": d_model, "batch_size": batch})
    task = cfg.make_task()
    model = models.build(cfg.model, seed=0).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.train))
    n = warmup + repeats
    sample_s, batches = [], []
    for i in range(n):                       # the same stream of batches that training would see
        t0 = time.perf_counter()
        batches.append(task.sample(batch, seed=[0, i]).tokens)
        sample_s.append(time.perf_counter() - t0)
    step_s = []
    for i, tokens in enumerate(batches):
        tokens = tokens.to(device)
        _sync(device)
        t0 = time.perf_counter()
        loss = next_token_loss(model, tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        _sync(device)
        if i >= warmup:
            step_s.append(time.perf_counter() - t0)
    q25, q50, q75 = _quantiles(step_s)
    return {"task": task_name, "arch": arch, "device": device.type, "d": d_model, "batch": batch,
            "repeats": repeats, "step_ms": 1e3 * q50, "step_ms_q25": 1e3 * q25, "step_ms_q75": 1e3 * q75,
            "seq_per_s": batch / q50, "sample_ms": 1e3 * statistics.median(sample_s[warmup:])}


def time_to_criterion(task_name: str, arch: str, seed: int, out: Path, device: str) -> dict:
    cfg = from_mapping({"task": task_name, "arch": arch, "seed": seed, "out": str(out), "device": device})
    result = train(cfg, progress=False)
    s = result.summary
    return {"task": task_name, "arch": arch, "seed": seed, "reached": s["reached_criterion"], "epochs": s["epochs"],
            "steps": s["steps"], "seconds": s["seconds"], "device": s["device"], "skipped": result.skipped}


def markdown(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """columns: (key, header, format spec)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(format(r[k], f) for k, _, f in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["multi_object"], choices=sorted(VARIANTS))
    p.add_argument("--archs", nargs="+", default=list(PAPER_ARCHS), choices=ARCHS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds for time to criterion")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="run directories for time to criterion")
    p.add_argument("--skip-criterion", action="store_true", help="only time training steps")
    p.add_argument("--devices", nargs="+", default=None, choices=("cpu", "cuda"),
                   help="devices for step timings (default: cpu, and cuda when visible)")
    p.add_argument("--criterion-device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--d-model", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=200, help="timed steps per model (median reported)")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s)"
          + (f", GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU") + "\n")

    rows = [step_timings(task, arch, torch.device(dev), args.d_model, args.batch, args.repeats, args.warmup)
            for dev in devices for task in args.tasks for arch in args.archs]
    print(f"## Training steps (median of {args.repeats} timed steps after {args.warmup} warm-up; "
          "q25-q75 in brackets)\n")
    for r in rows:
        r["range"] = f"{r['step_ms_q25']:.2f}-{r['step_ms_q75']:.2f}"
    print(markdown(rows, [("task", "task", ""), ("arch", "arch", ""), ("device", "device", ""), ("d", "d", "d"),
                          ("batch", "batch", "d"), ("step_ms", "ms/step", ".2f"), ("range", "[q25-q75]", ""),
                          ("seq_per_s", "sequences/s", ",.0f"), ("sample_ms", "ms/sample batch", ".2f")]))

    if args.skip_criterion:
        return
    runs = [time_to_criterion(task, arch, seed, args.out, args.criterion_device)
            for task in args.tasks for arch in args.archs for seed in args.seeds]
    print(f"\n## Time to criterion (default settings; runs in {args.out})\n")
    print(markdown(runs, [("task", "task", ""), ("arch", "arch", ""), ("seed", "seed", "d"),
                          ("device", "device", ""), ("reached", "reached", ""), ("epochs", "epochs", "d"),
                          ("steps", "steps", "d"), ("seconds", "seconds", ".1f"), ("skipped", "from disk", "")]))
    summary = []
    for task in args.tasks:
        for arch in args.archs:
            mine = [r for r in runs if r["task"] == task and r["arch"] == arch]
            done = [r for r in mine if r["reached"]]
            summary.append({"task": task, "arch": arch, "reached": f"{len(done)}/{len(mine)}",
                            "median_s": statistics.median([r["seconds"] for r in done]) if done else float("nan"),
                            "median_epochs": statistics.median([r["epochs"] for r in done]) if done else float("nan")})
    print("\n" + markdown(summary, [("task", "task", ""), ("arch", "arch", ""), ("reached", "reached", ""),
                                    ("median_s", "median seconds", ".1f"),
                                    ("median_epochs", "median epochs", ".0f")]))


if __name__ == "__main__":
    main()
