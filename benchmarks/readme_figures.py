"""The README's two figures from one completed results folder: docs/img/figure2.png (the reproduced Figure 2
with the paper's digitized values as markers) and docs/img/k_curve_gru.png (IIA against the subspace size k
for one GRU, from its explain k sweep).

    python benchmarks/readme_figures.py results/paper
    python benchmarks/readme_figures.py RESULTS --img /tmp/img

The numbers are the ones docs/results.md shows: both scripts compute them with benchmarks/paperfigs.py.
Each image's caption (naming this script and the folder's preset) goes to captions.json beside it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from numvars import io

import paperfigs as P

ROOT = Path(__file__).parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="a completed results folder (numvars reproduce --out)")
    p.add_argument("--img", type=Path, default=ROOT / "docs" / "img", help="where the two PNGs go")
    args = p.parse_args(argv)
    res = P.load(args.results)
    source = f"python benchmarks/readme_figures.py {res.root} (preset {res.preset})"
    captions = {}

    cells = P.fig2_cells(res)
    P.draw_fig2(cells, args.img / "figure2.png", source)
    captions["figure2.png"] = f"{P.fig2_caption(cells, res)} Made by {source}."

    run, curve = P.gru_k_curve(res)
    if curve.empty:
        print(f"no GRU with an explain k sweep in {res.root}/runs/*/explain/explain.json: k_curve_gru.png not drawn")
    else:
        _, note = P.draw_k_curve(run, curve, args.img / "k_curve_gru.png", source)
        maps = ", ".join(sorted(set(curve["map"])))
        captions["k_curve_gru.png"] = (
            f"Up-Down count IIA of the GRU {run} against the size k of the aligned subspace (explain's k sweep; "
            f"maps: {maps}), with 95% intervals over test pairs; crosses: the same DAS on an untrained copy. "
            + (f"Note: {note}. " if note else "") + f"Made by {source}.")
        if note:
            print(f"k_curve_gru.png: {note}")
    io.write_text(args.img / "captions.json", json.dumps(captions, indent=2, ensure_ascii=False) + "\n")
    for name, caption in captions.items():
        print(f"{args.img / name}: {caption}")


if __name__ == "__main__":
    main()
