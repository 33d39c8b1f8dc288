"""`explain`: which algorithm does this network run, how sure are we, and why?

For every program given (default: every built-in one) and each core variable: DAS at every site the model
names, both alignment maps, k = d/2 first and a k sweep where that finds something (`plan`); beside each, its
controls (the same DAS on an untrained copy per map; random subspaces of the same size), an isolation score
and the log-probability of the expected continuation; the rival programs compared on the pairs where their
predictions differ; the full-state swap and, for a Transformer, the attention test (`evidence`). `verdict`
names the program by a written rule and grades it: strong, partial, or no program fits.

`explain(model, task)` works on any model in memory and runs its jobs on `jobs` worker processes;
`explain_runs(run_dirs)` (in `runs`) works on trained run directories, reuses their cached results and
pools several runs of one condition.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from ..stale import note
from ..stats import pooled_ci
from .evidence import Evidence, Record, collect
from .options import BUILT_IN, ExplainOptions
from .plan import ExplainPlan
from .verdict import ProgramVerdict, Rule, judge, rule_text, sentence

__all__ = ["BUILT_IN", "ExplainOptions", "Explanation", "explain", "summarize", "verdict"]


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


def summarize(records: list[list[Record]]) -> tuple[pd.DataFrame, dict]:
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


def explain(model, task, progress: bool = True, jobs: int | None = None, **opts) -> Explanation:
    """Explain a model in memory (nothing is cached): the same plan as `numvars explain`, its jobs on `jobs`
    worker processes (default: one per core; the model is sent to each), then the evidence and the verdict."""
    from ..engine import default_jobs, run_graph
    from .runs import in_memory_work, records_of, swap_inputs

    o = ExplainOptions(**opts)
    programs = o.programs()
    plan = ExplainPlan(o, programs, model, ["model"], evidence_jobs=False)
    work, workers = partial(in_memory_work, model, task), default_jobs() if jobs is None else jobs
    if workers > 1 and not _sendable(work):
        note("explain runs in this process: the model cannot be sent to worker processes (its class is not "
             "importable by them, e.g. one defined in a notebook); define it in a module to run in parallel")
        workers = 1
    results, _ = run_graph(plan.roots(), work, plan, jobs=workers, progress=progress, desc="explain")
    records = records_of(results)
    swap_frames, swap_summary, attention = swap_inputs(results)
    ev = Evidence.pool([collect(model, task, o, programs, records, swap_frames, swap_summary, attention)])
    x = verdict(*summarize([records]), ev, programs, o)
    sweep = plan.sweep_jobs(named_variables(x))
    if sweep:
        more, _ = run_graph(sweep, work, lambda j, r: [], jobs=min(workers, len(sweep)), progress=progress,
                            desc="k sweep")
        x = verdict(*summarize([records + records_of(more)]), ev, programs, o)
    return x


def _sendable(work) -> bool:
    """Whether worker processes can receive the model (pickled, its class found by import)."""
    import pickle

    try:
        pickle.dumps(work)
    except Exception:            # any failure to pickle: the class, a lambda inside, an open handle
        return False
    return True


def named_variables(x: Explanation) -> list[tuple[str, str, str, str]]:
    """(program, variable, site, map) of the named program's found variables: what the k sweep sizes."""
    named = x.named
    return [(named.program, e.variable, e.site, e.map) for e in named.evidence if e.found] if named else []
