"""The decision rule of `explain`: which program's variables a network holds, from the alignment table.

A variable is *found* when its best alignment (the site, map and k with the highest validation IIA)
reaches `accept` IIA on non-trivial test pairs AND beats the better of its controls (the same DAS on
an untrained copy; a fixed random rotation) by at least `margin`. A program with variables *fits*
when every one of its core variables is found (its `core`, by default all of them; Up-Down's is
count, Up-Up's demo_count and resp_count: phase is bookkeeping). Context-Distributed, which stores
nothing, fits when the full-state swap beats the untrained copy's by `margin` and either leaves at
least `accept` of continuations as the program says, or the attention test (positive evidence of
re-reading the context) moves the EOS by exactly one position in at least `accept` of trials for
both edits. Fitting programs are ranked first — more separately stored
variables first (Up-Up's two counts are a finer description than their difference, Up-Down's
count), then by mean IIA; then the others by mean IIA. No fitting program: "no program fits".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Rule:
    accept: float = 0.6
    margin: float = 0.3


@dataclass
class VariableEvidence:
    program: str
    variable: str
    site: str
    map: str
    k: int
    iia: float
    ci: tuple[float, float]
    nontrivial: float
    untrained: float
    random: float
    found: bool
    k_curve: dict = field(default_factory=dict)       # map -> {k: iia}

    @property
    def margin(self) -> float:
        return self.iia - max(_z(self.untrained), _z(self.random))


@dataclass
class ProgramVerdict:
    program: str
    fits: bool
    score: float
    n_stored: int
    evidence: list[VariableEvidence]
    text: str


def _fmt(x) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{x:.2f}"


def _z(x: float) -> float:
    return 0.0 if x is None or np.isnan(x) else float(x)


def best_alignments(table: pd.DataFrame) -> pd.DataFrame:
    """Per (program, variable): the control-free alignment with the best mean validation IIA."""
    learned = table[table["control"] == "none"]
    order = learned.sort_values(["val_iia", "iia", "k"], ascending=[False, False, True])
    return order.groupby(["program", "variable"], sort=False).head(1)


def variable_evidence(table: pd.DataFrame, rule: Rule) -> list[VariableEvidence]:
    out = []
    for row in best_alignments(table).itertuples():
        same = table[(table["program"] == row.program) & (table["variable"] == row.variable)
                     & (table["site"] == row.site)]
        untrained = same[(same["control"] == "untrained") & (same["map"] == row.map)]["iia"].max()
        random = same[same["control"] == "random"]["iia"].max()
        curve = {m: dict(zip(g["k"], g["iia"])) for m, g in same[same["control"] == "none"].groupby("map")}
        ev = VariableEvidence(row.program, row.variable, row.site, row.map, int(row.k), row.iia,
                              (row.ci_low, row.ci_high), row.iia_nontrivial, untrained, random, False, curve)
        nontrivial = ev.nontrivial if not np.isnan(ev.nontrivial) else ev.iia
        ev.found = bool(nontrivial >= rule.accept and ev.margin >= rule.margin)
        out.append(ev)
    return out


def smallest_k(ev: VariableEvidence, slack: float = 0.02) -> int:
    """The smallest k whose IIA (same map) is within `slack` of the best: the subspace's size."""
    curve = ev.k_curve.get(ev.map, {})
    good = [k for k, v in curve.items() if v >= ev.iia - slack]
    return int(min(good)) if good else ev.k


def judge(table: pd.DataFrame, swap: dict | None, attention: dict | None, programs: dict, rule: Rule) \
        -> list[ProgramVerdict]:
    """Verdicts for every program, ranked; `programs` maps name -> Program (for `core`)."""
    evidence = variable_evidence(table, rule) if len(table) else []
    verdicts = []
    for name, program in programs.items():
        if program.variables:
            mine = [e for e in evidence if e.program == name]
            core = [e for e in mine if e.variable in (getattr(program, "core", None) or program.variables)]
            fits = bool(core) and all(e.found for e in core)
            score = float(np.mean([e.iia for e in core])) if core else float("nan")
            verdicts.append(ProgramVerdict(name, fits, score, len(core) if fits else 0, mine,
                                           _cumulative_text(name, core, fits)))
        elif swap is not None:
            verdicts.append(_distributed(name, swap, attention, rule))
    return sorted(verdicts, key=lambda v: (not v.fits, -v.n_stored, -_z(v.score)))


def _distributed(name: str, swap: dict, attention: dict | None, rule: Rule) -> ProgramVerdict:
    iia, untrained = swap["iia"], swap.get("untrained", float("nan"))
    beats = iia - _z(untrained) >= rule.margin
    moved = attention is not None and min(attention["accuracy"].values()) >= rule.accept
    fits = bool(beats and (iia >= rule.accept or moved))
    extra = ""
    if attention:
        acc = attention["accuracy"]
        extra = f"; attention test: one more / one fewer demo token moves the EOS by ±1 in " \
                f"{acc['add']:.2f} / {acc['remove']:.2f} of trials"
    verb = "fits" if fits else "does not fit"
    text = (f"{name} {verb}: the full-state swap at {swap['site']} leaves {iia:.2f} of continuations as a "
            f"context-reading program predicts (untrained copy {_fmt(untrained)}){extra}")
    return ProgramVerdict(name, fits, iia, 1 if fits else 0, [], text)


def _cumulative_text(name: str, core: list[VariableEvidence], fits: bool) -> str:
    if not core:
        return f"{name}: not aligned"
    parts = []
    for e in core:
        parts.append(f"{e.variable} {'is held in' if e.found else 'not found; best'} a {smallest_k(e)}-dim subspace "
                     f"at {e.site} ({e.map} map): IIA {e.iia:.2f} [{e.ci[0]:.2f}, {e.ci[1]:.2f}], non-trivial "
                     f"{_fmt(e.nontrivial)}, untrained {_fmt(e.untrained)}, random rotation {_fmt(e.random)}")
    head = f"{name} fits" if fits else f"{name} rejected"
    return head + ": " + "; ".join(parts)


def sentence(verdicts: list[ProgramVerdict]) -> str:
    """The one-paragraph verdict: the best fitting program with its evidence, and why the others fail."""
    fitting = [v for v in verdicts if v.fits]
    if not fitting:
        return "No program fits: no program has every core variable found (above the accept threshold and its " \
               "controls by the margin). " + " ".join(
            f"{v.text}." for v in verdicts)
    best, rest = fitting[0], [v for v in verdicts if v is not fitting[0]]
    return f"Best explanation — {best.text}. Others: " + " ".join(f"{v.text}." for v in rest)
