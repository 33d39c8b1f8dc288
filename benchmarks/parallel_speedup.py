"""Workers against wall time: a fixed slice of the paper grid run with 1 worker, then with 2 (fresh folders).

    python benchmarks/parallel_speedup.py --out runs/speedup            # about 2 × 5 minutes on 2 cores

The slice: GRU and LSTM on Multi-Object at d = 20, seeds 0–3, the paper's alignments (Up-Down count, Up-Up
demo and response counts, both maps), controls for seed 0, full swaps and out-of-range evaluation; no
size sweep, variants or checkpoint alignments. Reports the wall time of each, the speed-up, and whether
every analysis table came out identical. Writes benchmarks/reports/parallel_speedup.json and .md.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from numvars.reproduce.presets import PRESETS
from numvars.reproduce.run import reproduce

REPORTS = Path(__file__).parent / "reports"


def slice_of_paper():
    return replace(PRESETS["paper"], name="paper-slice", archs=("gru", "lstm"), tasks=("multi_object",),
                   seeds=(0, 1, 2, 3), sizes=(), size_seeds=(), variants=(), dynamics=(), control_seeds=(0,),
                   explain=None, align_models=(), train={**PRESETS["paper"].train, "max_epochs": 600, "extra_epochs": 0})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/speedup"))
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = p.parse_args(argv)
    preset, rows, tables = slice_of_paper(), [], {}
    for n in args.workers:
        out = args.out / f"jobs{n}"
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        reproduce(preset, out=out, device="cpu", jobs=n, progress=False)
        rows.append({"workers": n, "wall_s": time.perf_counter() - started})
        tables[n] = {f.name: pd.read_csv(f) for f in sorted((out / "analysis").glob("*.csv"))
                     if f.name not in ("runs.csv", "figures.csv")}
        print(rows[-1], flush=True)
    first = args.workers[0]
    for row in rows:
        row["speedup"] = rows[0]["wall_s"] / row["wall_s"]
        row["tables_identical"] = all(tables[row["workers"]][k].equals(tables[first][k]) for k in tables[first])
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "parallel_speedup.json").write_text(json.dumps(rows, indent=1))
    lines = ["| workers | wall (s) | speed-up | tables identical to 1 worker |", "|---|---|---|---|"]
    lines += [f"| {r['workers']} | {r['wall_s']:.0f} | {r['speedup']:.2f}× | {r['tables_identical']} |" for r in rows]
    (REPORTS / "parallel_speedup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
