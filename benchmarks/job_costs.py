"""Per-unit job costs for `numvars reproduce --dry-run`, measured here; writes src/numvars/data/job_costs.json.

    python benchmarks/job_costs.py --out runs/bench

For each architecture at d = 20 (one torch thread): seconds per training epoch (8 steps at batch 128
plus the 300-trial evaluation), seconds per DAS step at batch 512, per full-swap pair and per
greedy evaluation trial; and the epochs to criterion on each task (seed 0, default settings; runs are
trained once under --out and reused). Medians over repeats.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from numvars.align import full_swap
from numvars.config import from_mapping
from numvars.evaluate import greedy_trials
from numvars.tasks import VARIANTS
from numvars.train import train

import das_speed  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
import train_speed  # noqa: E402

DATA = Path(__file__).parents[1] / "src" / "numvars" / "data" / "job_costs.json"


def median_seconds(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench"))
    p.add_argument("--archs", nargs="+", default=["gru", "lstm", "transformer"])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    table = {"note": "seconds per unit of work on this CPU, torch %s, one thread per worker; "
                     "written by python benchmarks/job_costs.py" % torch.__version__,
             "das_typical_epochs": 25, "archs": {},
             "finishing": json.loads(DATA.read_text()).get("finishing") if DATA.is_file() else None}
    for arch in args.archs:
        step = train_speed.step_timings("multi_object", arch, cpu, 20, 128, 50, 5)
        model, task = das_speed.trained_model(arch, args.out, "cpu")
        das = das_speed.step_timings(model, task, cpu, 4000, 512, 30, 3)
        trial_s = median_seconds(lambda: greedy_trials(model, task, range(1, 21), 5), 3) / 100
        swap_s = median_seconds(lambda: full_swap(model, task, n=200), 3) / 200
        epochs = {}
        for name in VARIANTS:
            run = train(from_mapping({"arch": arch, "task": name, "out": str(args.out)}), progress=False)
            epochs[name] = run.summary["epochs"]
        table["archs"][arch] = {"epoch_s": 8 * step["step_ms"] / 1e3 + 300 * trial_s / 20,
                                "das_step_s": das["step_ms"] / 1e3, "fullswap_pair_s": swap_s, "trial_s": trial_s,
                                "criterion_epochs": epochs}
        print(arch, table["archs"][arch], flush=True)
    DATA.write_text(json.dumps(table, indent=2) + "\n")
    print(f"wrote {DATA}")


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    main()
