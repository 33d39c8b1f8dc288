"""The reproduction report: one self-contained HTML page, RESULTS/report.html.

It opens with the findings: our headline numbers beside the paper's Figure 2, the verdicts, every
analysis with its figure, caption and a small table, and the trial explorer (`report_trials`); what ran
(meta.json, runs.csv) and by which protocol come last. Figures are embedded as
base64 PNG data URIs and the CSS is inline, so the page opens from disk with nothing to fetch.
All text is escaped. A small inline script marks `<body data-figures-loaded="N/M">` once the page
has loaded (N of the M images decoded), for headless-browser checks.
"""
from __future__ import annotations

import math
import json
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import pandas as pd

from . import analysis, explorer, io, loaders, report_trials
from . import figures as F
from . import pages as h
from .analysis.stats import INTERVALS
from .analysis import training_range
from .paths import inside
from .programs import PHASES

MEASURES = {"up_down_count": "Up-Down (count)", "up_up_best_count": "Up-Up (best count)", "full_swap": "full swap"}


def paper_values() -> dict:
    """The paper's numbers for every figure, digitized from its figures (numvars/data/paper_values.json)."""
    return json.loads(resources.files("numvars").joinpath("data/paper_values.json").read_text())


# The paper's Figure 2 (hidden size 20; digitized): (Up-Down count, Up-Up best count, full swap) means.
PAPER_FIG2 = {tuple(cell.split("/")): tuple(values[m][0] for m in MEASURES)
              for cell, values in paper_values()["fig2"]["cells"].items()}
MATCH_TOLERANCE = 0.15


def fidelity_notes() -> dict[tuple[str, str, str, str], str]:
    """What the fidelity ablation (docs/fidelity.md) measured as the cause where a cell misses the paper, keyed
    by (arch, task, measure, map), map "—" for the full swap: numvars/data/fidelity_notes.json."""
    doc = json.loads(resources.files("numvars").joinpath("data/fidelity_notes.json").read_text())
    return {tuple(cell): note["cause"] for note in doc["notes"] for cell in note["cells"]}


FIDELITY_NOTES = fidelity_notes()
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
    raw, meta = analysis.load_results(root)          # validates the results directory
    tables = {**_analysis(root), "train_max": training_range(meta)}
    d_model = int(meta.get("config", {}).get("d_model", 20))
    trials = explorer.section(report_trials.shown(root, raw["iia"], tables["runs"], d_model),
                              f"The saved test trials of each headline alignment (at most "
                              f"{report_trials.REPORT_TRIALS} each, failures and the pairs where the programs "
                              f"disagree included; every alignment folder holds up to 300).")
    # findings first (ours beside the paper, the verdicts, the figures), what ran and how at the end
    body = "\n".join([_header(root, meta), _headline(tables["headline"], d_model), _variants(tables["variants"]),
                      _explained(root, tables["explain"], tables["align_models"]), _analyses(root, tables), trials,
                      _protocol(meta), _what_ran(meta, tables)])
    return io.write_text(inside(root) / "report.html", h.page("numvars reproduction report", body))


def _analysis(root: Path) -> dict[str, pd.DataFrame]:
    outputs = [root / "analysis" / f"{name}.parquet" for name in analysis.OUTPUTS]
    outputs.append(root / "figures" / "captions.json")
    inputs = [*(root / "tables").glob("*.csv"), root / "meta.json"]
    newest_input = max((p.stat().st_mtime for p in inputs if p.is_file()), default=0.0)
    if all(p.is_file() for p in outputs) and min(p.stat().st_mtime for p in outputs) >= newest_input:
        cached = loaders.read_analysis(root, analysis.OUTPUT_COLUMNS, analysis.FIGURES)
        if cached is not None:
            return cached
    return analysis.analyze(root)


# ---------------------------------------------------------------------------------------------
# Formatting


def _header(root: Path, meta: dict) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    links = "".join(f"<a href='#{a}'>{h.e(t)}</a>" for a, t in (("headline", "Headline"), ("beyond", "Beyond the paper"),
                                                                ("analyses", "Analyses"), ("trials", "Trials"),
                                                                ("protocol", "Protocol"), ("what-ran", "What ran")))
    return (f"<header><h1>numvars reproduction report</h1><p class='sub'>Grant, Goodman &amp; McClelland, "
            f"“Emergent Symbol-like Number Variables in Artificial Neural Networks” (TMLR 2025) — preset "
            f"<b>{h.e(meta.get('preset', 'unknown'))}</b>, results in <code>{h.e(root.resolve())}</code>, "
            f"rendered {h.e(now)}.</p><nav>{links}</nav></header>")


def _what_ran(meta: dict, t: dict[str, pd.DataFrame]) -> str:
    runs, dropped = t["runs"], t["dropped"]
    facts = [["preset", meta.get("preset", "not recorded")], ["started", meta.get("started", "not recorded")],
             ["finished", meta.get("finished", "not recorded")], ["wall time", h.duration(meta.get("wall_seconds"))],
             ["compute time of all jobs (incl. reused ones)", h.duration(meta.get("job_seconds"))],
             ["runs analysed", len(runs)], ["runs dropped (never reached the criterion)", len(dropped)]]
    keys = ["arch", "task", "variant", "d_model"]
    both = pd.concat([runs.assign(kept=True), dropped.assign(kept=False)], ignore_index=True)
    cond = [[*group, _seeds(g[g["kept"]]), _seeds(g[~g["kept"].astype(bool)])]
            for group, g in (both.groupby(keys, sort=True) if not both.empty else [])]
    drop_rows = [[r.run_name, r.arch, r.task, r.variant, int(r.d_model), int(r.seed), r.epochs,
                  h.num(r.trial_accuracy, 3)] for r in dropped.itertuples()]
    return (f"<section id='what-ran'><h2>What ran</h2>{h.table(facts)}"
            f"<h3>Runs per condition</h3>{h.table(cond, [*keys, 'seeds analysed', 'seeds dropped'])}"
            f"<h3>Dropped seeds</h3><p>A run that never reached the trial-accuracy criterion (all evaluation trials "
            f"right) is left out of every analysis.</p>"
            f"{h.table(drop_rows, ['run', 'arch', 'task', 'variant', 'd', 'seed', 'epochs', 'trial accuracy'])}"
            f"<h3>Grid</h3>{h.kv(meta.get('config', {}))}<h3>Versions</h3>{h.kv(meta.get('versions', {}))}"
            f"<h3>Hardware</h3>{h.kv(meta.get('hardware', {}))}</section>")


def _seeds(rows: pd.DataFrame) -> str:
    return ", ".join(str(int(s)) for s in sorted(rows["seed"])) or "—"


def _headline(headline: pd.DataFrame, d_model: int = 20) -> str:
    cmp = paper_comparison(headline)
    groups = list(dict.fromkeys(zip(cmp["measure"], cmp["map"])))
    rows = []
    for (arch, task), g in cmp.groupby(["arch", "task"], sort=False):
        row = [h.e(arch), h.e(task)]
        for r in g.itertuples():
            cell = h.mean_ci(r.ours, r.ci_low, r.ci_high) + (f" <span class='n'>n={r.n}</span>" if r.n else "")
            if not math.isnan(r.nontrivial):
                cell += f"<br><span class='n'>non-trivial {h.num(r.nontrivial)}</span>"
            note = FIDELITY_NOTES.get((arch, task, r.measure, r.map))
            verdict = f"<span class='{r.verdict}'>{h.e(VERDICTS[r.verdict])}</span>"
            if note and r.verdict == "mismatch":
                verdict += f"<br><span class='n'>{h.e(note)}</span>"
            row += [cell, h.num(r.paper), verdict]
        rows.append(row)
    label = lambda m, map_: MEASURES[m] + ("" if map_ == "—" else f", {map_} map")  # noqa: E731
    head = ("<tr><th rowspan='2'>architecture</th><th rowspan='2'>task</th>"
            + "".join(f"<th colspan='3' class='group'>{h.e(label(m, map_))}</th>" for m, map_ in groups) + "</tr><tr>"
            + "<th>ours</th><th>paper</th><th>verdict</th>" * len(groups) + "</tr>")
    counts = cmp["verdict"].value_counts()
    summary = (f"{counts.get('match', 0)} of {len(cmp)} comparisons matched, {counts.get('mismatch', 0)} "
               f"mismatched, {counts.get('missing', 0)} without a number of ours.")
    intervals = "; ".join(f"{k}: {v}" for k, v in INTERVALS.items() if k in set(cmp["interval"]))
    return (f"<section id='headline'><h2>Headline: ours beside the paper's Figure 2</h2>"
            f"<p>Hidden size {d_model} (the paper's figure: 20), variant default, DAS with k = d/2 for each alignment "
            f"map that ran, control none; "
            f"ours is the mean over seeds (n = seeds) with an interval in brackets ({h.e(intervals) or 'none'}), "
            f"and below it the IIA on non-trivial pairs only (pairs whose swap changes the program's prediction). "
            f"Up-Up (best count) takes, per seed, the better of <code>demo_count</code> and "
            f"<code>resp_count</code>; full swap is the Context-Distributed full-state swap. <b>Match rule:</b> "
            f"|ours − paper| ≤ {MATCH_TOLERANCE:.2f} is “{h.e(VERDICTS['match'])}”, otherwise "
            f"“{h.e(VERDICTS['mismatch'])}”; “—” where we have no number. Paper values are read off its Figure 2 "
            f"and are approximate; the paper does not say which alignment map its figure used.</p>"
            f"{h.table(rows, raw=True, head=head)}<p class='sub'>{h.e(summary)}</p></section>")


def _protocol(meta: dict) -> str:
    """Which protocol produced these numbers: the preset's training and alignment options."""
    config = meta.get("config", {})
    keys = {"training (beyond the defaults)": config.get("train", {}),
            **{f"training of the {arch} runs": over for arch, over in config.get("arch_train", {}).items()},
            "alignment (beyond the defaults)":
            config.get("das", {}), "alignment maps": config.get("maps", []), "full swap": config.get("fullswap", {})}
    return ("<section id='protocol'><h2>Protocol</h2><p>The numbers below come from these settings; everything "
            "not listed is numvars's default (see docs/protocol.md in numvars, and docs/fidelity.md for the "
            f"measured effect of each choice).</p>{h.kv({k: v for k, v in keys.items()})}</section>")


def _verdict_name(r) -> str:
    from .explain.verdict import title
    if r.best == "none":
        return "no program fits"
    grade = getattr(r, "grade", None)
    return f"{title(r.best)} ({grade})" if isinstance(grade, str) else title(r.best)


def _explained(root: Path, explain: pd.DataFrame, aligned: pd.DataFrame) -> str:
    if explain.empty and aligned.empty:
        return ""
    rows = [[h.e(r.arch), h.e(r.task), int(r.seed), f"<b>{h.e(_verdict_name(r))}</b>", h.e(r.verdict),
             h.link(root, r.page, "explain page")] for r in explain.itertuples()]
    part = ("<h3>Which program does each model run?</h3><p><code>numvars explain</code> on each model: every "
            "program's core variables beside their controls (an untrained copy, random subspaces), an isolation "
            "score, the rival programs compared where their predictions differ, the full swap and (Transformers) "
            "the attention test, graded by the rule its page states; each page has the evidence.</p>"
            + h.table(rows, ["arch", "task", "seed", "verdict", "evidence", "details"], raw=True)) \
        if len(explain) else ""
    crows = [[h.e(r.model_a), h.e(r.model_b), h.e(r.direction.replace("<-", " ← ")), h.num(r.iia),
              h.num(r.iia_nontrivial), int(r.k)] for r in aligned.itertuples()]
    cpart = ("<h3>Cross-model alignment</h3><p>One map per model, learned so that B's aligned count can stand in "
             "for A's (a ← b: B's count put into A). Models that hold the count the same way align well; a model "
             "that keeps no cumulative count (a Transformer re-reading its context) does not.</p>"
             + h.table(crows, ["model A", "model B", "direction", "IIA", "non-trivial", "k"], raw=True)) \
        if len(aligned) else ""
    return f"<section id='beyond'><h2>Beyond the paper</h2>{part}{cpart}</section>"


def _variants(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    rows = [[h.e(r.arch), h.e(r.task), h.e(r.variant), h.mean_ci(r.mean, r.ci_low, r.ci_high),
             h.mean_ci(r.fullswap_mean, r.fullswap_ci_low, r.fullswap_ci_high)] for r in table.itertuples()]
    return ("<section id='variants'><h2>Variants</h2><p>Up-Down count IIA and the Context-Distributed "
            "full-swap IIA for each task or model variant beside the default (<code>npe</code>: Transformer "
            "without positional encoding; <code>void</code>: Variable-Length task, void_prob 0.2). A model that "
            "re-reads its context scores high on the full swap and low on Up-Down.</p>"
            + h.table(rows, ["arch", "task", "variant", "Up-Down count IIA [interval]", "full swap [interval]"], raw=True)
            + "</section>")


def _analyses(root: Path, t: dict[str, pd.DataFrame]) -> str:
    parts = ["<section id='analyses'><h2>Analyses</h2>"]
    for fig in t["figures"].to_dict("records"):
        extra = TABLES.get(fig["name"], lambda _: "")(t)
        parts.append(f"<article id='fig-{h.e(fig['name'])}'><h3>{h.e(fig['title'])}</h3>{h.img(root, fig, F.TITLES)}{extra}"
                     f"</article>")
    parts.append("<p class='sub'>Every table is also in <code>analysis/</code> as CSV and Parquet.</p></section>")
    return "".join(parts)


def _iia_rows(t) -> str:
    rows = [[h.e(r.arch), h.e(r.task), h.e(r.program), h.e(r.variable), h.e(r.map), int(r.k),
             h.mean_ci(r.mean, r.ci_low, r.ci_high), h.num(r.nontrivial_mean), int(r.n), h.num(r.untrained_mean),
             h.num(r.random_mean), h.num(r.identity_mean),
             h.mean_ci(r.fullswap_mean, r.fullswap_ci_low, r.fullswap_ci_high)] for r in t["iia_table"].itertuples()]
    return h.table(rows, ["arch", "task", "program", "variable", "map", "k", "IIA [interval]", "non-trivial", "n",
                         "untrained", "random map", "identity map", "full swap [interval]"], raw=True)


def _size_rows(t) -> str:
    rows = [[int(r.d_model), h.mean_ci(r.mean, r.ci_low, r.ci_high), int(r.n), h.num(r.untrained_mean),
             h.num(r.random_mean)] for r in t["size_sweep"].itertuples()]
    return h.table(rows, ["d", "IIA [interval]", "n", "untrained", "random map"], raw=True)


def _dynamics_rows(t) -> str:
    pooled = [[r.scope, h.na(r.r), h.p_value(r.p), int(r.n), h.na(r.r_after), int(r.n_after)]
              for r in t["dynamics_pooled"].itertuples()]
    runs = [[r.run_name, r.arch, r.task, int(r.d_model), int(r.seed), h.na(r.r), h.p_value(r.p), int(r.n),
             h.num(r.iia_at_criterion), h.num(r.iia_last), h.na(r.r_after), int(r.n_after)]
            for r in t["dynamics_runs"].itertuples()]
    return (f"<p>Pearson r between trial accuracy and IIA over checkpoints: over the whole curve, and over the "
            f"checkpoints from the criterion on (accuracy is then perfect, so r is n/a there unless it dips; IIA "
            f"at the criterion and at the last checkpoint show how alignment still moves). n/a below 3 "
            f"checkpoints or for a constant series.</p>"
            f"{h.table(pooled, ['pooled over', 'r', 'p', 'checkpoints', 'r after criterion', 'checkpoints after'])}"
            f"{h.table(runs, ['run', 'arch', 'task', 'd', 'seed', 'r', 'p', 'checkpoints', 'IIA at criterion', 'IIA last', 'r after criterion', 'checkpoints after'])}")


def _phase_rows(t) -> str:
    table = t["phase_pairs"]
    rows = []
    for (arch, task, map_), g in table.groupby(["arch", "task", "map"], sort=False):
        cell = {(r.phase_t, r.phase_u): f"{h.num(r.iia)} ({int(r.pairs)})" for r in g.itertuples()}
        rows.append([arch, task, map_, *(cell.get((a, b), "—") for a in PHASES for b in PHASES)])
    head = [f"{a} ← {b}" for a in PHASES for b in PHASES]
    return ("<p>IIA (pairs) by the phase of t ← the phase of u, for every alignment map.</p>"
            + h.table(rows, ["arch", "task", "map", *head]))


def _oor_rows(t) -> str:
    oor = t["oor"]
    rows = []
    for (arch, task), g in oor.groupby(["arch", "task"], sort=False):
        inside, beyond = g[g["count"] <= t["train_max"]], g[g["count"] > t["train_max"]]
        rows.append([arch, task, h.num(inside["mean"].mean()), h.num(beyond["mean"].mean()), int(g["n"].max())])
    top = int(oor["count"].max()) if len(oor) else 30
    return h.table(rows, ["arch", "task", f"accuracy, counts 1–{t['train_max']}",
                          f"accuracy, counts {t['train_max'] + 1}–{top}", "seeds"])


def _pca_rows(t) -> str:
    pca = t["pca"]
    rows = [[run, arch, ", ".join(h.num(v) for v in g.sort_values("pc")["explained_variance"])]
            for (run, arch), g in pca.groupby(["run_name", "arch"], sort=False)]
    return h.table(rows, ["run", "arch", "explained variance, PC1…PC5"])


def _gradience_rows(t) -> str:
    diff = t["gradience_diff"]
    rows = [[int(d), h.num(g.loc[g["abs_diff"] <= 2, "iia"].mean()), h.num(g.loc[g["abs_diff"] > 2, "iia"].mean()),
             int(g["pairs"].sum())] for d, g in diff.groupby("d_model")]
    return h.table(rows, ["d", "IIA, |diff| ≤ 2 (mean over differences)", "IIA, |diff| > 2", "pairs"])


TABLES = {"iia": _iia_rows, "size_sweep": _size_rows, "dynamics": _dynamics_rows, "oor": _oor_rows,
          "pca": _pca_rows, "gradience_diff": _gradience_rows, "phase_pairs": _phase_rows}

