"""Where a Transformer's full swap fails: by the base's phase, by whether u holds t's input token, and, in
the response phase, by how many responses are still to come at t and at u.

    python benchmarks/fullswap_breakdown.py runs/fidelity      # every finished Transformer run found there

Each run gets a role-matched full swap at its default site (resid.1 for the 2-layer Transformer) on
1,000 pairs, scored teacher-forced against Context-Distributed (the continuation is unchanged). The
tables go to stdout, to benchmarks/reports/fullswap_breakdown.md and into docs/fidelity.md; the per-pair rows, to
fullswap_breakdown.csv in the runs folder.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from numvars import align
from numvars.errors import NumvarsError
from numvars.runs import load_run

from docblock import cell, replace_block

REPORTS = Path(__file__).parent / "reports"


def pairs_of(run_dir: Path, n: int) -> pd.DataFrame | None:
    try:
        model, task, cfg, _ = load_run(run_dir)
    except NumvarsError:
        return None
    if cfg.model.arch != "transformer" or cfg.model.layer_dropout or not cfg.task.trigger or cfg.task.void_prob > 0 or not cfg.task.bos:
        return None                                     # the remaining-count columns assume BOS, demos, T, responses
    swap = align.full_swap(model, task, programs=("ctx_distributed",), n=n, match="role")
    p = swap.pairs.copy()
    resp_t = p["t"] - (p["base_count"] + 1)              # BOS at 0, demos at 1..n, T at n + 1
    resp_u = p["u"] - (p["source_count"] + 1)
    p["still_to_come"] = np.where(p["phase_t"] == "response", (p["source_count"] - resp_u) -
                                  (p["base_count"] - resp_t), 0)     # at u minus at t
    train = cfg.train
    return p.assign(run=run_dir.name, task=cfg.task.name, seed=cfg.seed, pos=cfg.model.pos,
                    extra_epochs=train.extra_epochs)


def tables(df: pd.DataFrame) -> list[str]:
    per_run = lambda sel: sel.groupby("run")["correct"].mean()       # noqa: E731  (seed is the unit)
    lines = ["| task | positional encoding | runs | all pairs | demo, same token | demo, another token | T | "
             "response | response, u has more still to come | response, u has as many or fewer |",
             "|" + "---|" * 10]
    for (task, pos), d in df.groupby(["task", "pos"]):
        demo, resp = d[d["phase_t"] == "demo"], d[d["phase_t"] == "response"]
        cells = [per_run(d), per_run(demo[demo["same_token"]]), per_run(demo[~demo["same_token"]]),
                 per_run(d[d["phase_t"] == "T"]), per_run(resp), per_run(resp[resp["still_to_come"] > 0]),
                 per_run(resp[resp["still_to_come"] <= 0])]
        lines.append(f"| {task} | {pos} | {d['run'].nunique()} | " +
                     " | ".join(cell(c) for c in cells) + " |")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path, help="a folder of run directories")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--extra-epochs", type=int, default=0, help="only runs trained this many epochs past the criterion")
    p.add_argument("--doc", default=str(Path(__file__).parents[1] / "docs" / "fidelity.md"),
                   help="the page whose `breakdown` block receives the table (--doc '' to skip)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    frames = [f for r in sorted(args.runs.iterdir()) if (r / "summary.json").is_file()
              for f in [pairs_of(r, args.n)] if f is not None and int(f["extra_epochs"].iloc[0]) == args.extra_epochs]
    if not frames:
        raise SystemExit(f"no finished Transformer runs (default task layout) in {args.runs}")
    df = pd.concat(frames, ignore_index=True)
    lines = ["Role-matched full swap at resid.1, Context-Distributed IIA (the continuation is unchanged), mean over "
             f"runs with a bootstrap interval over runs; {args.n} pairs per run. Written by "
             f"`python benchmarks/fullswap_breakdown.py {args.runs}`.", "", *tables(df)]
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "fullswap_breakdown.md").write_text("\n".join(lines) + "\n")
    if args.doc:
        replace_block(Path(args.doc), "breakdown", "\n".join(lines))
    df.to_csv(args.runs / "fullswap_breakdown.csv", index=False)      # per-pair rows stay with the runs
    print("\n".join(lines))


if __name__ == "__main__":
    main()
