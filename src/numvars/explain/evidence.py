"""The evidence of one run beyond its alignments' own IIA: what a reviewer asks before believing a verdict.

For each target (a program's core variable) and its best fitted alignment (by validation IIA over sites,
maps and k), on `n_eval` fresh pairs:
- `learned`: the alignment's verdict and log-probability of the expected continuation on every pair;
- `random`: the same swap through random subspaces of the same size at the same site (`random_seeds` of
  them): the matched random control, which answers "could any k-dim subspace do this?";
- `isolation`: on pairs where the source holds the same value of the variable but differs elsewhere (the
  phase, the other counter), the program predicts no change; the share of unchanged continuations says
  whether the subspace holds the variable and nothing else;
- `untrained` / `learned_test`: the untrained copy's fit (same map, site, k = d/2) and the alignment itself on
  their shared test pairs, for the paired test against that control.
For each pair of rival targets (variables of different programs): the pairs where their programs predict
different continuations, each alignment scored against its own program and against the rival's ("duels").
For Context-Distributed, the full-state swap's pairs supply the duels with every cumulative program and the
untrained copy's control.

Everything is a per-pair table, so that several runs pool by concatenation and `verdict` runs its paired
tests on the pooled pairs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import pandas as pd
import torch

from ..align.intervention import Intervention
from ..align.sites import frozen
from ..programs import make_pairs
from ..programs.counterfactual import differ, retarget
from ..programs.sampling import isolation_pairs
from .options import ExplainOptions

EVAL_SEED = 7_919            # the evidence's pairs are drawn apart from every alignment's own


@dataclass
class Record:
    """A fitted alignment of a run, as the evidence needs it."""
    program: str
    variable: str
    site: str
    map: str
    k: int
    control: str          # "none", "untrained", ...
    seed: int
    iia: float
    val_iia: float
    matrix: torch.Tensor = field(repr=False)
    frame: pd.DataFrame = field(repr=False)    # its test pairs (correct, trivial, logprob, ...)
    trials: pd.DataFrame | None = field(default=None, repr=False)   # its saved trial sample (None: none saved)


@dataclass
class Evidence:
    """Per-pair tables of one run (or, concatenated, of several: the `run` column)."""
    best: pd.DataFrame        # one row per target: program, variable, site, map, k, val_iia
    checks: pd.DataFrame      # program, variable, check, seed, pair, ok, logprob
    duels: pd.DataFrame       # program, variable, rival, rival_variable, source, pair, a_ok, b_ok, a_on_b, b_on_a
    sizes: pd.DataFrame       # program, variable, rival, rival_variable, source, pairs (all compared pairs)
    swap: dict | None = None
    attention: dict | None = None

    def frames(self) -> dict[str, pd.DataFrame]:
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), pd.DataFrame)}

    @classmethod
    def pool(cls, parts: list["Evidence"]) -> "Evidence":
        """Several runs' evidence as one (a `run` column tells them apart)."""
        frames = {name: pd.concat([getattr(p, name).assign(run=i) for i, p in enumerate(parts)], ignore_index=True)
                  for name in ("best", "checks", "duels", "sizes")}
        swaps = [p.swap for p in parts if p.swap]
        tests = [p.attention for p in parts if p.attention]
        swap = swaps[0] if len(swaps) == 1 else None if not swaps else {
            "site": swaps[0]["site"], "runs": len(swaps),
            "iia_by_program": {k: sum(s["iia_by_program"][k] for s in swaps) / len(swaps)
                               for k in swaps[0]["iia_by_program"]}}
        attention = None if not tests else {
            "accuracy": {e: sum(t["accuracy"][e] for t in tests) / len(tests) for e in tests[0]["accuracy"]},
            "base_accuracy": sum(t["base_accuracy"] for t in tests) / len(tests), "layers": tests[0]["layers"],
            "n": sum(t["n"] for t in tests)}
        return cls(**frames, swap=swap, attention=attention)


def best_records(records: list[Record]) -> dict[tuple[str, str], Record]:
    """Per (program, variable): the learned alignment with the best validation IIA (then test IIA, then the
    smaller k)."""
    out = {}
    for r in sorted((r for r in records if r.control == "none"), key=lambda r: (-r.val_iia, -r.iia, r.k)):
        out.setdefault((r.program, r.variable), r)
    return out


def collect(model, task, o: ExplainOptions, programs: dict, records: list[Record], swap_frames: dict | None = None,
            swap_summary: dict | None = None, attention: dict | None = None) -> Evidence:
    """The evidence of one run (see the module docstring). `swap_frames`: control ("none", "untrained") ->
    the full swap's per-pair frame (every tested program's rows, in one pair order)."""
    best = best_records(records)
    checks, duels, sizes, eval_pairs, handles = [], [], [], {}, {}
    with frozen(model, o.device):
        for (program, variable), r in best.items():
            handle = Intervention.fitted(model, r.site, r.map, r.matrix, r.k, 1, o.device)
            pairs = make_pairs(task, _spec(programs, program), variable, o.n_eval, o.seed + EVAL_SEED,
                               positions=o.positions)
            eval_pairs[(program, variable)], handles[(program, variable)] = pairs, handle
            checks += _controls(model, task, o, programs, r, handle, pairs, records)
        keys = list(best)
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                if a[0] != b[0]:
                    found = _duel(task, programs, a, b, handles, eval_pairs)
                    if found is not None:
                        duels.append(found[0])
                        sizes.append(found[1])
    swap = None
    if swap_frames:
        swap_checks, swap_duels, swap_sizes = _swap_evidence(swap_frames, programs)
        checks.append(swap_checks)
        duels += swap_duels
        sizes += swap_sizes
        swap = swap_summary
    best_frame = pd.DataFrame([{"program": r.program, "variable": r.variable, "site": r.site, "map": r.map,
                                "k": r.k, "val_iia": r.val_iia, "iia": r.iia} for r in best.values()],
                              columns=["program", "variable", "site", "map", "k", "val_iia", "iia"])
    return Evidence(best_frame, _cat(checks, CHECK_COLUMNS), _cat(duels, DUEL_COLUMNS), _cat(sizes, SIZE_COLUMNS),
                    swap, attention)


CHECK_COLUMNS = ["program", "variable", "check", "seed", "pair", "ok", "logprob"]
DUEL_COLUMNS = ["program", "variable", "rival", "rival_variable", "source", "pair", "a_ok", "b_ok", "a_on_b",
                "b_on_a"]
SIZE_COLUMNS = ["program", "variable", "rival", "rival_variable", "source", "pairs"]


def _cat(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def _spec(programs: dict, name: str):
    return programs.get(name, name)


def _rows(program: str, variable: str, check: str, scores, seed: int = 0) -> pd.DataFrame:
    n = len(scores.correct)
    return pd.DataFrame({"program": program, "variable": variable, "check": check, "seed": seed,
                         "pair": range(n), "ok": scores.correct.numpy(), "logprob": scores.logprob.numpy()})


def _controls(model, task, o, programs, r: Record, handle: Intervention, pairs, records) -> list[pd.DataFrame]:
    """The learned alignment on the fresh pairs beside random subspaces; isolation; the untrained copy."""
    out = [_rows(r.program, r.variable, "learned", handle.evaluate(pairs))]
    for s in range(o.random_seeds):
        control = Intervention.random(model, r.site, r.k, o.seed + 101 + s, o.device)
        out.append(_rows(r.program, r.variable, "random", control.evaluate(pairs), seed=s))
    alone = isolation_pairs(task, _spec(programs, r.program), r.variable, o.n_eval, o.seed + EVAL_SEED + 1,
                            positions=o.positions)
    if len(alone):
        out.append(_rows(r.program, r.variable, "isolation", handle.evaluate(alone)))
    untrained = [u for u in records if (u.program, u.variable, u.site, u.map, u.control) ==
                 (r.program, r.variable, r.site, r.map, "untrained")]
    if untrained and len(untrained[0].frame) == len(r.frame):           # the same test pairs (same seed, sizes)
        for name, frame in (("learned_test", r.frame), ("untrained", untrained[0].frame)):
            out.append(pd.DataFrame({"program": r.program, "variable": r.variable, "check": name, "seed": 0,
                                     "pair": range(len(frame)), "ok": frame["correct"].to_numpy(),
                                     "logprob": frame.get("logprob", pd.Series(float("nan"), index=frame.index))
                                     .to_numpy()}))
    return out


def _duel(task, programs, a: tuple, b: tuple, handles: dict, eval_pairs: dict):
    """Two rival variables on the pairs (a's fresh pairs) where their programs predict differently: each
    alignment scored against its own program's continuation and against the rival's."""
    mine = eval_pairs[a]
    theirs = retarget(mine, _spec(programs, b[0]), b[1], task)
    split = differ(mine, theirs)
    if not split.any():
        return None
    idx = split.nonzero()[:, 0]
    mine, theirs = mine.select(idx), theirs.select(idx)
    ha, hb = handles[a], handles[b]
    frame = pd.DataFrame({"program": a[0], "variable": a[1], "rival": b[0], "rival_variable": b[1], "source": "das",
                          "pair": idx.numpy(), "a_ok": ha.evaluate(mine).correct.numpy(),
                          "b_ok": hb.evaluate(theirs).correct.numpy(), "a_on_b": ha.evaluate(theirs).correct.numpy(),
                          "b_on_a": hb.evaluate(mine).correct.numpy()})
    size = pd.DataFrame([{"program": a[0], "variable": a[1], "rival": b[0], "rival_variable": b[1], "source": "das",
                          "pairs": len(split)}])
    return frame, size


def _swap_evidence(frames: dict, programs: dict) -> tuple[pd.DataFrame, list, list]:
    """The full swap as evidence for a program without variables (Context-Distributed): its verdicts beside
    the untrained copy's on the same pairs, and its duels with every cumulative program on the pairs where
    that program predicts a change."""
    on = frames["none"]
    first = on["program"].iloc[0]
    mine = on[on["program"] == first].reset_index(drop=True)
    checks = [pd.DataFrame({"program": first, "variable": "(full swap)", "check": "swap", "seed": 0,
                            "pair": range(len(mine)), "ok": mine["correct"].to_numpy(), "logprob": float("nan")})]
    if "untrained" in frames:
        off = frames["untrained"]
        off = off[off["program"] == first].reset_index(drop=True)
        checks.append(pd.DataFrame({"program": first, "variable": "(full swap)", "check": "swap_untrained",
                                    "seed": 0, "pair": range(len(off)), "ok": off["correct"].to_numpy(),
                                    "logprob": float("nan")}))
    duels, sizes = [], []
    for rival in dict.fromkeys(on["program"]):
        if rival == first or rival not in programs or not programs[rival].variables:
            continue
        theirs = on[on["program"] == rival].reset_index(drop=True)
        split = ~theirs["trivial"].astype(bool).to_numpy()            # the rival predicts a change
        duels.append(pd.DataFrame({"program": first, "variable": "(full swap)", "rival": rival,
                                   "rival_variable": "(all)", "source": "swap", "pair": split.nonzero()[0],
                                   "a_ok": mine["correct"].to_numpy()[split], "b_ok": theirs["correct"].to_numpy()[split],
                                   "a_on_b": theirs["correct"].to_numpy()[split],
                                   "b_on_a": mine["correct"].to_numpy()[split]}))
        sizes.append(pd.DataFrame([{"program": first, "variable": "(full swap)", "rival": rival,
                                    "rival_variable": "(all)", "source": "swap", "pairs": len(split)}]))
    return pd.concat(checks, ignore_index=True), duels, sizes
