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

import numpy as np
import pandas as pd

from numvars.reproduce.presets import PRESETS
from numvars.report import paper_comparison
from numvars.reproduce.run import reproduce

from docblock import replace_block


def figure2_preset():
    return replace(PRESETS["paper"], name="paper-fig2", sizes=(), size_seeds=(), variants=(), dynamics=(),
                   explain=None, align_models=(), control_seeds=(0,))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("results/fig2"))
    p.add_argument("--runs", type=Path, default=None, help="an existing folder of run directories to reuse")
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--doc", default=str(Path(__file__).parents[1] / "docs" / "fidelity.md"),
                   help="the page whose `fig2` block receives the table (--doc '' to skip)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.runs and not (args.out / "runs").exists():
        os.symlink(os.path.relpath(args.runs.resolve(), args.out.resolve()), args.out / "runs")
    started = time.time()
    report = reproduce(figure2_preset(), out=args.out, device="cpu", jobs=args.jobs)
    wall = time.time() - started
    table = comparison_table(args.out, wall, args.jobs)
    if args.doc:
        replace_block(Path(args.doc), "fig2", table)
    print(table)
    print(f"done in {wall:.0f} s; report: {report}")


def comparison_table(out: Path, wall: float, jobs) -> str:
    """Ours beside the paper for every Figure 2 cell, as Markdown: mean [interval], non-trivial IIA, paper."""
    cmp = paper_comparison(pd.read_csv(out / "analysis" / "headline.csv"))
    iia = pd.read_csv(out / "analysis" / "iia_table.csv")
    cols = [("up_down_count", "orthogonal"), ("up_down_count", "linear"), ("up_up_best_count", "orthogonal"),
            ("up_up_best_count", "linear"), ("full_swap", "—")]
    names = {"up_down_count": "Up-Down count", "up_up_best_count": "Up-Up best count", "full_swap": "full swap"}
    head = ["arch", "task", *[f"{names[m]}{'' if map_ == '—' else ', ' + map_}" for m, map_ in cols],
            "untrained control, seed 0 (Up-Down; orthogonal / linear)"]
    lines = [f"<!-- written by: python benchmarks/fig2.py --jobs {jobs} (wall time {wall / 60:.0f} min, "
             f"jobs reused from --runs do not count) -->", "",
             "Each cell: ours, mean over seeds [95% bootstrap interval over seeds], then (non-trivial pairs only) and "
             "the paper's value; ✗ where |ours − paper| > 0.15.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (arch, task), rows in cmp.groupby(["arch", "task"], sort=False):
        cells = []
        for measure, map_ in cols:
            r = rows[(rows["measure"] == measure) & (rows["map"] == map_)]
            if r.empty or np.isnan(r["ours"].iloc[0]):
                cells.append("—")
                continue
            r = r.iloc[0]
            cell = f"{r.ours:.2f}" + (f" [{r.ci_low:.2f}–{r.ci_high:.2f}]" if r.interval != "none" else "")
            if not np.isnan(r.nontrivial):
                cell += f" ({r.nontrivial:.2f})"
            cells.append(cell + f" · paper {r.paper:.2f}" + (" ✗" if r.verdict == "mismatch" else ""))
        ud = iia[(iia["arch"] == arch) & (iia["task"] == task) & (iia["program"] == "up_down")
                 & (iia["variable"] == "count")]
        cells.append(" / ".join(f"{v:.2f}" for v in (ud[ud["map"] == m]["untrained_mean"].mean()
                                                       for m in ("orthogonal", "linear")) if not np.isnan(v)) or "—")
        lines.append(f"| {arch} | {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
