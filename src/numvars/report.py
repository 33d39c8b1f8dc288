"""The reproduction report: one self-contained HTML page, RESULTS/report.html.

It states what ran (meta.json, runs.csv), sets our headline numbers beside the paper's Figure 2,
and shows every analysis with its figure, caption and a small table. Figures are embedded as
base64 PNG data URIs and the CSS is inline, so the page opens from disk with nothing to fetch.
All text is escaped. A small inline script marks `<body data-figures-loaded="N/M">` once the page
has loaded (N of the M images decoded), for headless-browser checks.
"""
from __future__ import annotations

import base64
import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from . import analysis, io
from .analysis.stats import INTERVALS
from .figures import TRAIN_MAX_COUNT

# Read off the paper's Figure 2 (hidden size 20; approximate): (Up-Down count, Up-Up best count, full swap).
PAPER_FIG2 = {
    ("gru", "multi_object"): (0.95, 0.40, 0.08), ("gru", "single_object"): (0.94, 0.41, 0.08),
    ("gru", "same_object"): (0.47, 0.30, 0.08),
    ("lstm", "multi_object"): (0.93, 0.46, 0.09), ("lstm", "single_object"): (0.97, 0.38, 0.09),
    ("lstm", "same_object"): (0.50, 0.53, 0.09),
    ("transformer", "multi_object"): (0.11, 0.13, 0.97), ("transformer", "single_object"): (0.12, 0.14, 0.99),
    ("transformer", "same_object"): (0.12, 0.14, 0.97),
}
MEASURES = {"up_down_count": "Up-Down (count)", "up_up_best_count": "Up-Up (best count)", "full_swap": "full swap"}
MATCH_TOLERANCE = 0.15
# What the ablation (docs/fidelity.md) measured as the cause where a cell misses the paper; shown beside it.
FIDELITY_NOTES: dict[tuple[str, str, str], str] = {}
VERDICTS = {"match": "✓ match", "mismatch": "✗ mismatch", "missing": "—"}


def paper_comparison(headline: pd.DataFrame) -> pd.DataFrame:
    """Ours beside the paper for every (arch, task, measure) of Figure 2 and every alignment map we ran:
    verdict "match" when |ours − paper| ≤ MATCH_TOLERANCE, "mismatch" otherwise, "missing" without ours."""
    ours = {(r.arch, r.task, r.measure, r.map): r for r in headline.itertuples()}
    maps = [m for m in dict.fromkeys(headline["map"]) if m != "—"] or ["orthogonal"]
    rows = []
    for (arch, task), values in PAPER_FIG2.items():
        for measure, paper in zip(MEASURES, values):
            for map_ in (["—"] if measure == "full_swap" else maps):
                r = ours.get((arch, task, measure, map_))
                mean = float(r.mean) if r is not None else math.nan
                verdict = "missing" if math.isnan(mean) else \
                    "match" if abs(mean - paper) <= MATCH_TOLERANCE + 1e-12 else "mismatch"
                get = lambda name, default=math.nan: getattr(r, name, default) if r is not None else default  # noqa
                rows.append({"arch": arch, "task": task, "measure": measure, "map": map_, "ours": mean,
                             "ci_low": float(get("ci_low")), "ci_high": float(get("ci_high")),
                             "n": int(get("n", 0)), "interval": get("interval", "none"),
                             "nontrivial": float(get("nontrivial_mean")), "paper": paper, "verdict": verdict})
    return pd.DataFrame(rows)


def render(results_dir) -> Path:
    """Write RESULTS/report.html (running the analyses first where they are missing or stale)."""
    root = Path(results_dir)
    _, meta = analysis.load_results(root)            # validates the results directory
    tables = _analysis(root)
    body = "\n".join([_header(root, meta), _what_ran(meta, tables), _headline(tables["headline"]),
                      _variants(tables["variants"]), _analyses(root, tables)])
    return io.write_text(root / "report.html", PAGE.format(css=CSS, body=body, script=SCRIPT))


def _analysis(root: Path) -> dict[str, pd.DataFrame]:
    outputs = [root / "analysis" / f"{name}.parquet" for name in analysis.OUTPUTS]
    outputs.append(root / "figures" / "captions.json")
    inputs = [*(root / "tables").glob("*.csv"), root / "meta.json"]
    newest_input = max((p.stat().st_mtime for p in inputs if p.is_file()), default=0.0)
    if all(p.is_file() for p in outputs) and min(p.stat().st_mtime for p in outputs) >= newest_input:
        return {name: io.read_table(root / "analysis" / f"{name}.parquet") for name in analysis.OUTPUTS}
    return analysis.analyze(root)


# ---------------------------------------------------------------------------------------------
# Formatting


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _num(x, digits: int = 2) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(x) else f"{x:.{digits}f}"


def _na(x, digits: int = 2) -> str:
    """A statistic that may be undefined (NaN → "n/a", not "—", which means "not run")."""
    text = _num(x, digits)
    return "n/a" if text == "—" else text


def _p(x) -> str:
    text = _na(x, 3)
    return "<0.001" if text == "0.000" else text


def _mean_ci(mean, low, high) -> str:
    if _num(mean) == "—":
        return "—"
    ci = "n/a" if _num(low) == "—" else f"{_num(low)}–{_num(high)}"
    return f"{_num(mean)} <span class='ci'>[{ci}]</span>"


def _table(rows: list[list[str]], headers: list[str] | None = None, raw: bool = False, head: str = "") -> str:
    """An HTML table; cells are escaped unless raw (when they were built from escaped pieces).
    `head` replaces the one-row header built from `headers` (for grouped headers)."""
    if not rows:
        return "<p class='empty'>(no rows)</p>"
    cell = (lambda c: str(c)) if raw else _e
    if headers:
        head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{f'<thead>{head}</thead>' if head else ''}<tbody>{body}</tbody></table>"


def _kv(mapping: dict) -> str:
    if not mapping:
        return "<p class='empty'>(not recorded)</p>"
    rows = [[k, v if isinstance(v, (str, int, float)) else json.dumps(v, default=str)] for k, v in mapping.items()]
    return _table(rows, ["key", "value"])


def _duration(seconds) -> str:
    try:
        s = int(round(float(seconds)))
    except (TypeError, ValueError):
        return "not recorded"
    h, m = divmod(s // 60, 60)
    return (f"{h} h " if h else "") + (f"{m} min " if h or m else "") + f"{s % 60} s"


# ---------------------------------------------------------------------------------------------
# Sections


def _header(root: Path, meta: dict) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    links = "".join(f"<a href='#{a}'>{_e(t)}</a>" for a, t in (("what-ran", "What ran"), ("headline", "Headline"),
                                                                ("analyses", "Analyses")))
    return (f"<header><h1>numvars reproduction report</h1><p class='sub'>Grant, Goodman &amp; McClelland, "
            f"“Emergent Symbol-like Number Variables in Artificial Neural Networks” (TMLR 2025) — preset "
            f"<b>{_e(meta.get('preset', 'unknown'))}</b>, results in <code>{_e(root.resolve())}</code>, "
            f"rendered {_e(now)}.</p><nav>{links}</nav></header>")


def _what_ran(meta: dict, t: dict[str, pd.DataFrame]) -> str:
    runs, dropped = t["runs"], t["dropped"]
    facts = [["preset", meta.get("preset", "not recorded")], ["started", meta.get("started", "not recorded")],
             ["finished", meta.get("finished", "not recorded")], ["wall time", _duration(meta.get("wall_seconds"))],
             ["compute time of all jobs (incl. reused ones)", _duration(meta.get("job_seconds"))],
             ["runs analysed", len(runs)], ["runs dropped (never reached the criterion)", len(dropped)]]
    keys = ["arch", "task", "variant", "d_model"]
    both = pd.concat([runs.assign(kept=True), dropped.assign(kept=False)], ignore_index=True)
    cond = [[*group, _seeds(g[g["kept"]]), _seeds(g[~g["kept"].astype(bool)])]
            for group, g in (both.groupby(keys, sort=True) if not both.empty else [])]
    drop_rows = [[r.run_name, r.arch, r.task, r.variant, int(r.d_model), int(r.seed), r.epochs,
                  _num(r.trial_accuracy, 3)] for r in dropped.itertuples()]
    return (f"<section id='what-ran'><h2>What ran</h2>{_table(facts)}"
            f"<h3>Runs per condition</h3>{_table(cond, [*keys, 'seeds analysed', 'seeds dropped'])}"
            f"<h3>Dropped seeds</h3><p>A run that never reached the trial-accuracy criterion (all evaluation trials "
            f"right) is left out of every analysis.</p>"
            f"{_table(drop_rows, ['run', 'arch', 'task', 'variant', 'd', 'seed', 'epochs', 'trial accuracy'])}"
            f"<h3>Grid</h3>{_kv(meta.get('config', {}))}<h3>Versions</h3>{_kv(meta.get('versions', {}))}"
            f"<h3>Hardware</h3>{_kv(meta.get('hardware', {}))}</section>")


def _seeds(rows: pd.DataFrame) -> str:
    return ", ".join(str(int(s)) for s in sorted(rows["seed"])) or "—"


def _headline(headline: pd.DataFrame) -> str:
    cmp = paper_comparison(headline)
    groups = list(dict.fromkeys(zip(cmp["measure"], cmp["map"])))
    rows = []
    for (arch, task), g in cmp.groupby(["arch", "task"], sort=False):
        row = [_e(arch), _e(task)]
        for r in g.itertuples():
            cell = _mean_ci(r.ours, r.ci_low, r.ci_high) + (f" <span class='n'>n={r.n}</span>" if r.n else "")
            if not math.isnan(r.nontrivial):
                cell += f"<br><span class='n'>non-trivial {_num(r.nontrivial)}</span>"
            note = FIDELITY_NOTES.get((arch, task, r.measure))
            verdict = f"<span class='{r.verdict}'>{_e(VERDICTS[r.verdict])}</span>"
            if note and r.verdict == "mismatch":
                verdict += f"<br><span class='n'>{_e(note)}</span>"
            row += [cell, _num(r.paper), verdict]
        rows.append(row)
    label = lambda m, map_: MEASURES[m] + ("" if map_ == "—" else f", {map_} map")  # noqa: E731
    head = ("<tr><th rowspan='2'>architecture</th><th rowspan='2'>task</th>"
            + "".join(f"<th colspan='3' class='group'>{_e(label(m, map_))}</th>" for m, map_ in groups) + "</tr><tr>"
            + "<th>ours</th><th>paper</th><th>verdict</th>" * len(groups) + "</tr>")
    counts = cmp["verdict"].value_counts()
    summary = (f"{counts.get('match', 0)} of {len(cmp)} comparisons matched, {counts.get('mismatch', 0)} "
               f"mismatched, {counts.get('missing', 0)} without a number of ours.")
    intervals = "; ".join(f"{k}: {v}" for k, v in INTERVALS.items() if k in set(cmp["interval"]))
    return (f"<section id='headline'><h2>Headline: ours beside the paper's Figure 2</h2>"
            f"<p>Hidden size 20, variant default, DAS with k = d/2 for each alignment map that ran, control none; "
            f"ours is the mean over seeds (n = seeds) with an interval in brackets ({_e(intervals) or 'none'}), "
            f"and below it the IIA on non-trivial pairs only (pairs whose swap changes the program's prediction). "
            f"Up-Up (best count) takes, per seed, the better of <code>demo_count</code> and "
            f"<code>resp_count</code>; full swap is the Context-Distributed full-state swap. <b>Match rule:</b> "
            f"|ours − paper| ≤ {MATCH_TOLERANCE:.2f} is “{_e(VERDICTS['match'])}”, otherwise "
            f"“{_e(VERDICTS['mismatch'])}”; “—” where we have no number. Paper values are read off its Figure 2 "
            f"and are approximate; the paper does not say which alignment map its figure used.</p>"
            f"{_table(rows, raw=True, head=head)}<p class='sub'>{_e(summary)}</p></section>")


def _variants(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    rows = [[_e(r.arch), _e(r.task), _e(r.variant), _mean_ci(r.mean, r.ci_low, r.ci_high),
             _mean_ci(r.fullswap_mean, r.fullswap_ci_low, r.fullswap_ci_high)] for r in table.itertuples()]
    return ("<section id='variants'><h2>Variants</h2><p>Up-Down count IIA and the Context-Distributed "
            "full-swap IIA for each task or model variant beside the default (<code>npe</code>: Transformer "
            "without positional encoding; <code>void</code>: Variable-Length task, void_prob 0.2). A model that "
            "re-reads its context scores high on the full swap and low on Up-Down.</p>"
            + _table(rows, ["arch", "task", "variant", "Up-Down count IIA [interval]", "full swap [interval]"], raw=True)
            + "</section>")


def _img(root: Path, fig) -> str:
    path = root / str(fig["file"])
    if fig["status"] != "ok" or not path.is_file():
        reason = fig["reason"] or f"{fig['file']} is missing"
        return f"<p class='skipped'>Figure skipped: {_e(reason)}.</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img src='data:image/png;base64,{data}' alt='{_e(fig['title'])}'>"
            f"<figcaption>{_e(fig['caption'])}</figcaption></figure>")


def _analyses(root: Path, t: dict[str, pd.DataFrame]) -> str:
    parts = ["<section id='analyses'><h2>Analyses</h2>"]
    for fig in t["figures"].to_dict("records"):
        extra = TABLES.get(fig["name"], lambda _: "")(t)
        parts.append(f"<article id='fig-{_e(fig['name'])}'><h3>{_e(fig['title'])}</h3>{_img(root, fig)}{extra}"
                     f"</article>")
    parts.append("<p class='sub'>Every table is also in <code>analysis/</code> as CSV and Parquet.</p></section>")
    return "".join(parts)


def _iia_rows(t) -> str:
    rows = [[_e(r.arch), _e(r.task), _e(r.program), _e(r.variable), _e(r.map), int(r.k),
             _mean_ci(r.mean, r.ci_low, r.ci_high), _num(r.nontrivial_mean), int(r.n), _num(r.untrained_mean),
             _num(r.random_mean), _num(r.identity_mean),
             _mean_ci(r.fullswap_mean, r.fullswap_ci_low, r.fullswap_ci_high)] for r in t["iia_table"].itertuples()]
    return _table(rows, ["arch", "task", "program", "variable", "map", "k", "IIA [interval]", "non-trivial", "n",
                         "untrained", "random map", "identity map", "full swap [interval]"], raw=True)


def _size_rows(t) -> str:
    rows = [[int(r.d_model), _mean_ci(r.mean, r.ci_low, r.ci_high), int(r.n), _num(r.untrained_mean),
             _num(r.random_mean)] for r in t["size_sweep"].itertuples()]
    return _table(rows, ["d", "IIA [interval]", "n", "untrained", "random map"], raw=True)


def _dynamics_rows(t) -> str:
    pooled = [[r.scope, _na(r.r), _p(r.p), int(r.n), _na(r.r_after), int(r.n_after)]
              for r in t["dynamics_pooled"].itertuples()]
    runs = [[r.run_name, r.arch, r.task, int(r.d_model), int(r.seed), _na(r.r), _p(r.p), int(r.n),
             _num(r.iia_at_criterion), _num(r.iia_last), _na(r.r_after), int(r.n_after)]
            for r in t["dynamics_runs"].itertuples()]
    return (f"<p>Pearson r between trial accuracy and IIA over checkpoints: over the whole curve, and over the "
            f"checkpoints from the criterion on (accuracy is then perfect, so r is n/a there unless it dips; IIA "
            f"at the criterion and at the last checkpoint show how alignment still moves). n/a below 3 "
            f"checkpoints or for a constant series.</p>"
            f"{_table(pooled, ['pooled over', 'r', 'p', 'checkpoints', 'r after criterion', 'checkpoints after'])}"
            f"{_table(runs, ['run', 'arch', 'task', 'd', 'seed', 'r', 'p', 'checkpoints', 'IIA at criterion', 'IIA last', 'r after criterion', 'checkpoints after'])}")


def _phase_rows(t) -> str:
    table = t["phase_pairs"]
    rows = []
    for (arch, task, map_), g in table.groupby(["arch", "task", "map"], sort=False):
        cell = {(r.phase_t, r.phase_u): f"{_num(r.iia)} ({int(r.pairs)})" for r in g.itertuples()}
        rows.append([arch, task, map_, *(cell.get((a, b), "—") for a in ("demo", "T", "response")
                                         for b in ("demo", "T", "response"))])
    head = [f"{a} ← {b}" for a in ("demo", "T", "response") for b in ("demo", "T", "response")]
    return ("<p>IIA (pairs) by the phase of t ← the phase of u, for every alignment map.</p>"
            + _table(rows, ["arch", "task", "map", *head]))


def _oor_rows(t) -> str:
    oor = t["oor"]
    rows = []
    for (arch, task), g in oor.groupby(["arch", "task"], sort=False):
        inside, beyond = g[g["count"] <= TRAIN_MAX_COUNT], g[g["count"] > TRAIN_MAX_COUNT]
        rows.append([arch, task, _num(inside["mean"].mean()), _num(beyond["mean"].mean()), int(g["n"].max())])
    return _table(rows, ["arch", "task", "accuracy, counts 1–20", "accuracy, counts 21–30", "seeds"])


def _pca_rows(t) -> str:
    pca = t["pca"]
    rows = [[run, arch, ", ".join(_num(v) for v in g.sort_values("pc")["explained_variance"])]
            for (run, arch), g in pca.groupby(["run_name", "arch"], sort=False)]
    return _table(rows, ["run", "arch", "explained variance, PC1…PC5"])


def _gradience_rows(t) -> str:
    diff = t["gradience_diff"]
    rows = [[int(d), _num(g.loc[g["abs_diff"] <= 2, "iia"].mean()), _num(g.loc[g["abs_diff"] > 2, "iia"].mean()),
             int(g["pairs"].sum())] for d, g in diff.groupby("d_model")]
    return _table(rows, ["d", "IIA, |diff| ≤ 2 (mean over differences)", "IIA, |diff| > 2", "pairs"])


TABLES = {"iia": _iia_rows, "size_sweep": _size_rows, "dynamics": _dynamics_rows, "oor": _oor_rows,
          "pca": _pca_rows, "gradience_diff": _gradience_rows, "phase_pairs": _phase_rows}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:1em 2em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
nav a{margin-right:1.2em}.sub{color:#555;font-size:.92em}code{background:#f3f3f3;padding:0 .25em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.86em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}th{background:#f0f0f0}
th.group{text-align:center}
tbody tr:nth-child(even){background:#fafafa}.ci,.n{color:#666;font-size:.9em}
.match{color:#186a1f;font-weight:600}.mismatch{color:#b00020;font-weight:600}.missing{color:#888}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #e3e3e3}
figcaption{color:#444;font-size:.92em;margin-top:.3em}.skipped{color:#8a5a00;background:#fff6e0;padding:.5em}
.empty{color:#888}
"""
SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-figures-loaded", ok + "/" + imgs.length);
});
"""
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>numvars reproduction report</title><style>{css}</style></head>
<body>
{body}
<script>{script}</script>
</body></html>
"""
