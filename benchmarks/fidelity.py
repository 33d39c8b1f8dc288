"""The fidelity ablation: which protocol choices move Up-Down count IIA and the transformers' full swap.

    python benchmarks/fidelity.py --jobs 2                 # trains, aligns, writes docs/fidelity.md
    python benchmarks/fidelity.py --jobs 2 --seeds 0 1     # a smaller run (the doc says which seeds)

GRU and LSTM at d = 20 on Multi- and Single-Object, each factor changed alone from the paper's text
(stop at the criterion; fresh samples; teacher forcing; lr 1e-3; orthogonal DAS with k = d/2, 10k
pairs, positions anywhere but BOS/EOS/PAD, 0–3 extra demo tokens, loss on the scored tokens; the
map fitted as numvars fits it by default: started from a probe's subspace, 6 epochs), then
combinations; Same-Object for the chosen protocol; transformers' full swap under its own factors.
Every job is a numvars job (train / das / fullswap) run by the same engine as `numvars reproduce`,
cached in --out, so a rerun reuses everything and only rewrites the document.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from numvars.jobs.engine import job, run_graph
from numvars.jobs.cache import pair_rows
from numvars.reproduce.run import work

from docblock import cell, replace_block

RECURRENT = [(a, t) for a in ("gru", "lstm") for t in ("multi_object", "single_object")]
TASKS = ("multi_object", "single_object", "same_object")
PAST = {"extra_epochs": 1000}

# name -> (training overrides, DAS overrides); the first is the baseline every other row is compared with
FACTORS = {
    "paper text (baseline)": ({}, {}),
    "train 1000 epochs past the criterion": (PAST, {}),
    "fixed training set of 1,000 sequences": ({"train_set": 1000}, {}),
    "model-fed inputs at response positions": ({"inputs": "model"}, {}),
    "lr 5e-4": ({"lr": 5e-4}, {}),
    "linear alignment map": ({}, {"map": "linear"}),
    "positions: demo and response tokens only": ({}, {"positions": "tokens"}),
    "demo phase continues to the base's count": ({}, {"demo_rule": "target"}),
    "demo phase continues to a random count (authors' code)": ({}, {"demo_rule": "random"}),
    "DAS loss on every continuation token": ({}, {"loss_on": "all"}),
    "pairs without the held-out counts": ({}, {"pair_counts": "train"}),
    "DAS as in the authors' code: 20,000 steps at batch 128, lr 1e-3": (
        {}, {"max_steps": 20_000, "batch_size": 128, "max_epochs": 100_000, "lr": 1e-3, "schedule": "constant",
             "init": "random", "patience": 13}),
    "classic DAS: random start, lr 3e-3, 50 epochs": (
        {}, {"init": "random", "lr": 3e-3, "schedule": "constant", "max_epochs": 50}),
    "k = 15 of 20": ({}, {"k": 15}),
}
COMBINED = {
    "past criterion + tokens only": (PAST, {"positions": "tokens"}),
    "past criterion + linear map": (PAST, {"map": "linear"}),
    "past criterion + tokens only + linear map": (PAST, {"positions": "tokens", "map": "linear"}),
}
# transformers: training recipe -> full-swap options to compare
TF_RECIPES = {
    "paper text (baseline)": {},
    "no positional encoding (NPE)": {"pos": "none"},
    "void tokens, p = 0.2 (authors' code)": {"void_prob": 0.2},
    "train 300 epochs past the criterion": {"extra_epochs": 300},
}
SWAPS = {"matched by phase (paper text)": {"match": "phase"}, "matched by role (T with T)": {"match": "role"},
         "demo and response tokens only": {"match": "role", "positions": "tokens"}}


def train_job(arch, task, seed, overrides, out):
    keys = {"arch": arch, "task": task, "seed": seed, "max_epochs": 3000, **overrides, "out": str(out),
            "device": "cpu", "threads": 1}
    return job("train", config=tuple(sorted(keys.items())), spec=(arch, task, seed))


class Plan:
    """The roots (training runs) and, for each, the alignments and swaps that follow it."""

    def __init__(self, seeds, final_seeds, out):
        self.after: dict = {}
        recipes = {}                                        # training overrides -> DAS option sets
        for rows in (FACTORS, COMBINED):
            for train_over, das_over in rows.values():
                recipes.setdefault(tuple(sorted(train_over.items())), set()).add(tuple(sorted(das_over.items())))
        self.roots = []
        for train_over, das_sets in recipes.items():
            for arch, task in RECURRENT:
                for seed in (final_seeds if dict(train_over) == PAST else seeds):
                    root = train_job(arch, task, seed, dict(train_over), out)
                    self.roots.append(root)
                    self.after[root] = [("das", dict(d)) for d in sorted(das_sets)]
        for arch in ("gru", "lstm"):                        # Same-Object: baseline and the final protocol
            for train_over in ({}, PAST):
                for seed in final_seeds:
                    root = train_job(arch, "same_object", seed, train_over, out)
                    self.roots.append(root)
                    self.after[root] = [("das", {}), ("das", {"map": "linear"}), ("das", {"positions": "tokens"}),
                                        ("das", {"positions": "tokens", "map": "linear"})]
        for train_over in TF_RECIPES.values():
            for task in TASKS:
                for seed in seeds:
                    root = train_job("transformer", task, seed, train_over, out)
                    self.roots.append(root)
                    self.after[root] = [("fullswap", o) for o in SWAPS.values()] + ([("das", {})] if not train_over else [])
        for arch in ("gru", "lstm"):                        # recurrent full swap, for the table's contrast
            for task in TASKS:
                for seed in seeds:
                    root = train_job(arch, task, seed, PAST, out)
                    self.after.setdefault(root, [])
                    if root not in self.roots:
                        self.roots.append(root)
                    self.after[root] = self.after[root] + [("fullswap", {"match": "role"})]

    def __call__(self, done, result):
        if done.kind != "train" or not result["summary"]["reached_criterion"]:
            return []
        arch, task, seed = done.get("spec")
        out = []
        for kind, opts in self.after.get(done, []):
            if kind == "das":
                o = {"seed": seed, "device": "cpu", **opts}
                out.append(job("das", run_dir=result["run_dir"], options=tuple(sorted(o.items()))))
            else:
                o = {"seed": seed, "n": 1000, "device": "cpu", **opts}
                out.append(job("fullswap", run_dir=result["run_dir"], options=tuple(sorted(o.items()))))
        return out


def collect(plan: Plan, results: dict, children: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    iia, pairs, swaps = [], [], []
    for root in plan.roots:
        arch, task, seed = root.get("spec")
        train_over = {k: v for k, v in dict(root.get("config")).items()
                      if k not in ("arch", "task", "seed", "max_epochs", "out", "device", "threads")}
        summary = results[root]["summary"]
        base = {"arch": arch, "task": task, "seed": seed, "train": _key(train_over),
                "reached": summary["reached_criterion"], "epochs": summary["epochs"]}
        for child in children.get(root, []):
            r, opts = results[child]["summary"], dict(child.get("options"))
            das_over = {k: v for k, v in opts.items() if k not in ("seed", "device", "n")}
            if child.kind == "das":
                row = {**base, "das": _key(das_over), "iia": r["iia"], "iia_nontrivial": r["iia_nontrivial"]}
                iia.append(row)
                pairs += [{**row, **p} for p in pair_rows(results[child]["result_dir"], r["map"])]
            else:
                swaps.append({**base, "swap": _key(das_over), "iia": r["iia"],
                              **{f"base_{k}": v for k, v in r.get("iia_by_base_phase", {}).items()}})
    return pd.DataFrame(iia), pd.DataFrame(pairs), pd.DataFrame(swaps)


def _key(d: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(d.items())) or "-"


def recurrent_table(iia, pairs, rows, cells) -> list[str]:
    head = "| protocol | " + " | ".join(f"{a.upper()} {t.split('_')[0]}" for a, t in cells) + \
           " | mean | Δ vs baseline | demo ← response | demo ← T | non-trivial mean |"
    lines = [head, "|" + "---|" * (len(cells) + 6)]
    baseline = None
    for name, (train_over, das_over) in rows.items():
        in_cells = lambda df: df[[(a, t) in cells for a, t in zip(df["arch"], df["task"])]]   # noqa: E731
        sel = in_cells(iia[(iia["train"] == _key(train_over)) & (iia["das"] == _key(das_over))])
        p = in_cells(pairs[(pairs["train"] == _key(train_over)) & (pairs["das"] == _key(das_over))])
        per_cell = [sel[(sel["arch"] == a) & (sel["task"] == t)]["iia"] for a, t in cells]
        mean = float(np.mean([c.mean() for c in per_cell if len(c)])) if len(sel) else float("nan")
        baseline = mean if baseline is None else baseline
        weak = [p[(p["phase_t"] == "demo") & (p["phase_u"] == u)]["correct"].mean() for u in ("response", "T")]
        weak = ["—" if np.isnan(w) else f"{w:.2f}" for w in weak]
        lines.append(f"| {name} | " + " | ".join(cell(c) for c in per_cell) +
                     f" | {mean:.3f} | {mean - baseline:+.3f} | {weak[0]} | {weak[1]} | "
                     f"{sel['iia_nontrivial'].mean():.3f} |")
    return lines


def transformer_table(swaps) -> list[str]:
    lines = ["| training | full swap | " + " | ".join(t.split("_")[0] for t in TASKS) +
             " | mean | base at demo | at T | at response |", "|" + "---|" * 9]
    for name, train_over in TF_RECIPES.items():
        for swap, opts in SWAPS.items():
            sel = swaps[(swaps["arch"] == "transformer") & (swaps["train"] == _key(train_over))
                        & (swaps["swap"] == _key(opts))]
            cells = [sel[sel["task"] == t]["iia"] for t in TASKS]
            phase = [sel.get(f"base_{p}", pd.Series(dtype=float)).mean() for p in ("demo", "T", "response")]
            lines.append(f"| {name} | {swap} | " + " | ".join(cell(c) for c in cells) +
                         f" | {sel['iia'].mean():.3f} | " + " | ".join("—" if np.isnan(v) else f"{v:.2f}" for v in phase) + " |")
    rec = swaps[swaps["arch"] != "transformer"]
    for arch in ("gru", "lstm"):
        cells = [rec[(rec["arch"] == arch) & (rec["task"] == t)]["iia"] for t in TASKS]
        lines.append(f"| {arch.upper()}, 1000 epochs past the criterion | matched by role | " +
                     " | ".join(cell(c) for c in cells) + f" | {rec[rec['arch'] == arch]['iia'].mean():.3f} | | | |")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/fidelity"))
    p.add_argument("--doc", type=Path, default=Path(__file__).parents[1] / "docs" / "fidelity.md",
                   help="the page whose `ablation` block receives the tables")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--final-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    plan = Plan(args.seeds, args.final_seeds, args.out)
    results, children = run_graph(plan.roots, work, plan, jobs=args.jobs, desc="fidelity ablation")
    iia, pairs, swaps = collect(plan, results, children)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, df in (("iia", iia), ("pairs", pairs), ("swaps", swaps)):
        df.to_csv(args.out / f"{name}.csv", index=False)
    wall = time.time() - started
    cpu_train = sum(results[r]["summary"]["seconds"] for r in plan.roots) / 60
    cpu_align = sum(results[c]["summary"].get("seconds", 0) for r in plan.roots for c in children.get(r, [])) / 60
    same = [("gru", "same_object"), ("lstm", "same_object")]
    final = {"paper text (baseline)": ({}, {}), "past criterion": (PAST, {}),
             "past criterion + tokens only": (PAST, {"positions": "tokens"}),
             "past criterion + linear map": (PAST, {"map": "linear"}),
             "past criterion + tokens only + linear map": (PAST, {"positions": "tokens", "map": "linear"})}
    dropped = {k: int((~r).sum()) for k, r in iia.groupby("train")["reached"]} if len(iia) else {}
    lines = [f"<!-- written by: python benchmarks/fidelity.py --jobs {args.jobs} --seeds "
             f"{' '.join(map(str, args.seeds))} --final-seeds {' '.join(map(str, args.final_seeds))}; "
             f"wall time of this run {wall / 60:.1f} min (jobs reused from --out do not count); the jobs' own time: "
             f"{cpu_train + cpu_align:.0f} CPU-min ({cpu_train:.0f} training, {cpu_align:.0f} alignment; full swaps are not timed), "
             f"about {(cpu_train + cpu_align) / 60 / args.jobs:.1f} h of wall time with --jobs {args.jobs} -->", "",
             f"### Each factor alone (Up-Down count IIA, seeds {', '.join(map(str, args.seeds))}; "
             f"1000-epoch rows: seeds {', '.join(map(str, args.final_seeds))})", "",
             *recurrent_table(iia, pairs, FACTORS, RECURRENT), "",
             "### Combinations", "", *recurrent_table(iia, pairs, {**{k: FACTORS[k] for k in list(FACTORS)[:2]},
                                                                     **COMBINED}, RECURRENT), "",
             f"### Same-Object (seeds {', '.join(map(str, args.final_seeds))})", "",
             *recurrent_table(iia, pairs, final, same), "",
             f"### Full-state swap (Context-Distributed IIA), seeds {', '.join(map(str, args.seeds))}", "",
             *transformer_table(swaps), "", f"Runs that never reached the criterion, per training recipe: {dropped}."]
    replace_block(args.doc, "ablation", "\n".join(lines))
    print(f"wrote {args.doc} in {wall / 60:.1f} min")


if __name__ == "__main__":
    main()
