"""An explanation: every program's graded verdict with its evidence, and the table of alignments behind it;
`pool_alignments` pools alignments over runs and DAS seeds, `verdict` judges them (`verdict.judge`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ..align.trials import MAX_TRIALS, cut
from ..explorer import Shown
from ..stats import pooled_ci
from .evidence import Evidence, Record
from .options import ExplainOptions
from .verdict import ProgramVerdict, Rule, judge, rule_text, sentence


@dataclass
class Explanation:
    verdicts: list[ProgramVerdict]
    text: str
    table: pd.DataFrame                   # one row per alignment over runs and DAS seeds (controls included)
    evidence: Evidence
    options: dict
    rule: str
    pairs: dict = field(default_factory=dict, repr=False)    # (program, variable) -> test pairs of its best

    @property
    def named(self) -> ProgramVerdict | None:
        return next((v for v in self.verdicts if v.fits), None)

    @property
    def best(self) -> str:
        return self.named.program if self.named else "none"

    @property
    def grade(self) -> str:
        return self.named.grade if self.named else "none"

    @property
    def duels(self) -> list:
        """Every comparison of rival programs on the pairs where they disagree (each once)."""
        return _unique_duels(self.verdicts)

    @property
    def swap(self) -> dict | None:
        return self.evidence.swap

    @property
    def attention(self) -> dict | None:
        return self.evidence.attention

    def to_json(self) -> dict:
        return {"best": self.best, "grade": self.grade, "verdict": self.text, "rule": self.rule,
                "options": self.options, "swap": self.swap, "attention": self.attention,
                "ranking": [{"program": v.program, "grade": v.grade, "fits": v.fits, "standing": v.standing,
                             "refuted_by": list(dict.fromkeys(v.refuted_by)), "score": _f(v.score),
                             "stored_variables": v.n_stored, "headline": v.headline, "text": v.text,
                             "variables": [e.to_json() for e in v.evidence],
                             "controls": [c.to_json() for c in (v.swap or {}).get("controls", [])]}
                            for v in self.verdicts],
                "comparisons": [d.to_json() for d in _unique_duels(self.verdicts)],
                "alignments": self.table.replace({np.nan: None}).to_dict("records")}


def _unique_duels(verdicts):
    seen = {}
    for v in verdicts:
        for d in v.duels:
            seen[id(d)] = d
    return list(seen.values())


def _f(x):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def pool_alignments(records: list[list[Record]]) -> tuple[pd.DataFrame, dict]:
    """Per alignment over runs (the outer list) and DAS seeds: mean IIA and its interval (resampling runs ×
    seeds, then pairs), non-trivial IIA, validation IIA, log-probability; and each alignment's pooled test pairs.
    Controls are keyed like alignments (control = "none" for the learned ones)."""
    rows = [(i, r) for i, run in enumerate(records) for r in run]
    keys = ("program", "variable", "site", "map", "k", "control")
    groups: dict[tuple, list] = {}
    for i, r in rows:
        groups.setdefault(tuple(getattr(r, k) for k in keys), []).append((i, r))
    out, frames = [], {}
    for key, members in groups.items():
        parts = [r.frame for _, r in members]
        pooled = pd.concat(parts, ignore_index=True)
        low, high = pooled_ci([p["correct"].to_numpy() for p in parts])
        nontrivial = pooled.loc[~pooled["trivial"].astype(bool), "correct"].mean()
        logprob = pooled["logprob"].mean() if "logprob" in pooled else np.nan
        out.append({**dict(zip(keys, key)), "iia": float(np.mean([r.iia for _, r in members])), "ci_low": low,
                    "ci_high": high, "iia_nontrivial": nontrivial, "logprob": logprob,
                    "val_iia": float(np.mean([r.val_iia for _, r in members])), "runs": len({i for i, _ in members}),
                    "fits": len(members)})
        frames[key] = pooled
    columns = [*keys, "iia", "ci_low", "ci_high", "iia_nontrivial", "logprob", "val_iia", "runs", "fits"]
    return pd.DataFrame(out, columns=columns), frames


def verdict(table: pd.DataFrame, frames: dict, ev: Evidence, programs: dict, o: ExplainOptions) -> Explanation:
    rule = Rule(o.margin, o.strong, o.alpha)
    verdicts = judge(table, ev, programs, rule)
    best_pairs = {}
    for v in verdicts:
        for e in v.evidence:
            best_pairs[(v.program, e.variable)] = frames.get((v.program, e.variable, e.site, e.map, e.k, "none"))
    return Explanation(verdicts, sentence(verdicts), table, ev, asdict(o), rule_text(rule), best_pairs)


def named_variables(x: Explanation) -> list[tuple[str, str, str, str]]:
    """(program, variable, site, map) of the named program's found variables: what the k sweep sizes."""
    named = x.named
    return [(named.program, e.variable, e.site, e.map) for e in named.evidence if e.found] if named else []


def shown_alignments(x: Explanation, records: list[list[Record]], limit: int = MAX_TRIALS) -> list[Shown]:
    """Every alignment of the table for the page's trial explorer, each best one first: its test pairs and its
    saved trials pooled over runs and DAS seeds (chosen again down to `limit`, failures and distinguishing
    pairs first), or a note where none were saved."""
    from .verdict import title

    keys = ("program", "variable", "site", "map", "k", "control")
    groups: dict[tuple, list[Record]] = {}
    for run in records:
        for r in run:
            groups.setdefault(tuple(getattr(r, k) for k in keys), []).append(r)
    best = {(v.program, e.variable, e.site, e.map, e.k, "none") for v in x.verdicts for e in v.evidence}
    out = []
    for key in sorted(groups, key=lambda k: (k not in best, k)):
        members = groups[key]
        saved = [r.trials.assign(seed=r.seed) for r in members if r.trials is not None]
        trials = cut(pd.concat(saved, ignore_index=True), limit) if saved else None
        program, variable, site, map_, k, control = key
        label = f"{title(program)}: {variable} at {site}, {map_} map, k = {k}" + \
            ("" if control == "none" else f", control {control}") + (" (best)" if key in best else "")
        out.append(Shown(label, trials, pd.concat([r.frame for r in members], ignore_index=True),
                         "" if saved else "no trials saved for this alignment"))
    return out
