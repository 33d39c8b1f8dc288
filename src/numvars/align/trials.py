"""A bounded sample of an alignment's test trials, token by token, saved beside its result (trials.parquet).

Each saved trial holds the base and source sequences, the swap positions t and u, the continuation the
alignment was scored on (the aligned program's counterfactual), the model's continuation (teacher-forced,
as IIA judges it, and free-running), the log-probability of each expected token, and what every other
built-in program predicts for the same swap (`programs.counterfactual.retarget`: same sequences, positions
and extra demo tokens). A trial is *distinguishing* when the aligned program's continuation differs from
that of at least one rival program with variables (Up-Down against Up-Up, say): the pairs on which the
programs can be told apart. Context-Distributed's prediction for a partial swap is the base's own
continuation, so where it differs the trial is simply non-trivial.

`choose` picks at most MAX_TRIALS pairs deterministically: failures and distinguishing pairs first (each up
to a third of the sample, spread evenly over the test pairs), the rest filled with the other pairs in order.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from ..loaders import TRIALS as COLUMNS
from ..programs import PROGRAMS, Pairs, get_program
from ..programs.counterfactual import differ, retarget
from ..tasks import PAD, Task

MAX_TRIALS = 300             # trials kept per alignment


def choose(failed: np.ndarray, distinguishing: np.ndarray, limit: int = MAX_TRIALS) -> np.ndarray:
    """Sorted indices of at most `limit` trials: up to a third failures, up to a third distinguishing pairs
    (each spread evenly over the pairs that are), then the remaining pairs in order; deterministic."""
    failed, distinguishing = np.asarray(failed, bool), np.asarray(distinguishing, bool)
    n = len(failed)
    if n <= limit:
        return np.arange(n)
    taken = np.zeros(n, dtype=bool)
    for wanted in (failed, distinguishing):
        pool = np.flatnonzero(wanted & ~taken)
        quota = min(len(pool), limit // 3)
        taken[pool[np.linspace(0, len(pool) - 1, quota).round().astype(int)] if quota else []] = True
    rest = np.flatnonzero(~taken)[:limit - int(taken.sum())]
    taken[rest] = True
    return np.flatnonzero(taken)


def cut(trials: pd.DataFrame, limit: int = MAX_TRIALS) -> pd.DataFrame:
    """A saved sample (or several pooled) cut down to `limit` trials the way `choose` picks them."""
    if len(trials) <= limit:
        return trials
    pick = choose(~trials["correct"].to_numpy(bool), trials["distinguishing"].to_numpy(bool), limit)
    return trials.iloc[pick].reset_index(drop=True)


def rival_predictions(pairs: Pairs, program: str, task: Task) -> dict[str, Pairs]:
    """name -> the same swap under each other built-in program: one per core variable (`up_up.demo_count`),
    or the whole program when it has no variables (`ctx_distributed`: nothing to swap, no change)."""
    out = {}
    for name in PROGRAMS:
        if name == program:
            continue
        rival = get_program(name)
        for variable in (rival.core or rival.variables) or (None,):
            label = name if variable is None else f"{name}.{variable}"
            out[label] = retarget(pairs, rival, () if variable is None else variable, task)
    return out


def distinguishing(pairs: Pairs, rivals: dict[str, Pairs]) -> torch.Tensor:
    """(N,) True where a rival program with variables predicts another continuation than the aligned one."""
    out = torch.zeros(len(pairs), dtype=torch.bool)
    for label, theirs in rivals.items():
        if "." in label:
            out |= differ(pairs, theirs)
    return out


def sample(pairs: Pairs, frame: pd.DataFrame, scores, task: Task, program: str, label: str,
           limit: int = MAX_TRIALS) -> pd.DataFrame:
    """The saved sample of a scored test set: `frame` is its per-pair table (`search.pair_frame`), `scores`
    its `scoring.Scores`, `label` the aligned program's name for its own predictions (`up_down.count`)."""
    rivals = rival_predictions(pairs, program, task)
    split = distinguishing(pairs, rivals).numpy()
    pick = choose(~frame["correct"].to_numpy(bool), split, limit)
    names = {i: n for n, i in task.vocab.items()}
    words = lambda ids, upto: " ".join(names.get(int(i), "?") for i in ids[:upto])  # noqa: E731
    rows = []
    for i in pick:
        width = int((pairs.cont_roles[i] != PAD).sum())
        scored = pairs.scored[i, :width]
        lp = scores.token_logprob[i, :width] if scores.token_logprob is not None else None
        rows.append({
            "pair": int(i), "base": words(pairs.base[i], int((pairs.base[i] != PAD).sum())),
            "source": words(pairs.source[i], int((pairs.source[i] != PAD).sum())),
            "expected": words(pairs.cont[i], width), "scored": "".join("1" if s else "0" for s in scored.tolist()),
            "model": words(scores.predicted[i], width) if scores.predicted is not None else "",
            "model_free": words(scores.free_tokens[i], width) if scores.free_tokens is not None else "",
            "token_logprob": "" if lp is None else " ".join(f"{float(v):.3f}" if s else "-"
                                                           for v, s in zip(lp.tolist(), scored.tolist())),
            "predictions": json.dumps({label: words(pairs.cont[i], width),
                                       **{k: words(p.cont[i], int((p.cont_roles[i] != PAD).sum()))
                                          for k, p in rivals.items()}}),
            "distinguishing": bool(split[i])})
    keep = ["variable", "t", "u", "base_count", "source_count", "base_value", "source_value", "phase_t", "phase_u",
            "trivial", "correct", "correct_free", "logprob"]
    info = frame.iloc[pick][[c for c in keep if c in frame]].reset_index(drop=True)
    out = pd.concat([pd.DataFrame(rows, columns=["pair", "base", "source", "expected", "scored", "model",
                                                 "model_free", "token_logprob", "predictions", "distinguishing"]),
                     info], axis=1)
    if "logprob" not in out:
        out["logprob"] = np.nan
    return out[list(COLUMNS)]
