"""The trial explorer of explain.html and report.html: a section that shows the trials each alignment saved
(`align.trials`), token by token, with filters and two clickable heatmaps, all inside the page.

The trials travel as JSON in a `<script type="application/json">` element (every `<` escaped, so nothing in a
trial can close it); the script and style sheet (numvars/data/explorer.js, explorer.css) are inlined, and the
script writes every value into the page as text, never as markup. Tokens are coded one character each
(`ALPHABET`, indices into the page's token list) to keep pages small. The heatmaps count every test pair of
an alignment (pairs.parquet); clicking a cell lists the saved trials in it.
"""
from __future__ import annotations

import json
import math
import string
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from .pages import e

ALPHABET = string.digits + string.ascii_letters      # token codes: a page holds at most 62 token names
FLAGS = {"correct": 1, "correct_free": 2, "trivial": 4, "distinguishing": 8}


@dataclass
class Shown:
    """One alignment on a page: its label, its saved trials (None: none saved) and its test pairs."""
    label: str
    trials: pd.DataFrame | None
    pairs: pd.DataFrame | None = None
    note: str = ""             # why there are no trials, when there are none


class Codes:
    """Token names <-> one-character codes, shared by every alignment of a page."""

    def __init__(self):
        self.names: list[str] = []

    def __call__(self, words: str) -> str:
        out = []
        for w in words.split():
            if w not in self.names:
                self.names.append(w)
            out.append(ALPHABET[self.names.index(w)] if len(self.names) <= len(ALPHABET) else "?")
        return "".join(out)


def _number(x, digits: int = 2):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(float(x), digits)


def _cells(pairs: pd.DataFrame | None, by: tuple[str, str]) -> list:
    if pairs is None or pairs.empty or not set(by) <= set(pairs.columns):
        return []
    g = pairs.groupby(list(by), as_index=False).agg(iia=("correct", "mean"), n=("correct", "size"))
    return [[_plain(a), _plain(b), _number(i), int(n)] for a, b, i, n in g.itertuples(index=False)]


def _plain(x):
    return int(x) if isinstance(x, (int, float)) and float(x).is_integer() else str(x)


def _trial(r, codes: Codes, programs: list[str]) -> dict:
    predictions = json.loads(r.predictions) if r.predictions else {}
    flags = sum(bit for name, bit in FLAGS.items() if bool(getattr(r, name)))
    return {"p": int(r.pair), "v": str(r.variable), "b": codes(r.base), "s": codes(r.source), "t": int(r.t),
            "u": int(r.u), "bc": int(r.base_count), "sc": int(r.source_count), "bv": int(r.base_value),
            "sv": int(r.source_value), "pt": str(r.phase_t), "pu": str(r.phase_u), "f": flags,
            "lp": _number(r.logprob), "e": codes(r.expected), "m": str(r.scored), "y": codes(r.model),
            "z": codes(r.model_free),
            "l": [None if v == "-" else _number(float(v)) for v in str(r.token_logprob).split()],
            "P": [codes(predictions[name]) if name in predictions else None for name in programs]}


def data(shown: list[Shown]) -> dict:
    """The explorer's JSON: the token names, then per alignment its label, note, program names, heatmap cells
    and trials."""
    codes, out = Codes(), []
    for s in shown:
        trials = s.trials if s.trials is not None else pd.DataFrame()
        programs = list(dict.fromkeys(k for p in trials.get("predictions", []) for k in json.loads(p or "{}")))
        out.append({"label": s.label, "note": s.note if s.trials is None else "", "programs": programs,
                    "count": _cells(s.pairs, ("base_value", "source_value")),
                    "phase": _cells(s.pairs, ("phase_t", "phase_u")),
                    "trials": [_trial(r, codes, programs) for r in trials.itertuples()]})
    return {"tokens": codes.names, "alphabet": ALPHABET, "alignments": out}


def _asset(name: str) -> str:
    return resources.files("numvars").joinpath(f"data/{name}").read_text()


def section(shown: list[Shown], intro: str = "") -> str:
    """The explorer section (empty when no alignment is shown)."""
    if not shown:
        return ""
    payload = json.dumps(data(shown), separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return (f"<section id='trials'><h2>Trials</h2><p>{e(intro)} Pick an alignment; filter its saved trials; click "
            "a heatmap cell to list the trials in it, and a trial to see it token by token (the swap positions "
            "boxed; tokens that differ from the expected continuation in red).</p>"
            "<div id='explorer' class='explorer'><p class='sub'>The trial explorer needs JavaScript.</p></div>"
            f"<script type='application/json' id='trial-data'>{payload}</script>"
            f"<style>{_asset('explorer.css')}</style><script>{_asset('explorer.js')}</script></section>")
