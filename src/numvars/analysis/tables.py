"""Derived tables of a results directory: the raw tables read and checked, dropped runs set apart,
and one table per analysis (IIA per condition with its controls, size sweep, dynamics, gradience,
out-of-range accuracy, variants, and the paper's headline measures)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import loaders
from ..align import CONTROLS
from ..errors import NumvarsError
from ..models import ARCHS
from ..tasks import VARIANTS
from .stats import STATS, pearson, summarize

# Wall-clock times live apart (tables/timings.csv), so a resumed reproduction gives identical tables.
RAW = {
    "runs": ("run_name", "run_dir", "arch", "task", "variant", "d_model", "seed", "reached_criterion",
             "criterion_epoch", "epochs", "trial_accuracy"),
    "iia": ("run_name", "arch", "task", "variant", "d_model", "seed", "program", "variable", "k", "map", "control",
            "iia", "iia_free", "iia_nontrivial", "token_accuracy", "val_iia", "result_dir"),
    "fullswap": ("run_name", "arch", "task", "variant", "d_model", "seed", "site", "program", "iia"),
    "oor": ("run_name", "arch", "task", "variant", "d_model", "seed", "count", "accuracy"),
    "dynamics": ("run_name", "arch", "task", "variant", "d_model", "seed", "epoch", "trial_accuracy", "iia"),
    "pairs": ("run_name", "arch", "task", "variant", "d_model", "seed", "map", "base_value", "source_value",
              "abs_diff", "correct", "phase_t", "phase_u", "trivial", "signed_error"),
}
# Tables of the analyses beyond the paper; results folders written before them simply have none.
OPTIONAL = {
    "explain": ("run_name", "arch", "task", "d_model", "seed", "best", "verdict", "page"),
    "align_models": ("model_a", "model_b", "direction", "iia", "iia_nontrivial", "k"),
}
TASKS = tuple(VARIANTS)

# ---------------------------------------------------------------------------------------------
# Inputs


def load_results(results_dir) -> tuple[dict[str, pd.DataFrame], dict]:
    """The raw tables (all runs, dropped ones included) and meta.json ({} where it is absent)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise NumvarsError(f"results directory {root} does not exist; run `numvars reproduce` first or pass "
                           "the directory it wrote")
    return loaders.read_raw_tables(root, RAW, OPTIONAL), loaders.read_meta(root)


def keep_trained(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    runs = tables["runs"]
    kept = set(runs.loc[runs["reached_criterion"], "run_name"])
    return {name: df[df["run_name"].isin(kept)].reset_index(drop=True) if "run_name" in df else df
            for name, df in tables.items()}


def where(df: pd.DataFrame, **equal) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for col, value in equal.items():
        mask &= (df[col] == value).to_numpy()
    return df[mask]


def default_alignment(df: pd.DataFrame, map: str = "orthogonal") -> pd.DataFrame:
    """One alignment per condition: the given map (where it ran; else whatever map ran) with k = d/2 (or the
    k nearest it); the fixed-map controls keep theirs."""
    if df.empty:
        return df
    if (df["map"] == map).any():
        df = df[df["map"].isin([map, "random", "identity"])]
    gap = (df["k"] - df["d_model"] / 2).abs()
    return df[gap == gap.groupby(df["d_model"]).transform("min")]


def maps_of(iia: pd.DataFrame) -> list[str]:
    """The learned alignment maps that ran, orthogonal first."""
    learned = [m for m in dict.fromkeys(iia.get("map", pd.Series(dtype=str))) if m not in ("random", "identity")]
    return sorted(learned, key=lambda m: (m != "orthogonal", m))


def _with_best_count(iia: pd.DataFrame) -> pd.DataFrame:
    """Add Up-Up 'best_count' rows: per run, the better of demo_count and resp_count."""
    uu = iia[(iia["program"] == "up_up") & iia["variable"].isin(["demo_count", "resp_count"])]
    if uu.empty:
        return iia
    keys = ["run_name", "arch", "task", "variant", "d_model", "seed", "program", "map", "k", "control"]
    pick = uu.loc[uu.groupby(keys, dropna=False)["iia"].idxmax()]          # the better variable's row, whole
    return pd.concat([iia, pick.assign(variable="best_count")], ignore_index=True)


def order(df: pd.DataFrame) -> pd.DataFrame:
    rank = {name: i for i, name in enumerate((*ARCHS, *TASKS))}
    cols = [c for c in ("arch", "task") if c in df.columns]
    return df.sort_values(cols, key=lambda s: s.map(lambda v: rank.get(v, 99)), kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Tables


def iia_table(iia: pd.DataFrame, fullswap: pd.DataFrame, d_model: int = 20) -> pd.DataFrame:
    """Arch × task × program/variable at d_model, variant default: mean, CI and n over seeds, with the
    controls' means and the Context-Distributed full-swap IIA beside."""
    sel = _with_best_count(where(iia, d_model=d_model, variant="default"))
    keys = ["arch", "task", "program", "variable", "map", "k"]
    table = summarize(sel[sel["control"] == "none"], keys)
    nontrivial = summarize(sel[sel["control"] == "none"], keys, value="iia_nontrivial")
    table = table.merge(nontrivial[[*keys, "mean"]].rename(columns={"mean": "nontrivial_mean"}), on=keys, how="left")
    for control in CONTROLS:
        ckeys = [*keys[:4], "k", *(["map"] if control == "untrained" else [])]
        means = summarize(sel[sel["control"] == control], ckeys)[[*ckeys, "mean"]]
        table = table.merge(means.rename(columns={"mean": f"{control}_mean"}), on=ckeys, how="left")
    swap = fullswap_table(fullswap, d_model)
    swap = swap[swap["is_default_site"] & (swap["program"] == "ctx_distributed")]
    swap = swap[["arch", "task", *STATS]].rename(columns={s: f"fullswap_{s}" for s in STATS})
    return order(table.merge(swap, on=["arch", "task"], how="left"))


def fullswap_table(fullswap: pd.DataFrame, d_model: int = 20) -> pd.DataFrame:
    table = summarize(where(fullswap, d_model=d_model, variant="default"), ["arch", "task", "site", "program"])
    default = table["site"].isin(["state", "resid.1"])
    lone = table.groupby(["arch", "task"])["site"].transform("nunique") == 1
    return order(table.assign(is_default_site=(default | lone).astype(bool)))


def variants_table(iia: pd.DataFrame, fullswap: pd.DataFrame, d_model: int = 20) -> pd.DataFrame:
    """Up-Down count IIA and the Context-Distributed full swap per task/model variant (default, npe,
    void, ...) at d_model, for every (arch, task) that has a non-default variant."""
    sel = default_alignment(where(iia, d_model=d_model, program="up_down", variable="count", control="none"))
    swap = where(fullswap, d_model=d_model, program="ctx_distributed")
    keys = ["arch", "task", "variant"]
    table = summarize(sel, keys).merge(
        summarize(swap, keys).rename(columns={s: f"fullswap_{s}" for s in STATS}), on=keys, how="outer")
    varied = table.loc[table["variant"] != "default", ["arch", "task"]].drop_duplicates()
    return order(table.merge(varied, on=["arch", "task"]))


def headline(iia_tab: pd.DataFrame, swap_tab: pd.DataFrame, d_model: int = 20) -> pd.DataFrame:
    """The paper's Figure 2 measures, long format: arch, task, measure, map, mean, CI, n, interval, and the
    mean on non-trivial pairs; one row per learned map for the alignments (maps side by side)."""
    parts = []
    for map_ in maps_of(iia_tab) or ["orthogonal"]:
        t = default_alignment(iia_tab.assign(d_model=d_model), map_)
        t = t[t["map"] == map_]
        for measure, (program, variable) in {"up_down_count": ("up_down", "count"),
                                             "up_up_best_count": ("up_up", "best_count")}.items():
            rows = where(t, program=program, variable=variable)
            parts.append(rows[["arch", "task", *STATS, "nontrivial_mean"]].assign(measure=measure, map=map_))
    swap = swap_tab[swap_tab["is_default_site"].astype(bool) & (swap_tab["program"] == "ctx_distributed")]
    parts.append(swap[["arch", "task", *STATS]].assign(measure="full_swap", map="—"))
    out = pd.concat(parts, ignore_index=True)[["arch", "task", "measure", "map", *STATS, "nontrivial_mean"]]
    return order(out.drop_duplicates(["arch", "task", "measure", "map"]))


def size_sweep(iia: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Up-Down count IIA vs d_model for GRU Multi-Object: (summary with control means, per-run points)."""
    sel = default_alignment(where(iia, arch="gru", task="multi_object", variant="default", program="up_down",
                                    variable="count"))
    points = sel[sel["control"] == "none"].groupby(["d_model", "run_name", "seed"], as_index=False)["iia"].mean()
    table = summarize(sel[sel["control"] == "none"], ["d_model"])
    for control in CONTROLS:
        means = summarize(sel[sel["control"] == control], ["d_model"])[["d_model", "mean"]]
        table = table.merge(means.rename(columns={"mean": f"{control}_mean"}), on="d_model", how="left")
    return table, points


def dynamics_tables(dyn: pd.DataFrame, runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pearson r between trial accuracy and IIA over checkpoints, over the whole curve and over the part
    after the criterion (where accuracy is perfect and only IIA can still move): per run, and pooled
    (per arch, all)."""
    first = dict(zip(runs["run_name"], pd.to_numeric(runs["criterion_epoch"], errors="coerce")))
    dyn = dyn.assign(after=dyn["epoch"] >= dyn["run_name"].map(first))
    keys = ["run_name", "arch", "task", "variant", "d_model", "seed"]
    per_run = [{**dict(zip(keys, group)), **_pearson_row(g)} for group, g in dyn.groupby(keys, sort=True)]
    pooled = [{"scope": f"arch={arch}", **_pearson_row(g)} for arch, g in dyn.groupby("arch", sort=True)]
    if not dyn.empty:
        pooled.append({"scope": "all", **_pearson_row(dyn)})
    cols = ["r", "p", "n", "iia_at_criterion", "iia_last", "r_after", "n_after"]
    return (order(pd.DataFrame(per_run, columns=[*keys, *cols])), pd.DataFrame(pooled, columns=["scope", *cols]))


def _pearson_row(g: pd.DataFrame) -> dict:
    r, p = pearson(g["trial_accuracy"], g["iia"])
    after = g[g["after"]].sort_values("epoch")
    r_after, _ = pearson(after["trial_accuracy"], after["iia"])
    return {"r": r, "p": p, "n": len(g), "iia_at_criterion": after["iia"].iloc[0] if len(after) else float("nan"),
            "iia_last": after["iia"].iloc[-1] if len(after) else float("nan"), "r_after": r_after,
            "n_after": len(after)}


def first_map(pairs: pd.DataFrame) -> pd.DataFrame:
    """The per-pair rows of one map: orthogonal where it ran."""
    maps = maps_of(pairs)
    return pairs[pairs["map"] == maps[0]] if maps else pairs


def gradience_tables(pairs: pd.DataFrame, d_model: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(IIA by base × source value, GRU Multi-Object at d_model; IIA by |base − source| per d_model)."""
    gru = where(first_map(pairs), arch="gru", task="multi_object", variant="default")
    grid = (where(gru, d_model=d_model).groupby(["base_value", "source_value"], as_index=False)
            .agg(iia=("correct", "mean"), pairs=("correct", "size")))
    diff = gru.groupby(["d_model", "abs_diff"], as_index=False).agg(iia=("correct", "mean"), pairs=("correct", "size"))
    return grid, diff


def phase_pairs_table(pairs: pd.DataFrame, d_model: int = 20) -> pd.DataFrame:
    """Up-Down count IIA by the phase of t × the phase of u, per arch, task and map (seeds pooled)."""
    sel = where(pairs, d_model=d_model, variant="default")
    if sel.empty:
        return pd.DataFrame(columns=["arch", "task", "map", "phase_t", "phase_u", "iia", "pairs"])
    table = sel.groupby(["arch", "task", "map", "phase_t", "phase_u"], as_index=False).agg(
        iia=("correct", "mean"), pairs=("correct", "size"))
    return order(table)


def signed_error_table(pairs: pd.DataFrame, d_model: int = 20) -> pd.DataFrame:
    """How far off the failed pairs' free-running responses are: per arch (model family) and map, the
    number of failed pairs with each signed error (model − program response length)."""
    sel = where(pairs, d_model=d_model, variant="default")
    failed = sel[~sel["correct"].astype(bool)]
    if failed.empty:
        return pd.DataFrame(columns=["arch", "map", "signed_error", "pairs", "fraction"])
    table = failed.groupby(["arch", "map", "signed_error"], as_index=False).agg(pairs=("correct", "size"))
    table["fraction"] = table["pairs"] / table.groupby(["arch", "map"])["pairs"].transform("sum")
    return order(table)


def oor_table(oor: pd.DataFrame, d_model: int = 20) -> pd.DataFrame:
    """Trial accuracy by count (1..30) per arch × task at d_model, variant default: mean and CI over seeds."""
    return order(summarize(where(oor, d_model=d_model, variant="default"), ["arch", "task", "count"],
                            value="accuracy"))


def dropped_table(runs: pd.DataFrame) -> pd.DataFrame:
    cols = ["run_name", "arch", "task", "variant", "d_model", "seed", "epochs", "trial_accuracy", "run_dir"]
    return order(runs.loc[~runs["reached_criterion"], cols])


