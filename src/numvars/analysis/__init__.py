"""Analyses of a results directory: derived tables and figures.

`analyze(results_dir)` reads the raw tables that `numvars reproduce` wrote to RESULTS/tables/,
drops every run that never reached the accuracy criterion (listed in the `dropped` table), and
writes RESULTS/analysis/<name>.csv and .parquet, RESULTS/figures/<name>.png and
RESULTS/figures/captions.json. A figure whose inputs are empty is skipped, not an error: the
`figures` table records why, and the report says so.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import figures as F
from .. import io
from ..paths import inside
from . import hidden
from .stats import STATS, mean_ci, pearson, summarize
from .tables import OPTIONAL, RAW, TASKS, default_alignment, dropped_table, dynamics_tables, fullswap_table, gradience_tables, headline, iia_table, keep_trained, load_results, maps_of, oor_table, phase_pairs_table, signed_error_table, size_sweep, variants_table, where

__all__ = ["OUTPUTS", "RAW", "TASKS", "analyze", "load_results", "mean_ci", "pearson", "summarize", "where",
           "default_alignment"]

FIGURES = ("iia", "size_sweep", "dynamics", "gradience_heatmap", "gradience_diff", "oor", "pca", "attention",
           "phase_pairs", "signed_error")
_CONTROLS = ("untrained_mean", "random_mean", "identity_mean")
_SWAP = ("fullswap_mean", "fullswap_ci_low", "fullswap_ci_high", "fullswap_n", "fullswap_interval")
_DYN = ("r", "p", "n", "iia_at_criterion", "iia_last", "r_after", "n_after")
# The columns of each table in RESULTS/analysis/ (what the report reads from a cached analysis; checked there).
OUTPUT_COLUMNS = {
    "runs": RAW["runs"], "dropped": ("run_name", "arch", "task", "variant", "d_model", "seed", "epochs",
                                     "trial_accuracy", "run_dir"),
    "iia_table": ("arch", "task", "program", "variable", "map", "k", *STATS, "nontrivial_mean", *_CONTROLS, *_SWAP),
    "fullswap": ("arch", "task", "site", "program", *STATS, "is_default_site"),
    "headline": ("arch", "task", "measure", "map", *STATS, "nontrivial_mean"),
    "variants": ("arch", "task", "variant", *STATS, *_SWAP), "size_sweep": ("d_model", *STATS, *_CONTROLS),
    "size_points": ("d_model", "run_name", "seed", "iia"),
    "dynamics_runs": ("run_name", "arch", "task", "variant", "d_model", "seed", *_DYN),
    "dynamics_pooled": ("scope", *_DYN), "gradience_grid": ("base_value", "source_value", "iia", "pairs"),
    "gradience_diff": ("d_model", "abs_diff", "iia", "pairs"),
    "phase_pairs": ("arch", "task", "map", "phase_t", "phase_u", "iia", "pairs"),
    "signed_error": ("arch", "map", "signed_error", "pairs", "fraction"), "oor": ("arch", "task", "count", *STATS),
    "pca": ("run_name", "arch", "task", "d_model", "pc", "explained_variance"), **OPTIONAL,
    "figures": ("name", "title", "file", "caption", "status", "reason"),
}
OUTPUTS = tuple(OUTPUT_COLUMNS)


def analyze(results_dir, d_model: int | None = None) -> dict[str, pd.DataFrame]:
    """All analyses of RESULTS (tables/ → analysis/ and figures/); returns the derived tables.
    d_model is the main model size (default: the preset's, from meta.json, else 20)."""
    root = Path(results_dir)
    raw, meta = load_results(root)
    d_model = d_model or int(meta.get("config", {}).get("d_model", 20))
    train_max = training_range(meta)
    t = keep_trained(raw)
    out = {"runs": t["runs"], "dropped": dropped_table(raw["runs"])}
    out["iia_table"] = iia_table(t["iia"], t["fullswap"], d_model)
    out["fullswap"] = fullswap_table(t["fullswap"], d_model)
    out["headline"] = headline(out["iia_table"], out["fullswap"], d_model)
    out["variants"] = variants_table(t["iia"], t["fullswap"], d_model)
    out["size_sweep"], out["size_points"] = size_sweep(t["iia"])
    out["dynamics_runs"], out["dynamics_pooled"] = dynamics_tables(t["dynamics"], t["runs"])
    out["gradience_grid"], out["gradience_diff"] = gradience_tables(t["pairs"], d_model)
    out["phase_pairs"] = phase_pairs_table(t["pairs"], d_model)
    out["signed_error"] = signed_error_table(t["pairs"], d_model)
    first = (maps_of(t["pairs"]) or ["orthogonal"])[0]
    out["oor"] = oor_table(t["oor"], d_model)
    out["explain"], out["align_models"] = t["explain"], t["align_models"]
    pca = hidden.pca_inputs(root, t["runs"], d_model, train_max)
    makers = {
        "iia": lambda: F.fig_iia(_main_alignments(out["iia_table"], d_model), d_model),
        "size_sweep": lambda: F.fig_size_sweep(out["size_sweep"], out["size_points"]),
        "dynamics": lambda: F.fig_dynamics(t["dynamics"]),
        "gradience_heatmap": lambda: F.fig_gradience_heatmap(out["gradience_grid"],
                                                             f"GRU, Multi-Object, d = {d_model}, all seeds pooled"),
        "gradience_diff": lambda: F.fig_gradience_diff(out["gradience_diff"]),
        "oor": lambda: F.fig_oor(out["oor"], d_model, train_max),
        "pca": lambda: F.fig_pca(pca),
        "attention": lambda: F.fig_attention(hidden.attention_inputs(root, t["runs"], d_model)),
        "phase_pairs": lambda: F.fig_phase_pairs(out["phase_pairs"][out["phase_pairs"]["map"] == first]),
        "signed_error": lambda: F.fig_signed_error(out["signed_error"][out["signed_error"]["map"] == first]),
    }
    assert tuple(makers) == FIGURES
    figures, tables = inside(root, "figures"), inside(root, "analysis")
    out["figures"] = pd.DataFrame([draw(figures, name, make) for name, make in makers.items()])
    out["pca"] = hidden.pca_table(pca)
    for name in OUTPUTS:
        io.write_table(tables / f"{name}.csv", out[name])
        io.write_table(tables / f"{name}.parquet", out[name])
    done = out["figures"][out["figures"]["status"] == "ok"]
    io.write_text(figures / "captions.json",
                  json.dumps(dict(zip(done["name"], done["caption"])), indent=2, ensure_ascii=False) + "\n")
    return out


def training_range(meta: dict) -> int:
    """The largest training count of the preset (the paper's 20 unless its training options say)."""
    return int(meta.get("config", {}).get("train", {}).get("max_count", F.TRAIN_MAX_COUNT))


def _main_alignments(iia_table: pd.DataFrame, d_model: int) -> pd.DataFrame:
    """Every learned map's alignments at k = d/2: orthogonal's whole, the others' Up-Down count beside."""
    t = iia_table.assign(d_model=d_model)
    maps = maps_of(t) or ["orthogonal"]
    parts = [default_alignment(t, maps[0])]
    for other in maps[1:]:
        extra = default_alignment(t, other)
        parts.append(extra[(extra["map"] == other) & (extra["program"] == "up_down")])
    return pd.concat(parts, ignore_index=True)


def draw(folder: Path, name: str, make, title: str | None = None) -> dict:
    """Draw one figure to folder/name.png atomically, or record why it was skipped."""
    path, title = folder / f"{name}.png", title or F.TITLES[name]
    try:
        fig, caption = make()
    except F.Skip as why:
        path.unlink(missing_ok=True)             # never leave a stale figure from an earlier run
        return {"name": name, "title": title, "file": "", "caption": "", "status": "skipped", "reason": str(why)}
    fig.suptitle(title)
    # io's atomic write, for bytes; "tight" keeps a title wider than narrow panels inside the image
    io.write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight", pad_inches=0.15))
    return {"name": name, "title": title, "file": f"figures/{name}.png", "caption": caption, "status": "ok",
            "reason": ""}
