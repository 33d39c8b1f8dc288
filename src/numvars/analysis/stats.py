"""Statistics over seeds for the analysis tables: per-group summaries (the statistics themselves live in
`numvars.stats`)."""
from __future__ import annotations

import pandas as pd

from ..stats import INTERVALS, mean_ci, pearson

__all__ = ["INTERVALS", "STATS", "mean_ci", "pearson", "summarize"]

STATS = ("mean", "ci_low", "ci_high", "n", "interval")


def summarize(df: pd.DataFrame, keys: list[str], value: str = "iia") -> pd.DataFrame:
    """One row per group of `keys`: the value averaged per run first, then mean and CI over runs."""
    if df.empty:      # keep the key dtypes, so merging this with a non-empty table still works
        return df[keys].iloc[:0].assign(**{s: pd.Series(dtype=object if s == "interval" else float) for s in STATS})
    per_run = df.groupby([*keys, "run_name"], as_index=False, dropna=False)[value].mean()
    rows = [{**dict(zip(keys, group)), **mean_ci(g[value])}
            for group, g in per_run.groupby(keys, dropna=False, sort=True)]
    return pd.DataFrame(rows, columns=[*keys, *STATS])
