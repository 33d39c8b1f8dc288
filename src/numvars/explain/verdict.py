"""The decision rule of `explain`: which program a network runs, how sure we are, and why.

1. A variable of a program is *found* when its best alignment (the site, map and k with the best validation
   IIA) beats every control by at least `margin` IIA, significantly (one-sided exact McNemar test on the
   same pairs, p < `alpha`): the same DAS on an untrained copy (per map family), and random subspaces of the
   same size at the same site. Context-Distributed, which stores nothing, is found when the full-state swap
   beats the untrained copy's swap the same way.
2. A program *stands* when all its core variables are found (Up-Down's count; Up-Up's demo_count and
   resp_count; phase is bookkeeping).
3. Rival programs are compared only where they disagree: on the pairs where their predicted continuations
   differ, each variable's alignment is scored against its own program (for Context-Distributed, the full
   swap against both programs' predictions). A side wins a duel when it is right there more often by at
   least `margin`, significantly (exact McNemar, p < `alpha`). A program that loses a duel to a found rival
   variable is *refuted*.
4. The named program is the standing, unrefuted one. Several such (neither beats the other where they
   disagree): the one storing more separate variables is named (the finer description the evidence
   allows), and the verdict says the other fits as well. More stored variables never outrank a rival that
   wins a duel.
5. Grades: *strong* when it is the only standing, unrefuted program and every core variable reaches `strong`
   non-trivial IIA (Context-Distributed: full-swap IIA or both attention-test edits at `strong`); *partial*
   otherwise; else "no program fits". A network whose alignments do no better than an untrained copy's
   finds no variable, so an untrained network never gets a verdict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..stats import mcnemar, paired_diff

LINEAR_GAP = 0.2             # how far the best rotation must fall below a linear map for "only a linear map"
NAMES = {"up_down": "Up-Down", "up_up": "Up-Up", "ctx_distributed": "Context-Distributed"}
SWAP = "(full swap)"


def title(program: str) -> str:
    return NAMES.get(program, program)


@dataclass(frozen=True)
class Rule:
    margin: float = 0.1
    strong: float = 0.8
    alpha: float = 0.01


@dataclass
class Control:
    name: str           # "untrained copy", "random subspace", "untrained copy's swap"
    iia: float          # its IIA (random subspaces: the mean over seeds)
    low: float          # the range over seeds (random subspaces), else = iia
    high: float
    learned: float      # the learned alignment's IIA on the same pairs
    p: float            # one-sided p that the learned alignment beats it (random: the largest over seeds)
    pairs: int
    logprob: float = math.nan
    learned_logprob: float = math.nan

    def to_json(self) -> dict:
        return {k: _f(v) for k, v in vars(self).items()}


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
    logprob: float
    controls: list[Control]
    isolation: float
    isolation_pairs: int
    per_map: dict           # map -> best IIA with that map
    k_curve: dict           # map -> {k: IIA}
    found: bool = False

    @property
    def needs_linear(self) -> bool:
        """Found with a general linear map while no rotation comes within the margin of it (see `describe`)."""
        return self.map == "linear" and self.per_map.get("orthogonal", math.nan) < self.iia - LINEAR_GAP

    @property
    def margin(self) -> float:
        """IIA above the strongest control (on each control's own pairs)."""
        return min((c.learned - c.high for c in self.controls), default=math.nan)

    def to_json(self) -> dict:
        out = {k: _f(v) for k, v in vars(self).items() if k not in ("controls", "ci", "per_map", "k_curve")}
        return {**out, "ci": [_f(c) for c in self.ci], "controls": [c.to_json() for c in self.controls],
                "needs_linear": self.needs_linear,
                "margin": _f(self.margin), "per_map": {m: _f(v) for m, v in self.per_map.items()},
                "k_curve": {m: {str(k): _f(v) for k, v in c.items()} for m, c in self.k_curve.items()}}


@dataclass
class Duel:
    program: str
    variable: str
    rival: str
    rival_variable: str
    source: str             # das (each side's alignment) or swap (the full swap against both predictions)
    pairs: int              # pairs compared
    distinguishing: int     # of which the programs predict different continuations
    iia: float              # on those pairs: the first side against its own program
    rival_iia: float
    p: float                # two-sided exact McNemar
    p_first: float          # one-sided: the first side is right more often
    p_rival: float
    diff: float             # iia − rival_iia with its paired-bootstrap 95% interval
    diff_low: float
    diff_high: float
    agreement: float        # target-minus-alternative agreement of the first side's intervention
    rival_agreement: float
    winner: str | None = None       # "program", "rival" or None (no significant difference)

    def to_json(self) -> dict:
        return {k: _f(v) for k, v in vars(self).items()}


@dataclass
class ProgramVerdict:
    program: str
    grade: str                  # strong, partial or none
    standing: bool
    refuted_by: list[str]
    score: float
    n_stored: int
    evidence: list[VariableEvidence]
    duels: list[Duel]
    text: str = ""
    headline: str = ""
    swap: dict | None = None    # Context-Distributed: the full swap and the attention test

    @property
    def fits(self) -> bool:
        """Named (strong or partial); "also" marks a program that fits as well but is not named."""
        return self.grade in ("strong", "partial")


def _f(x):
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(x) else float(x)
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    return x


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


# --- evidence per variable ---------------------------------------------------------------------------------

def _control(name: str, learned: pd.DataFrame, other: pd.DataFrame, seeds: bool = False) -> Control:
    """The learned alignment against a control scored on the same pairs (per seed for random subspaces)."""
    groups = list(other.groupby(["run", "seed"])) if seeds else [(None, other)]
    values, ps, logps = [], [], []
    for _, g in groups:
        mine = learned.merge(g[["run", "pair", "ok", "logprob"]], on=["run", "pair"], suffixes=("", "_c"))
        values.append(float(mine["ok_c"].mean()))
        ps.append(mcnemar(mine["ok"], mine["ok_c"])["p_greater"])
        logps.append(float(mine["logprob_c"].mean()))
    return Control(name, float(np.mean(values)), min(values), max(values), float(learned["ok"].mean()), max(ps),
                   len(learned), float(np.mean(logps)), float(learned["logprob"].mean()))


def variable_evidence(table: pd.DataFrame, ev, rule: Rule) -> list[VariableEvidence]:
    out = []
    pooled = table[table["control"] == "none"]
    for b in ev.best.drop_duplicates(["program", "variable"]).itertuples():    # the first run's best: evidence's
        rows = pooled[(pooled["program"] == b.program) & (pooled["variable"] == b.variable)]
        best = rows[(rows["site"] == b.site) & (rows["map"] == b.map) & (rows["k"] == b.k)].iloc[0]
        c = ev.checks[(ev.checks["program"] == b.program) & (ev.checks["variable"] == b.variable)]
        get = lambda name: c[c["check"] == name]                              # noqa: E731
        controls = []
        if len(get("untrained")):
            controls.append(_control("untrained copy", get("learned_test"), get("untrained")))
        if len(get("random")):
            controls.append(_control("random subspace", get("learned"), get("random"), seeds=True))
        iso = get("isolation")
        site_rows = rows[rows["site"] == best["site"]]
        e = VariableEvidence(b.program, b.variable, best["site"], best["map"], int(best["k"]), float(best["iia"]),
                             (float(best["ci_low"]), float(best["ci_high"])), float(best["iia_nontrivial"]),
                             float(best.get("logprob", math.nan)), controls,
                             float(iso["ok"].mean()) if len(iso) else math.nan, len(iso),
                             {m: float(g["iia"].max()) for m, g in rows.groupby("map")},
                             {m: dict(zip(g["k"].astype(int), g["iia"])) for m, g in site_rows.groupby("map")})
        e.found = bool(controls) and all(x.learned - x.high >= rule.margin and x.p < rule.alpha for x in controls)
        out.append(e)
    return out


def swap_evidence(ev, attention: dict | None, rule: Rule) -> tuple[bool, bool, list[Control]]:
    """(found, strong, controls) of the program without variables, from the full swap and the attention test."""
    c = ev.checks[ev.checks["variable"] == SWAP]
    on, off = c[c["check"] == "swap"], c[c["check"] == "swap_untrained"]
    if not len(on):
        return False, False, []
    controls = [_control("untrained copy's swap", on, off)] if len(off) else []
    iia = float(on["ok"].mean())
    found = (all(x.learned - x.high >= rule.margin and x.p < rule.alpha for x in controls) if controls
             else iia >= rule.margin)
    moved = attention is not None and min(attention["accuracy"].values()) >= rule.strong
    return found, found and (iia >= rule.strong or moved), controls


# --- duels ---------------------------------------------------------------------------------------------------

def duels(ev, rule: Rule) -> list[Duel]:
    out = []
    keys = ["program", "variable", "rival", "rival_variable", "source"]
    sizes = ev.sizes.groupby(keys)["pairs"].sum()
    for key, g in ev.duels.groupby(keys, sort=False):
        test = mcnemar(g["a_ok"], g["b_ok"])
        flipped = mcnemar(g["b_ok"], g["a_ok"])
        diff, low, high = paired_diff(g["a_ok"], g["b_ok"])
        d = Duel(*key, int(sizes[key]), len(g), float(g["a_ok"].mean()), float(g["b_ok"].mean()), test["p"],
                 test["p_greater"], flipped["p_greater"], diff, low, high,
                 float(g["a_ok"].mean() - g["a_on_b"].mean()), float(g["b_ok"].mean() - g["b_on_a"].mean()))
        d.winner = ("program" if d.p_first < rule.alpha and d.diff >= rule.margin else
                    "rival" if d.p_rival < rule.alpha and -d.diff >= rule.margin else None)
        out.append(d)
    return out


# --- the verdicts ------------------------------------------------------------------------------------------

def judge(table: pd.DataFrame, ev, programs: dict, rule: Rule) -> list[ProgramVerdict]:
    """Every program's verdict, ranked: the named program first (see the module docstring)."""
    variables = variable_evidence(table, ev, rule) if len(ev.best) else []
    fights = duels(ev, rule)
    verdicts, found = [], {}
    for name, program in programs.items():
        if program.variables:
            core = [e for e in variables if e.program == name and e.variable in (program.core or program.variables)]
            standing = bool(core) and all(e.found for e in core)
            found.update({(name, e.variable): e.found for e in core})
            score = float(np.mean([e.iia for e in core])) if core else math.nan
            verdicts.append(ProgramVerdict(name, "none", standing, [], score, len(core), core, []))
        else:
            ok, strong, controls = swap_evidence(ev, ev.attention, rule)
            swap = {"found": ok, "strong": strong, "controls": controls, "attention": ev.attention}
            iia = controls[0].learned if controls else _swap_iia(ev)
            found[(name, SWAP)] = ok
            verdicts.append(ProgramVerdict(name, "none", ok, [], iia, 1 if ok else 0, [], [], swap=swap))
    by_name = {v.program: v for v in verdicts}
    for d in fights:                       # a duel lost to a found rival variable refutes the loser's program
        if d.winner == "program" and d.rival in by_name and _is_found(found, (d.program, d.variable), by_name):
            by_name[d.rival].refuted_by.append(d.program)
        if d.winner == "rival" and d.program in by_name and _is_found(found, (d.rival, d.rival_variable), by_name):
            by_name[d.program].refuted_by.append(d.rival)
        for name in {d.program, d.rival} & set(by_name):
            by_name[name].duels.append(d)
    return _rank(verdicts, rule)


def _swap_iia(ev) -> float:
    c = ev.checks[(ev.checks["variable"] == SWAP) & (ev.checks["check"] == "swap")]
    return float(c["ok"].mean()) if len(c) else math.nan


def _is_found(found: dict, key: tuple, by_name: dict) -> bool:
    if key[1] == "(all)":                                  # a whole program (the full swap's duels)
        return key[0] in by_name and by_name[key[0]].standing
    return found.get(key, False)


def _rank(verdicts: list[ProgramVerdict], rule: Rule) -> list[ProgramVerdict]:
    candidates = sorted((v for v in verdicts if v.standing and not v.refuted_by),
                        key=lambda v: (-v.n_stored, -_z(v.score)))
    for v in candidates:
        v.grade = "also"
    if candidates:
        named = candidates[0]
        named.grade = "strong" if len(candidates) == 1 and _strong(named, rule) else "partial"
    order = {id(v): i for i, v in enumerate(candidates)}
    ranked = sorted(verdicts, key=lambda v: (order.get(id(v), len(order)), not v.standing, -_z(v.score)))
    for v in ranked:
        v.headline, v.text = describe(v, ranked, rule)
    return ranked


def _strong(v: ProgramVerdict, rule: Rule) -> bool:
    if v.swap is not None:
        return bool(v.swap["strong"])
    return all(_z(e.nontrivial if not math.isnan(e.nontrivial) else e.iia) >= rule.strong for e in v.evidence)


def _z(x) -> float:
    return 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


# --- words -------------------------------------------------------------------------------------------------

def _n(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _controls_text(controls: list[Control]) -> str:
    parts = []
    for c in controls:
        value = _n(c.iia) if c.low == c.high else f"{_n(c.low)}–{_n(c.high)}"
        parts.append(f"{c.name} {value} ({p_text(c.p)})")
    return "controls: " + ", ".join(parts) if parts else "no controls"


def _variable_text(e: VariableEvidence) -> str:
    only = f"; only a general linear map reads it (best rotation {_n(e.per_map['orthogonal'])})" \
        if e.needs_linear else ""
    iso = f"; isolation {_n(e.isolation)} ({e.isolation_pairs} pairs)" if e.isolation_pairs else ""
    return (f"{e.variable} {'held' if e.found else 'not found; best'} in a {smallest_k(e)}-dim subspace at {e.site} "
            f"({e.map} map): IIA {_n(e.iia)} [{_n(e.ci[0])}, {_n(e.ci[1])}], non-trivial {_n(e.nontrivial)}, "
            f"log-prob {_n(e.logprob)}; {_controls_text(e.controls)}{iso}{only}")


def _duel_text(d: Duel, mine: str) -> str:
    first = d.program == mine
    me, them = (d.iia, d.rival_iia) if first else (d.rival_iia, d.iia)
    other = f"{title(d.rival)}" + ("" if d.rival_variable in ("(all)", SWAP) else f"'s {d.rival_variable}") if first \
        else f"{title(d.program)}" + ("" if d.variable in ("(all)", SWAP) else f"'s {d.variable}")
    won = d.winner == ("program" if first else "rival")
    lost = d.winner == ("rival" if first else "program")
    verb = "beats" if won else "loses to" if lost else "does not differ from"
    where = "on the full swap's" if d.source == "swap" else "on the"
    return (f"{verb} {other} {where} {d.distinguishing} of {d.pairs} pairs where they differ "
            f"({_n(me)} vs {_n(them)}, McNemar {p_text(d.p)})")


def _win_text(d: Duel, mine: str) -> str:
    first = d.program == mine
    rival, variable = (d.rival, d.rival_variable) if first else (d.program, d.variable)
    me, them = (d.iia, d.rival_iia) if first else (d.rival_iia, d.iia)
    what = title(rival) + ("" if variable in ("(all)", SWAP) else f"'s {variable}")
    return f"beats {what} on the {d.distinguishing} pairs where they differ ({_n(me)} vs {_n(them)}, {p_text(d.p)})"


def describe(v: ProgramVerdict, ranked: list[ProgramVerdict], rule: Rule) -> tuple[str, str]:
    """(headline, full text) of a program's verdict."""
    name = title(v.program)
    if v.swap is not None:
        body = _swap_text(v)
    else:
        body = "; ".join(_variable_text(e) for e in v.evidence) or "not aligned"
    fights = [_duel_text(d, v.program) for d in v.duels]
    full = body + (". " + "; ".join(fights) if fights else "")
    if v.fits or v.grade == "also":
        core = ", ".join(f"{e.variable} IIA {_n(e.iia)}" for e in v.evidence) or f"full swap {_n(v.score)}"
        worst = max((c.high for e in v.evidence for c in e.controls), default=math.nan) if v.evidence else \
            max((c.high for c in v.swap["controls"]), default=math.nan)
        won = "; ".join(_win_text(d, v.program) for d in v.duels
                        if d.winner == ("program" if d.program == v.program else "rival"))
        ties = [o for o in ranked if o is not v and o.standing and not o.refuted_by]
        tie = "; " + ", ".join(title(o.program) for o in ties) + (" fits" if len(ties) == 1 else " fit") + \
            " as well, and they do not differ significantly where they disagree" if ties else ""
        if v.grade == "also":
            return f"{name}: also fits ({core}, controls ≤ {_n(worst)}{tie})", f"{name} also fits: {full}"
        headline = f"{name} ({v.grade}: {core}, controls ≤ {_n(worst)}" + (f"; {won}" if won else "") + f"{tie})"
        return headline, f"{name} {'fits' if v.grade == 'strong' else 'fits partly'}: {full}"
    why = f"refuted by {', '.join(title(r) for r in dict.fromkeys(v.refuted_by))}" if v.refuted_by else \
        "not every core variable is found" if v.swap is None else "the full swap does not beat its control"
    if v.standing and not v.refuted_by:
        why = "another program is named"
    return f"{name}: rejected ({why})", f"{name} rejected ({why}): {full}"


def _swap_text(v: ProgramVerdict) -> str:
    s = v.swap
    text = f"the full-state swap leaves {_n(v.score)} of continuations as a context-reading program predicts; " \
           f"{_controls_text(s['controls'])}"
    a = s.get("attention")
    if a:
        text += (f"; attention test: one more / one fewer demo token moves the EOS by ±1 in "
                 f"{_n(a['accuracy']['add'])} / {_n(a['accuracy']['remove'])} of trials")
    return text


def smallest_k(e: VariableEvidence, slack: float = 0.02) -> int:
    """The smallest k whose IIA (same map and site) is within `slack` of the best: the subspace's size."""
    curve = e.k_curve.get(e.map, {})
    good = [k for k, v in curve.items() if v >= e.iia - slack]
    return int(min(good)) if good else e.k


def sentence(verdicts: list[ProgramVerdict]) -> str:
    """The verdict in one paragraph: the named program's headline and why the others fall short."""
    named = [v for v in verdicts if v.fits][:1]
    if not named:
        return "No program fits: " + " ".join(f"{v.headline}." for v in verdicts)
    rest = [v for v in verdicts if v is not named[0]]
    return f"{named[0].headline}. Others: " + " ".join(f"{v.headline}." for v in rest)


def rule_text(rule: Rule) -> str:
    """The decision rule with this run's thresholds, for pages and JSON."""
    return (f"A variable is found when its best alignment (by validation IIA over sites, maps and k) beats every "
            f"control — the same DAS on an untrained copy (per map) and random subspaces of the same size at the same "
            f"site — by at least {rule.margin:.2f} IIA with p < {rule.alpha} (exact McNemar on the same pairs); "
            f"Context-Distributed is found when the full-state swap beats the untrained copy's swap the same way. A "
            f"program stands when all its core variables are found. Rivals are compared only on the pairs where "
            f"their predictions differ; a program that loses such a comparison (by {rule.margin:.2f}, p < {rule.alpha}) "
            f"to a found rival is refuted. The standing, unrefuted program is named (if several, the one storing more separate "
            f"variables, and the verdict says so); it is strong when it is the only one and every core variable "
            f"reaches {rule.strong:.2f} non-trivial IIA (Context-Distributed: full-swap IIA or both attention-test "
            f"edits at {rule.strong:.2f}), partial otherwise. Thresholds are options: margin=, strong=, alpha=.")
