"""Statistics a researcher can trust, in one place: intervals over seeds, over runs and pairs, and paired
tests between two interventions scored on the same pairs.

- `mean_ci`: a mean over seeds with an interval that fits the number of seeds (bootstrap, range or none);
- `pooled_ci`: an IIA pooled over runs (and DAS seeds), resampling runs, then pairs within each;
- `mcnemar`: the exact McNemar test of two per-pair verdicts on the same pairs (which one is right more
  often where they disagree), one- and two-sided;
- `paired_diff`: the mean difference of two per-pair scores on the same pairs, with a paired bootstrap interval;
- `pearson`: Pearson's r and its p-value, NaN where undefined.
Every interval is a percentile interval of means of values in [0, 1] (or of their differences), so it stays
inside [0, 1] (or [−1, 1]).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

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


def pooled_ci(groups: list, n: int = 2000, seed: int = 0, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of per-group means, resampling groups (runs, or run × DAS seed)
    and then the items (pairs) within each group; with one group, a bootstrap over its pairs."""
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(n)
    for b in range(n):
        picked = [groups[i] for i in rng.integers(len(groups), size=len(groups))]
        means[b] = np.mean([g[rng.integers(len(g), size=len(g))].mean() for g in picked])
    low, high = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return float(low), float(high)


def mcnemar(a, b) -> dict:
    """Exact McNemar test of two per-pair verdicts (bool arrays) on the same pairs. `a_only`/`b_only`: pairs
    only a (only b) gets right; `p_greater`: one-sided p that a is right more often; `p`: two-sided."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    n = a_only + b_only
    if n == 0:
        return {"a_only": 0, "b_only": 0, "p_greater": 1.0, "p": 1.0}
    greater = stats.binomtest(a_only, n, 0.5, alternative="greater").pvalue
    two = stats.binomtest(a_only, n, 0.5, alternative="two-sided").pvalue
    return {"a_only": a_only, "b_only": b_only, "p_greater": float(greater), "p": float(two)}


def paired_diff(a, b, n: int = 2000, seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean of a − b, low, high): the mean difference of per-pair scores on the same pairs and its paired
    percentile-bootstrap interval (NaNs where there are no pairs)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if not len(d):
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = d[rng.integers(len(d), size=(n, len(d)))].mean(1)
    low, high = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return float(d.mean()), float(low), float(high)


def pearson(x, y) -> tuple[float, float]:
    """(r, p) of scipy.stats.pearsonr, or (NaN, NaN) with fewer than 3 points or a constant input."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    r, p = stats.pearsonr(x, y)
    return float(r), float(p)
