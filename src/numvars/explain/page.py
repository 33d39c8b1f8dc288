"""explain.html: the graded verdict, its rule, every control and comparison, and the figures (self-contained)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import explorer
from .. import figures as F
from .. import pages as h
from .. import io
from ..analysis import draw
from ..explorer import Shown
from ..paths import inside
from .explanation import Explanation
from .verdict import SWAP, p_text, title


def render(x: Explanation, out: Path, title_text: str, shown: list[Shown] = ()) -> Path:
    """explain.html in `out`; `title_text` names the model(s) (architecture, task, d, runs), `shown` the
    alignments whose trials the explorer shows (`explanation.shown_alignments`)."""
    folder = inside(out, "figures")
    figures = [draw(folder, "k_curves", lambda: F.fig_k_curves(x.table))]
    phases = _phase_frame(x)
    figures.append(draw(folder, "phase_pairs", lambda: F.fig_phase_pairs(phases),
                        "IIA of each variable's best alignment by the phase of the base and the source position"))
    count = x.pairs.get(("up_down", "count"))
    if count is not None:
        grid = count.groupby(["base_value", "source_value"], as_index=False).agg(
            iia=("correct", "mean"), pairs=("correct", "size"))
        figures.append(draw(folder, "gradience_heatmap",
                            lambda: F.fig_gradience_heatmap(grid, f"{title_text}; the best Up-Down count "
                                                                  "alignment"),
                            "Up-Down count IIA by base and source count (the best alignment)"))
    named = x.named
    head = f"{title(named.program)} ({named.grade})" if named else "no program fits"
    body = "".join([
        f"<header><h1>What does this network compute?</h1><p class='sub'>{h.e(title_text)}</p></header>",
        f"<section><h2>Verdict</h2><p class='verdict' data-grade='{h.e(x.grade)}'><b>{h.e(head)}</b></p>"
        f"<p>{h.e(x.text)}</p><p class='sub'><b>Decision rule.</b> {h.e(x.rule)}</p></section>",
        f"<section><h2>Hypotheses, ranked</h2>{_ranking(x)}</section>",
        f"<section><h2>Controls</h2>{_controls(x)}</section>",
        f"<section><h2>Where the programs disagree</h2>{_comparisons(x)}</section>",
        _swap(x), "<section><h2>Figures</h2>",
        "".join(f"<article><h3>{h.e(f['title'])}</h3>{h.img(out, f, F.TITLES)}</article>" for f in figures),
        f"</section><section><h2>Every alignment</h2>{_alignments(x.table)}</section>",
        explorer.section(list(shown), "Every alignment's saved test trials (at most 300 each, failures and the pairs "
                                      "where the programs disagree included).")])
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


def _ranking(x: Explanation) -> str:
    rows = []
    for rank, v in enumerate(x.verdicts, 1):
        status = v.grade if v.fits else ("refuted" if v.refuted_by else "stands" if v.standing else "rejected")
        rows.append([rank, h.e(title(v.program)), h.e(status), h.num(v.score), h.e(v.text)])
    return h.table(rows, ["rank", "program", "verdict", "score", "evidence"], raw=True)


def _controls(x: Explanation) -> str:
    rows = []
    for v in x.verdicts:
        for e in v.evidence:
            for c in e.controls:
                rows.append([h.e(title(v.program)), h.e(e.variable), h.e(f"{e.map} at {e.site}, k = {e.k}"),
                             h.e(c.name), h.num(c.learned), _range(c), h.e(p_text(c.p)), c.pairs,
                             h.num(c.learned_logprob), h.num(c.logprob)])
            rows.append([h.e(title(v.program)), h.e(e.variable), h.e(f"{e.map} at {e.site}, k = {e.k}"),
                         "isolation (same value, other phase or counter)", h.num(e.isolation), "—", "—",
                         e.isolation_pairs, "—", "—"])
        for c in (v.swap or {}).get("controls", []):
            rows.append([h.e(title(v.program)), h.e(SWAP), "identity, whole state", h.e(c.name), h.num(c.learned),
                         _range(c), h.e(p_text(c.p)), c.pairs, "—", "—"])
    return (h.table(rows, ["program", "variable", "alignment", "control", "IIA", "control's IIA", "p (McNemar)",
                           "pairs", "log-prob", "control's log-prob"], raw=True)
            + "<p class='sub'>IIA of the alignment and of the control on the same pairs; p: one-sided exact McNemar "
              "test that the alignment is right more often; log-prob: mean log-probability of the expected "
              "continuation (nats). Isolation: pairs whose source holds the same value of the variable but differs "
              "elsewhere, so the program predicts no change.</p>")


def _range(c) -> str:
    return h.num(c.iia) if c.low == c.high else f"{h.num(c.iia)} <span class='ci'>({h.num(c.low)}–{h.num(c.high)})</span>"


def _comparisons(x: Explanation) -> str:
    seen, rows = set(), []
    for v in x.verdicts:
        for d in v.duels:
            if id(d) in seen:
                continue
            seen.add(id(d))
            winner = {"program": title(d.program), "rival": title(d.rival)}.get(d.winner, "neither")
            rows.append([h.e(f"{title(d.program)}: {d.variable}"), h.e(f"{title(d.rival)}: {d.rival_variable}"),
                         h.e("full swap" if d.source == "swap" else "each one's alignment"), d.pairs, d.distinguishing,
                         h.num(d.iia), h.num(d.rival_iia),
                         f"{h.num(d.diff)} <span class='ci'>[{h.num(d.diff_low)}, {h.num(d.diff_high)}]</span>",
                         h.e(p_text(d.p)), h.num(d.agreement), h.num(d.rival_agreement), h.e(winner)])
    if not rows:
        return "<p class='empty'>(no rival programs were both aligned)</p>"
    return (h.table(rows, ["program", "rival", "intervention", "pairs", "where they differ", "IIA", "rival's IIA",
                           "difference [95% CI]", "p (McNemar)", "agreement: own − rival's",
                           "rival's: own − other's", "wins"], raw=True)
            + "<p class='sub'>On the pairs where the two programs predict different continuations, each alignment is "
              "scored against its own program (IIA) and against the rival's; the difference has a paired bootstrap "
              "interval, the test is the two-sided exact McNemar test. Target-minus-alternative agreement: how much "
              "more often an intervention's outcome follows its own program than the rival's.</p>")


def _swap(x: Explanation) -> str:
    parts = []
    if x.swap and "iia_by_program" in x.swap:
        s = x.swap
        parts.append(f"<p>Full-state swap at {h.e(s['site'])} (source of the same role): "
                     + ", ".join(f"{h.e(title(p))} {h.num(v)}" for p, v in s["iia_by_program"].items()) + ".</p>")
    if x.attention:
        a = x.attention
        parts.append(f"<p>Attention test (layers {h.e(a['layers'])}): adding one demo token's key and value moves the "
                     f"EOS one later in {h.num(a['accuracy']['add'])} of trials; removing one moves it one earlier in "
                     f"{h.num(a['accuracy']['remove'])} (of the trials the unedited model gets right, "
                     f"{h.num(a['base_accuracy'])}).</p>")
    return f"<section><h2>Context-reading tests</h2>{''.join(parts)}</section>" if parts else ""


def _alignments(t: pd.DataFrame) -> str:
    rows = [[h.e(r.program), h.e(r.variable), h.e(r.site), h.e(r.map), int(r.k), h.e(r.control),
             h.mean_ci(r.iia, r.ci_low, r.ci_high), h.num(r.iia_nontrivial), h.num(r.logprob), h.num(r.val_iia),
             int(r.runs)]
            for r in t.itertuples()]
    return h.table(rows, ["program", "variable", "site", "map", "k", "control", "IIA [95% CI]", "non-trivial",
                          "log-prob", "validation IIA", "runs"], raw=True)
