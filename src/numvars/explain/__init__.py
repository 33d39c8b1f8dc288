"""`explain`: which algorithm does this network run?

For every program given (default: every built-in one) and every variable, DAS over a small k sweep
and both alignment maps, at the model's default site (every `resid.L` of a Transformer), beside its
controls (the same DAS on an untrained copy; a fixed random rotation); the full-state swap beside
the untrained copy's; and, for a Transformer, the attention test of the summing solution. Each
alignment is scored with IIA, a bootstrap 95% interval over test pairs (over runs and pairs when
several runs of one condition are given), IIA on non-trivial pairs, and its margin over the
controls. `verdict.judge` ranks the hypotheses by the rule written in its docstring.

`explain(model, task)` works on any model in memory; `explain_runs(run_dirs)` works on trained run
directories, reuses their finished alignments (the job cache) and runs jobs in parallel.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import options
from ..errors import NumvarsError
from ..align.protocol import MAPS, MAX_PAIRS
from ..models import default_site
from ..models.config import MAX_D_MODEL
from ..runtime import resolve_device
from ..options import opt
from ..programs import get_program
from ..programs.sampling import POSITIONS
from .verdict import ProgramVerdict, Rule, judge, sentence

BUILT_IN = "up_down,up_up,ctx_distributed"


@dataclass(frozen=True)
class ExplainOptions:
    program: str = opt(BUILT_IN, "programs to test, comma-separated; your own as path/to/file.py:ClassName")
    site: str | None = opt(None, "sites, comma-separated; default: every site the model names (every resid.L of "
                                 "a Transformer), else state; 'default' for the model's default site only")
    variables: str = opt("all", "all variables of each program, or core (those its verdict needs: Up-Down's count, "
                                "Up-Up's two counts)")
    ks: str = opt("1,2,d/4,d/2", "subspace sizes to sweep (integers, or d/N of the state size d)")
    maps: str = opt("orthogonal,linear", "alignment maps to try")
    n_train: int = opt(10_000, "training pairs per alignment")
    n_val: int = opt(1_000, "validation pairs (choose the best alignment)")
    n_test: int = opt(1_000, "test pairs (the reported IIA)")
    positions: str = opt("all", "where the alignments swap: all (every non-BOS/EOS/PAD position) or tokens (demo "
                                "and response tokens only)")
    accept: float = opt(0.6, "non-trivial IIA a variable needs to count as found")
    margin: float = opt(0.3, "IIA a variable needs above the better of its controls")
    attention: bool = opt(True, "run the attention test on Transformers")
    seed: int = opt(0, "seed of the pairs and maps")
    device: str = opt("cpu", "cpu, cuda or auto")

    def __post_init__(self):
        options.canonicalize(self)
        options.check_range("accept", self.accept, 0.0, 1.0)
        if self.variables not in ("all", "core"):
            raise NumvarsError(f"variables={self.variables!r}: choose all or core")
        options.check_range("margin", self.margin, 0.0, 1.0)
        for name in ("n_train", "n_val", "n_test"):
            options.check_range(name, getattr(self, name), 1, MAX_PAIRS)
        options.check_choice("positions", self.positions, POSITIONS)
        options.check_seed("seed", self.seed)
        for name in self.maps.split(","):
            options.check_choice("maps", name.strip(), MAPS)
        self.k_values(MAX_D_MODEL)                        # the words of ks are checked now, the sizes per model
        resolve_device(self.device)

    def programs(self) -> dict:
        out = {}
        for name in self.program.split(","):
            program = get_program(name.strip())
            out[program.name] = program
        return out

    def k_values(self, d: int) -> list[int]:
        ks = []
        for word in self.ks.split(","):
            word = word.strip()
            try:
                k = d // int(word[2:]) if word.startswith("d/") else int(word)
            except (ValueError, ZeroDivisionError):
                raise NumvarsError(f"ks={self.ks!r}: give integers or d/N with N >= 1, e.g. ks=1,2,d/4,d/2") from None
            if 1 <= k <= d:
                ks.append(k)
        if not ks:
            raise NumvarsError(f"ks={self.ks!r} leaves no k in 1..{d}")
        return sorted(set(ks))

    def sites(self, model) -> list[str]:
        if self.site == "default":
            return [default_site(model)]
        if self.site:
            return [s.strip() for s in self.site.split(",")]
        return list(getattr(model, "site_names", ())) or [default_site(model)]

    def das_options(self) -> dict:
        return {"n_train": self.n_train, "n_val": self.n_val, "n_test": self.n_test, "seed": self.seed,
                "device": self.device, **({} if self.positions == "all" else {"positions": self.positions})}


@dataclass
class Explanation:
    verdicts: list[ProgramVerdict]
    text: str
    table: pd.DataFrame                   # one row per alignment (controls included)
    swap: dict | None
    attention: dict | None
    options: dict
    pairs: dict = field(default_factory=dict, repr=False)    # (program, variable) -> per-pair frame of its best

    @property
    def best(self) -> str:
        fitting = [v for v in self.verdicts if v.fits]
        return fitting[0].program if fitting else "none"

    def to_json(self) -> dict:
        return {"best": self.best, "verdict": self.text, "options": self.options, "swap": self.swap,
                "attention": self.attention,
                "ranking": [{"program": v.program, "fits": v.fits, "score": _f(v.score), "stored_variables": v.n_stored,
                             "text": v.text, "variables": [_ev(e) for e in v.evidence]} for v in self.verdicts],
                "alignments": self.table.replace({np.nan: None}).to_dict("records")}


def _f(x):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def _ev(e) -> dict:
    return {"variable": e.variable, "site": e.site, "map": e.map, "k": e.k, "iia": _f(e.iia), "ci": [_f(c) for c in e.ci],
            "nontrivial": _f(e.nontrivial), "untrained": _f(e.untrained), "random": _f(e.random),
            "margin": _f(e.margin), "found": e.found, "k_curve": {m: {str(k): _f(v) for k, v in c.items()}
                                                                 for m, c in e.k_curve.items()}}


def requests(o: ExplainOptions, programs: dict, sites: list[str], d: int, default: str) -> list[dict]:
    """Every alignment to run: the k × map sweep per (program, variable, site), and its controls at k = d/2.
    Options at their defaults are left out (the default site, k = d/2, the orthogonal map), so that these
    requests share job keys, and so cached results, with the same alignments asked for elsewhere."""
    out = []
    for name, program in programs.items():
        names = program.variables if o.variables == "all" else (program.core or program.variables)
        for variable in names:
            for site in sites:
                base = {"program": getattr(program, "_spec", name), "variable": variable, **o.das_options(),
                        **({} if site == default else {"site": site})}
                for map_ in (m.strip() for m in o.maps.split(",")):
                    kind = {} if map_ == "orthogonal" else {"map": map_}
                    for k in o.k_values(d):
                        out.append({**base, **kind, **({} if k == d // 2 else {"k": k})})
                    out.append({**base, **kind, "control": "untrained"})
                out.append({**base, "control": "random"})
    return out


def bootstrap(correct: list[np.ndarray], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling runs and then pairs within each run."""
    rng = np.random.default_rng(seed)
    runs = [np.asarray(c, dtype=float) for c in correct if len(c)]
    if not runs:
        return float("nan"), float("nan")
    means = np.empty(n)
    for b in range(n):
        picked = [runs[i] for i in rng.integers(len(runs), size=len(runs))]
        means[b] = np.mean([r[rng.integers(len(r), size=len(r))].mean() for r in picked])
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def summarize(rows: list[dict], frames: list[pd.DataFrame]) -> tuple[pd.DataFrame, dict]:
    """Per alignment (over runs): mean IIA, interval, non-trivial IIA, validation IIA; and each
    alignment's pooled per-pair frame. Rows name their actual site, map and k (from the results)."""
    df = pd.DataFrame(rows).assign(frame=range(len(rows)))
    keys = ["program", "variable", "site", "map", "k", "control"]
    df["control"] = df["control"].fillna("none")
    out, pair_frames = [], {}
    for key, g in df.groupby(keys, sort=False, dropna=False):
        parts = [frames[i] for i in g["frame"]]
        low, high = bootstrap([p["correct"].to_numpy() for p in parts])
        pooled = pd.concat(parts, ignore_index=True)
        nontrivial = pooled.loc[~pooled["trivial"].astype(bool), "correct"].mean()
        out.append({**dict(zip(keys, key)), "iia": g["iia"].mean(), "ci_low": low, "ci_high": high,
                    "iia_nontrivial": nontrivial, "val_iia": g["val_iia"].mean(), "runs": len(g)})
        pair_frames[key] = pooled
    return pd.DataFrame(out), pair_frames


def verdict(table: pd.DataFrame, frames: dict, swap: dict | None, attention: dict | None, programs: dict,
            o: ExplainOptions) -> Explanation:
    verdicts = judge(table, swap, attention, programs, Rule(o.accept, o.margin))
    best_pairs = {}
    for v in verdicts:
        for e in v.evidence:
            best_pairs[(v.program, e.variable)] = frames.get((v.program, e.variable, e.site, e.map, e.k, "none"))
    return Explanation(verdicts, sentence(verdicts), table, swap, attention, asdict(o), best_pairs)


def explain(model, task, progress: bool = True, **opts) -> Explanation:
    """Explain a model in memory (no caching): every alignment, the full swaps and the attention test."""
    from ..align import das, full_swap
    from ..align.attention import attention_test
    from ..align.sites import get_site

    o = ExplainOptions(**opts)
    programs = o.programs()
    sites = o.sites(model)
    d = get_site(model, sites[0]).size
    rows, frames = [], []
    resettable = any(callable(getattr(m, "reset_parameters", None)) for m in model.modules() if m is not model)
    todo = [r for r in requests(o, programs, sites, d, default_site(model))
            if resettable or r.get("control") != "untrained"]
    for r in tqdm(todo, desc="explain", unit="alignment", disable=not progress):
        program = next((p for n, p in programs.items() if r["program"] in (n, getattr(p, "_spec", None))))
        result = das(model, task, program, **{k: v for k, v in r.items() if k != "program"})
        rows.append({"program": result.program, "variable": r["variable"], "site": result.site, "map": result.map,
                     "k": result.k, "control": result.control, "iia": result.iia, "val_iia": result.val_iia})
        frames.append(result.pairs)
    swap = None
    if any(not p.variables for p in programs.values()):
        site = default_site(model) if default_site(model) in sites else sites[0]
        on = full_swap(model, task, site=site, match="role", seed=o.seed, device=o.device)
        off = full_swap(model, task, site=site, match="role", seed=o.seed, device=o.device,
                        control="untrained").iia if resettable else float("nan")
        swap = {"site": on.site, "iia": on.iia, "untrained": off, "iia_by_program": on.iia_by_program}
    attention = None
    if o.attention and hasattr(model, "blocks"):
        attention = attention_test(model, task, seed=o.seed, device=o.device).summary()
    table, pair_frames = summarize(rows, frames)
    return verdict(table, pair_frames, swap, attention, programs, o)
