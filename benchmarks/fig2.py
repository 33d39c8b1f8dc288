"""The paper's Figure 2 cells with the paper preset's protocol: 3 architectures × 3 tasks × 6 seeds at d = 20.

    python benchmarks/fig2.py --jobs 2                           # results in results/fig2 (report.html)
    python benchmarks/fig2.py --jobs 2 --runs runs/fidelity      # reuse the runs the fidelity ablation trained

The paper preset without its size sweep, variants, checkpoint alignments, explain pages and cross-model
alignments: every Figure 2 measure (Up-Down count, Up-Up best count with both maps, the full swap) with
the controls for every seed. With --runs, the results folder's runs/ is a link to that folder, so runs
trained there with the same configuration (the same run id) are reused rather than trained again.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

from numvars.presets import PRESETS
from numvars.reproduce import reproduce


def figure2_preset():
    return replace(PRESETS["paper"], name="paper-fig2", sizes=(), size_seeds=(), variants=(), dynamics=(),
                   explain=None, cross=())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("results/fig2"))
    p.add_argument("--runs", type=Path, default=None, help="an existing folder of run directories to reuse")
    p.add_argument("--jobs", type=int, default=None)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.runs and not (args.out / "runs").exists():
        os.symlink(os.path.relpath(args.runs.resolve(), args.out.resolve()), args.out / "runs")
    started = time.time()
    report = reproduce(figure2_preset(), out=args.out, device="cpu", jobs=args.jobs)
    print(f"done in {time.time() - started:.0f} s; report: {report}")


if __name__ == "__main__":
    main()
