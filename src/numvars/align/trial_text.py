"""An alignment's saved trials as text for a terminal (`numvars trials`): each trial's base and source with
the swap positions marked, the expected continuation, the model's (teacher-forced and free-running) and
every program's prediction, tokens that differ from the expected one marked, in colour on a terminal."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import NumvarsError
from ..loaders import read_trials
from ..paths import inside
from ..programs import PHASES

RED, GREEN, DIM, SWAP, RESET = "\033[31m", "\033[32m", "\033[2m", "\033[7m", "\033[0m"


def parse_phases(text: str | None) -> tuple[str, ...] | None:
    """"demo,response" -> ("demo", "response"): the phase of t, then optionally the phase of u."""
    if text is None:
        return None
    names = tuple(p.strip() for p in text.split(","))
    if not 1 <= len(names) <= 2 or any(p not in PHASES for p in names):
        raise NumvarsError(f"--phase {text[:40]!r}: give the phase of t and optionally of u, each one of "
                           f"{', '.join(PHASES)} (e.g. --phase demo,response)")
    return names


def load(align_dir) -> pd.DataFrame:
    """The saved trials of an alignment folder, or a one-line error saying why there are none."""
    folder = Path(align_dir)
    if not folder.is_dir():
        raise NumvarsError(f"{align_dir} is not a folder; give an alignment folder (RUN/align/das-...)")
    if not inside(folder, "result.json").is_file():
        raise NumvarsError(f"{align_dir} is not an alignment folder (it has no result.json); give RUN/align/das-...")
    trials = read_trials(folder)
    if trials is None:
        raise NumvarsError(f"no trials saved for the alignment in {align_dir} (made before numvars saved "
                           "them); delete the folder and rerun the alignment to sample its trials")
    return trials


def select(trials: pd.DataFrame, failed: bool = False, nontrivial: bool = False, distinguishing: bool = False,
           phases: tuple[str, ...] | None = None, counts: tuple[int, int] | None = None) -> pd.DataFrame:
    """The trials that pass every filter given (counts: low..high, inclusive, holding both the base's and the
    source's count)."""
    keep = pd.Series(True, index=trials.index)
    if failed:
        keep &= ~trials["correct"]
    if nontrivial:
        keep &= ~trials["trivial"]
    if distinguishing:
        keep &= trials["distinguishing"]
    for column, phase in zip(("phase_t", "phase_u"), phases or ()):
        keep &= trials[column] == phase
    if counts is not None:
        keep &= trials["base_count"].between(*counts) & trials["source_count"].between(*counts)
    return trials[keep]


def show(align_dir, n: int = 10, colour: bool = False, **filters) -> str:
    """Up to n of an alignment's saved trials that pass `filters` (see `select`), as text."""
    trials = load(align_dir)
    chosen = select(trials, **filters)
    head = f"{len(chosen)} of {len(trials)} saved trials pass the filters; showing {min(n, len(chosen))}"
    return "\n\n".join([head, *(trial(r, colour) for r in chosen.head(max(n, 0)).itertuples())])


def trial(r, colour: bool = False) -> str:
    """One trial: a heading line, the two sequences, then the continuations in aligned columns."""
    paint = (lambda text, code: f"{code}{text}{RESET}") if colour else (lambda text, code: text)
    verdict = paint("right", GREEN) if r.correct else paint("wrong", RED)
    free = "right" if r.correct_free else "wrong"
    flags = ", ".join(f for f, on in (("trivial", r.trivial), ("distinguishing", r.distinguishing)) if on)
    lines = [f"pair {r.pair}: {verdict} (free-running {free}); {r.variable} {r.base_value} <- {r.source_value}; "
             f"t = {r.t} ({r.phase_t}), u = {r.u} ({r.phase_u}); counts {r.base_count} and {r.source_count}; "
             f"log-prob {r.logprob:.2f}" + (f"; {flags}" if flags else "")]
    for name, seq, at in (("base", r.base, r.t), ("source", r.source, r.u)):
        words = seq.split()
        marked = [paint(w, SWAP) if colour and i == at else f"[{w}]" if i == at else w for i, w in enumerate(words)]
        lines.append(f"  {name:<20}{' '.join(marked)}")
    expected, scored = r.expected.split(), [c == "1" for c in r.scored]
    rows = [("expected", expected), ("model", r.model.split()), ("model, free-running", r.model_free.split())]
    rows += [(label, seq.split()) for label, seq in json.loads(r.predictions).items()]
    rows.append(("log-prob", r.token_logprob.split()))
    width = [max(len(words[i]) if i < len(words) else 0 for _, words in rows) for i in range(max(len(w) for _, w in rows))]
    for label, words in rows:
        cells = []
        for i, w in enumerate(words):
            differs = label != "log-prob" and (i >= len(expected) or w != expected[i])
            if label.startswith("model") and i < len(scored) and not scored[i]:
                w, differs = "·", False                # a forced input there: the model's guess is not scored
            mark = "" if colour else "*" if differs else " "       # plain text: a star after a differing token
            cells.append((paint(w, RED) if differs else w) + mark + " " * (width[i] - len(w)))
        lines.append(f"  {label:<20}{' '.join(cells).rstrip()}")
    return "\n".join(lines)
