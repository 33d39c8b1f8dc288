"""The benchmark summary: the speed figures numvars is judged by, for one device, as JSON and a table.

    python benchmarks/summary.py                      # the CPU here (and the GPU when one is visible)
    python benchmarks/summary.py --run-quick --results results/quick-timed   # also time a fresh quick preset

- training: sequences/s of a d = 20 GRU training step (batch 128) and its time to criterion;
- DAS: pairs/s of an alignment step (batch 512) and optimiser steps to plateau (classic vs default
  fit, from benchmarks/reports/das_convergence.json when `das_convergence.py` has run);
- grouped training: models per second for 1, 8 and 64 d = 20 GRUs trained as one (gpu_check);
- the wall time of the quick preset (its meta.json, or a fresh run with --run-quick).
Writes benchmarks/reports/summary_<device>.json and .md. Medians over repeats: these machines have
bursts of slowness, so never read one number alone.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import das_speed  # noqa: E402
import gpu_check  # noqa: E402
import train_speed  # noqa: E402

REPORTS = Path(__file__).parent / "reports"


def quick_wall(results: Path, run: bool, jobs: int | None) -> dict:
    if run:
        if results.exists():
            raise SystemExit(f"{results} exists, and a rerun there reuses every job; give --results a new folder")
        started = time.time()
        cmd = [sys.executable, "-m", "numvars.cli", "reproduce", "--preset", "quick", "--out", str(results), "--quiet"]
        cmd += ["--jobs", str(jobs)] if jobs else []
        subprocess.run(cmd, check=True)
        return {"quick_wall_s": time.time() - started, "quick_source": "timed now"}
    meta = results / "meta.json"
    if meta.is_file():
        m = json.loads(meta.read_text())
        return {"quick_wall_s": m["wall_seconds"], "quick_source": f"{meta} ({m['hardware'].get('jobs')} workers, "
                                                                   f"finished {m.get('finished')})"}
    return {"quick_wall_s": None, "quick_source": "not run (use --run-quick)"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("runs/bench"))
    p.add_argument("--results", type=Path, default=Path("results/quick"))
    p.add_argument("--run-quick", action="store_true")
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--repeats", type=int, default=100)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device(args.device)
    row = {"device": args.device, "torch": torch.__version__,
           "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None}
    step = train_speed.step_timings("multi_object", "gru", device, 20, 128, args.repeats, 10)
    crit = train_speed.time_to_criterion("multi_object", "gru", 0, args.out, args.device)
    row.update({"train_seq_per_s": step["seq_per_s"], "train_step_ms": step["step_ms"],
                "criterion_s": crit["seconds"], "criterion_epochs": crit["epochs"]})
    model, task = das_speed.trained_model("gru", args.out, args.device)
    das = das_speed.step_timings(model, task, device, 10_000, 512, args.repeats, 10)
    row.update({"das_pairs_per_s": das["pairs_per_s"], "das_step_ms": das["step_ms"]})
    conv = REPORTS / "das_convergence.json"
    if conv.is_file():
        rows = json.loads(conv.read_text())
        for setting in ("classic", "fast"):
            mine = [r for r in rows if r["arch"] == "gru" and r["map"] == "orthogonal" and r["setting"] == setting]
            if mine:
                row[f"das_steps_to_plateau_{setting}"] = sorted(r["steps_to_plateau"] for r in mine)[len(mine) // 2]
    for size in (1, 8, 64):
        g = gpu_check.group_step(device, "gru", 20, size, 128, max(10, args.repeats // 5), 3) if size > 1 else \
            gpu_check.solo_step(device, "gru", 20, 128, max(10, args.repeats // 5), 3)
        row[f"grouped_models_per_s_{size}"] = size / (g["ms"] / 1e3)          # optimiser steps of G models per s
    row.update(quick_wall(args.results, args.run_quick, args.jobs))
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / f"summary_{args.device}.json").write_text(json.dumps(row, indent=1, default=str))
    lines = ["| measure | value |", "|---|---|"] + [f"| {k} | {v:,.1f} |" if isinstance(v, float) else f"| {k} | {v} |"
                                                   for k, v in row.items()]
    (REPORTS / f"summary_{args.device}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
