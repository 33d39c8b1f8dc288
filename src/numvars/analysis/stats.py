"""Statistics over seeds: means with confidence intervals, correlations, per-group summaries."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

STATS = ("mean", "ci_low", "ci_high", "n", "interval")
INTERVALS = {
    "bootstrap": "95% percentile bootstrap over seeds (10,000 resamples)",
    "range": "the range of the two seeds (too few for an interval)",
    "none": "one seed: no interval",
}
BOOTSTRAP_RESAMPLES = 10_000


def mean_ci(values, confidence: float = 0.95, seed: int = 0) -> dict:
    """Mean over seeds with an interval that stays inside the values' own range (so inside [0, 1] for
    fractions) and fits the number of seeds: a percentile bootstrap with 3 or more seeds, the range
    of the two with 2, nothing with 1. `interval` names which (see INTERVALS)."""
    x = np.asarray(pd.Series(values, dtype=float).dropna())
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "ci_low": math.nan, "ci_high": math.nan, "n": n, "interval": "none"}
    if n == 2:
        return {"mean": mean, "ci_low": float(x.min()), "ci_high": float(x.max()), "n": n, "interval": "range"}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(n, size=(BOOTSTRAP_RESAMPLES, n))].mean(1)
    low, high = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return {"mean": mean, "ci_low": float(low), "ci_high": float(high), "n": n, "interval": "bootstrap"}


def pearson(x, y) -> tuple[float, float]:
    """(r, p) of scipy.stats.pearsonr, or (NaN, NaN) with fewer than 3 points or a constant input."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    r, p = stats.pearsonr(x, y)
    return float(r), float(p)


def summarize(df: pd.DataFrame, keys: list[str], value: str = "iia") -> pd.DataFrame:
    """One row per group of `keys`: the value averaged per run first, then mean and CI over runs."""
    if df.empty:      # keep the key dtypes, so merging this with a non-empty table still works
        return df[keys].iloc[:0].assign(**{s: pd.Series(dtype=object if s == "interval" else float) for s in STATS})
    per_run = df.groupby([*keys, "run_name"], as_index=False, dropna=False)[value].mean()
    rows = [{**dict(zip(keys, group)), **mean_ci(g[value])}
            for group, g in per_run.groupby(keys, dropna=False, sort=True)]
    return pd.DataFrame(rows, columns=[*keys, *STATS])
