"""explain.html: the verdict, the ranked table, and the figures that support it (self-contained)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import figures as F
from .. import html as h
from .. import io
from ..analysis import draw
from ..paths import inside
from . import Explanation


def render(x: Explanation, out: Path, title: str) -> Path:
    folder = inside(out, "figures")
    figures = [draw(folder, "k_curves", lambda: F.fig_k_curves(x.table))]
    phases = _phase_frame(x)
    figures.append(draw(folder, "phase_pairs", lambda: F.fig_phase_pairs(phases),
                        "IIA of each variable's best alignment by the phase of the base and the source position"))
    count = next((f for (p, v), f in x.pairs.items() if (p, v) == ("up_down", "count") and f is not None), None)
    if count is not None:
        grid = count.groupby(["base_value", "source_value"], as_index=False).agg(
            iia=("correct", "mean"), pairs=("correct", "size"))
        figures.append(draw(folder, "gradience_heatmap", lambda: F.fig_gradience_heatmap(grid, 0),
                            "Up-Down count IIA by base and source count (the best alignment)"))
    body = "".join([f"<header><h1>What does this network compute?</h1><p class='sub'>{h.e(title)}</p></header>",
                    f"<section><h2>Verdict</h2><p><b>{h.e(x.best if x.best != 'none' else 'no program fits')}"
                    f"</b></p><p>{h.e(x.text)}</p>{_rule(x)}</section>",
                    f"<section><h2>Hypotheses, ranked</h2>{_ranking(x)}</section>",
                    _swap(x), "<section><h2>Evidence</h2>",
                    "".join(f"<article><h3>{h.e(f['title'])}</h3>{h.img(out, f)}</article>" for f in figures),
                    f"<h3>Every alignment</h3>{_alignments(x.table)}</section>"])
    return io.write_text(inside(out) / "explain.html", h.page("numvars explain", body))


def _phase_frame(x: Explanation) -> pd.DataFrame:
    """IIA by phase of t × phase of u for each variable's best alignment (as the report's figure wants it)."""
    parts = []
    for (program, variable), frame in x.pairs.items():
        if frame is None:
            continue
        g = frame.groupby(["phase_t", "phase_u"], as_index=False).agg(iia=("correct", "mean"),
                                                                     pairs=("correct", "size"))
        parts.append(g.assign(arch=program, task=variable, map="best"))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["arch", "task", "map", "phase_t", "phase_u", "iia", "pairs"])


def _rule(x: Explanation) -> str:
    o = x.options
    return (f"<p class='sub'>Decision rule: a variable is found when its best alignment (by validation IIA over "
            f"sites, maps and k) reaches {o['accept']:.2f} IIA on non-trivial test pairs and beats the better of "
            f"its controls (untrained copy, random rotation) by {o['margin']:.2f}; a program fits when all its core "
            f"variables are found; Context-Distributed fits when the full swap (matched by role) beats the untrained "
            f"copy by {o['margin']:.2f} and either leaves {o['accept']:.2f} of continuations as it predicts or the "
            f"attention test moves the EOS by exactly one in {o['accept']:.2f} of trials for both edits. Fitting "
            f"programs rank first, those storing more separate variables first. The thresholds are options "
            f"(accept=, margin=).</p>")


def _ranking(x: Explanation) -> str:
    rows = []
    for rank, v in enumerate(x.verdicts, 1):
        rows.append([rank, h.e(v.program), "fits" if v.fits else "rejected", h.num(v.score), h.e(v.text)])
    return h.table(rows, ["rank", "program", "verdict", "score", "evidence"], raw=True)


def _swap(x: Explanation) -> str:
    parts = []
    if x.swap:
        s = x.swap
        parts.append(f"<p>Full-state swap at {h.e(s['site'])} (source of the same role): "
                     f"Context-Distributed IIA {h.num(s['iia'])} (untrained copy {h.num(s['untrained'])}); "
                     + ", ".join(f"{h.e(p)} {h.num(v)}" for p, v in s["iia_by_program"].items()) + ".</p>")
    if x.attention:
        a = x.attention
        parts.append(f"<p>Attention test (layers {h.e(a['layers'])}): adding one demo token's key and value moves the "
                     f"EOS one later in {h.num(a['accuracy']['add'])} of trials; removing one moves it one earlier in "
                     f"{h.num(a['accuracy']['remove'])} (of the trials the unedited model gets right, "
                     f"{h.num(a['base_accuracy'])}).</p>")
    return f"<section><h2>Context-reading tests</h2>{''.join(parts)}</section>" if parts else ""


def _alignments(t: pd.DataFrame) -> str:
    rows = [[h.e(r.program), h.e(r.variable), h.e(r.site), h.e(r.map), int(r.k), h.e(r.control),
             h.mean_ci(r.iia, r.ci_low, r.ci_high), h.num(r.iia_nontrivial), h.num(r.val_iia), int(r.runs)]
            for r in t.itertuples()]
    return h.table(rows, ["program", "variable", "site", "map", "k", "control", "IIA [95% CI]", "non-trivial",
                          "validation IIA", "runs"], raw=True)
