"""DAS convergence: how many optimisation steps an alignment needs, and from which starting point.

    python benchmarks/das_convergence.py --out runs/bench --seeds 0 1

Compares, on d = 20 GRU, LSTM and Transformer models of Multi-Object (trained here if needed,
default settings), the classic DAS (a random rotation, Adam lr 3e-3, up to 50 epochs, stop on a
validation plateau) with the fast one (init=probe: start from the subspace a least-squares probe
reads the count from; lr 5e-2 with a cosine decay over 6 epochs). Reports test IIA, optimiser steps,
the step at which validation IIA first came within 0.01 of its best, and seconds; writes JSON, a
markdown table and the learning curves (PNG) to benchmarks/reports/.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from numvars import models
from numvars.align import das
from numvars.config import from_mapping
from numvars.train import train

SETTINGS = {
    "classic": dict(init="random", lr=3e-3, schedule="constant", max_epochs=50, patience=8),
    "fast": dict(init="probe", lr=5e-2, schedule="cosine", max_epochs=6, patience=50),
}
REPORTS = Path(__file__).parent / "reports"


def steps_to_plateau(history, steps_per_epoch: int) -> int:
    """Optimiser steps until validation IIA first came within 0.01 of its best."""
    val = history["val_iia"].to_numpy()
    return int((np.argmax(val >= val.max() - 0.01) + 1) * steps_per_epoch)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench"))
    p.add_argument("--archs", nargs="+", default=["gru", "lstm", "transformer"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--maps", nargs="+", default=["orthogonal"])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows, curves = [], {}
    for arch in args.archs:
        for seed in args.seeds:
            run = train(from_mapping({"arch": arch, "seed": seed, "out": str(args.out)}), progress=False)
            model, task = models.load(run.run_dir), from_mapping({"arch": arch}).make_task()
            for map_ in args.maps:
                for name, opts in SETTINGS.items():
                    started = time.perf_counter()
                    r = das(model, task, "up_down", "count", seed=seed, map=map_, **opts)
                    per_epoch = int(np.ceil(10_000 / 512))
                    rows.append({"arch": arch, "seed": seed, "map": map_, "setting": name, "iia": r.iia,
                                 "val_iia": r.val_iia, "steps": r.steps, "seconds": time.perf_counter() - started,
                                 "steps_to_plateau": steps_to_plateau(r.history, per_epoch)})
                    curves[(arch, seed, map_, name)] = (np.arange(1, len(r.history) + 1) * per_epoch,
                                                        r.history["val_iia"].to_numpy())
                    print(rows[-1], flush=True)
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "das_convergence.json").write_text(json.dumps(rows, indent=1))
    lines = ["| arch | seed | map | setting | test IIA | steps | steps to plateau | seconds |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['arch']} | {r['seed']} | {r['map']} | {r['setting']} | {r['iia']:.3f} | {r['steps']} | "
              f"{r['steps_to_plateau']} | {r['seconds']:.1f} |" for r in rows]
    (REPORTS / "das_convergence.md").write_text("\n".join(lines) + "\n")
    fig = Figure(figsize=(4.2 * len(args.archs), 3.4), layout="constrained")
    axes = fig.subplots(1, len(args.archs), squeeze=False)[0]
    for ax, arch in zip(axes, args.archs):
        for (a, seed, map_, name), (x, y) in curves.items():
            if a == arch:
                ax.plot(x, y, color="C0" if name == "classic" else "C3", alpha=0.8,
                        label=f"{name}" if seed == args.seeds[0] else None)
        ax.set_title(f"{arch}, Up-Down count, d = 20")
        ax.set_xlabel("optimiser steps (batch 512)")
        ax.set_ylabel("validation IIA")
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    fig.savefig(REPORTS / "das_convergence.png", dpi=100)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
