"""Analyses and the HTML report, on a small synthetic results directory with real tiny runs.

The raw tables are written by hand with plausible numbers (paper-like IIAs, a dropped seed whose
rows would spoil every mean, a condition with one seed); PCA and attention maps need real run
directories, so a GRU, an LSTM and two Transformers (RoPE and NPE) are trained for 2 epochs.
"""
from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from numvars import analysis, figures, report
from numvars.errors import NumvarsError
from numvars.train import train

from conftest import tiny_config

ARCHS, TASKS = ("gru", "lstm", "transformer"), ("multi_object", "single_object", "same_object")
PAPER = report.PAPER_FIG2
N_FIGURES = len(analysis.FIGURES)


def _run(arch, task, seed, d=20, variant="default", ok=True, run_dir=None):
    name = f"{arch}-{task}-{variant}-d{d}-s{seed}"
    return {"run_name": name, "run_dir": str(run_dir or f"runs/{name}"), "arch": arch, "task": task,
            "variant": variant, "d_model": d, "seed": seed, "reached_criterion": ok,
            "criterion_epoch": 8 if ok else None, "epochs": 50,
            "seconds": 3.0, "trial_accuracy": 1.0 if ok else 0.4}


def _runs(real: dict) -> list[dict]:
    runs = []
    for arch in ARCHS:
        for task in TASKS:
            seeds = (0,) if (arch, task) == ("transformer", "same_object") else (0, 1)
            runs += [_run(arch, task, s, run_dir=real.get((arch, task, s))) for s in seeds]
    runs.append(_run("gru", "multi_object", 2, ok=False))                    # dropped: its rows are all zeros
    runs.append(_run("transformer", "multi_object", 0, variant="npe", run_dir=real.get("npe")))
    runs += [_run("gru", "multi_object", s, d=d) for d in (8, 48) for s in (0, 1)]
    return runs


def _iia_rows(r: dict) -> list[dict]:
    key = {k: r[k] for k in ("run_name", "arch", "task", "variant", "d_model", "seed")}
    ud, uu, _ = PAPER.get((r["arch"], r["task"]), (0.5, 0.3, 0.5))
    if r["d_model"] != 20:
        ud = 0.6 if r["d_model"] == 8 else 0.9
    jitter = 0.02 if r["seed"] == 0 else -0.02
    rows = []
    for control in ("none", "untrained", "random", "identity"):
        for program, variable, value in (("up_down", "count", ud), ("up_up", "demo_count", uu),
                                         ("up_up", "resp_count", uu - 0.1)):
            v = (value + jitter if control == "none" else 0.05) if r["reached_criterion"] else 0.0
            rows.append({**key, "program": program, "variable": variable, "k": r["d_model"] // 2,
                         "map": control if control in ("random", "identity") else "orthogonal", "control": control,
                         "iia": v, "iia_free": v, "iia_nontrivial": v - 0.1, "token_accuracy": v, "val_iia": v,
                         "seconds": 1.0, "result_dir": "x"})
    if r["d_model"] == 20 and r["variant"] == "default":                 # a second map, for Up-Down only
        v = min(1.0, ud + 0.03 + jitter) if r["reached_criterion"] else 0.0
        rows.append({**key, "program": "up_down", "variable": "count", "k": 10, "map": "linear", "control": "none",
                     "iia": v, "iia_free": v, "iia_nontrivial": v, "token_accuracy": v, "val_iia": v, "seconds": 1.0,
                     "result_dir": "x"})
    return rows


def _other_rows(r: dict) -> dict[str, list[dict]]:
    key = {k: r[k] for k in ("run_name", "arch", "task", "variant", "d_model", "seed")}
    bad = not r["reached_criterion"]
    swap = 0.5 if (r["arch"], r["task"]) == ("transformer", "same_object") else PAPER.get((r["arch"], r["task"]),
                                                                                          (0, 0, 0.5))[2]
    site = "resid.1" if r["arch"] == "transformer" else "state"
    out = {"fullswap": [{**key, "site": site, "program": "ctx_distributed", "iia": 0.0 if bad else swap},
                        {**key, "site": site, "program": "up_down", "iia": 1 - swap}],
           "oor": [{**key, "count": c, "accuracy": 1.0 if c <= 20 else max(0.0, 1 - 0.2 * (c - 20))}
                   for c in range(1, 31)],
           "dynamics": [], "pairs": []}
    if r["task"] == "multi_object" and r["variant"] == "default" and r["d_model"] == 20:
        epochs = (1, 2, 4, 8, 16) if r["arch"] != "lstm" else (1, 2)          # LSTM: too few for a Pearson r
        out["dynamics"] = [{**key, "epoch": e, "trial_accuracy": min(1.0, e / 16),
                            "iia": min(1.0, e / 20 + 0.1 * (e == 2))} for e in epochs]
    if r["variant"] == "default":
        phases = ("demo", "T", "response")
        out["pairs"] = [{**key, "map": "orthogonal", "base_value": b, "source_value": s, "abs_diff": abs(b - s),
                         "correct": int(abs(b - s) <= 2 or (b + s) % 2 == 0), "phase_t": phases[b % 3],
                         "phase_u": phases[s % 3], "trivial": b == s,
                         "signed_error": 0 if abs(b - s) <= 2 or (b + s) % 2 == 0 else (1 if b > s else -1)}
                        for b in range(1, 7) for s in range(1, 7)]
    return out


def write_results(root: Path, real: dict) -> Path:
    runs = _runs(real)
    tables = {"runs": runs, "iia": [], "fullswap": [], "oor": [], "dynamics": [], "pairs": []}
    for r in runs:
        tables["iia"] += _iia_rows(r)
        for name, rows in _other_rows(r).items():
            tables[name] += rows
    (root / "tables").mkdir(parents=True)
    for name, rows in tables.items():
        pd.DataFrame(rows, columns=analysis.RAW[name]).to_csv(root / "tables" / f"{name}.csv", index=False)
    meta = {"preset": "test <b>&</b>", "config": {"archs": list(ARCHS), "tasks": list(TASKS), "seeds": [0, 1]},
            "versions": {"numvars": "0.1.0"}, "hardware": {"cpu": "2 cores"}, "wall_seconds": 3723.0,
            "started": "2025-01-01T00:00:00", "finished": "2025-01-01T01:02:03"}
    (root / "meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """(results dir, analyze() output, report path) — treat as read-only."""
    root = tmp_path_factory.mktemp("results")
    runs_dir = root / "runs"                      # inside the results folder, as `reproduce` writes them
    tiny = dict(d_model=8, max_epochs=2, steps_per_epoch=2, eval_per_count=1)
    real = {("gru", "multi_object", 0): train(tiny_config(runs_dir, **tiny), progress=False).run_dir,
            ("lstm", "multi_object", 0): train(tiny_config(runs_dir, arch="lstm", **tiny), progress=False).run_dir,
            ("transformer", "multi_object", 0): train(tiny_config(runs_dir, arch="transformer", **tiny),
                                                      progress=False).run_dir,
            "npe": train(tiny_config(runs_dir, arch="transformer", pos="none", **tiny), progress=False).run_dir}
    write_results(root, real)
    out = analysis.analyze(root)
    return root, out, report.render(root)


# ---------------------------------------------------------------------------------------------
# Statistics on known numbers


def test_mean_ci_bootstraps_over_three_or_more_seeds_and_stays_inside_the_values():
    res = analysis.mean_ci([0.9, 0.95, 1.0])
    assert res["n"] == 3 and res["mean"] == pytest.approx(0.95) and res["interval"] == "bootstrap"
    assert 0.9 <= res["ci_low"] < 0.95 < res["ci_high"] <= 1.0
    assert analysis.mean_ci([0.9, 0.95, 1.0]) == res                               # seeded: the same every time
    wide = analysis.mean_ci([0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    assert 0.0 <= wide["ci_low"] < 0.5 < wide["ci_high"] <= 1.0                   # never outside [0, 1]
    same = analysis.mean_ci([0.8] * 6)
    assert same["ci_low"] == same["ci_high"] == pytest.approx(0.8)


def test_two_seeds_show_their_range_not_a_t_interval():
    res = analysis.mean_ci([0.3, 0.9])                   # a t-interval would be [-3.21, 4.41]
    assert (res["ci_low"], res["ci_high"], res["interval"]) == (0.3, 0.9, "range")


def test_mean_ci_with_one_seed_has_no_interval():
    res = analysis.mean_ci([0.7])
    assert res["mean"] == 0.7 and res["n"] == 1 and math.isnan(res["ci_low"]) and math.isnan(res["ci_high"])
    assert res["interval"] == "none"


def test_pearson_on_known_numbers_and_guards():
    r, p = analysis.pearson([1, 2, 3, 4], [1, 3, 2, 4])               # r = 4 / 5; p = 0.2 exactly for df = 2
    assert r == pytest.approx(0.8) and p == pytest.approx(0.2)
    assert all(math.isnan(v) for v in analysis.pearson([1, 2], [1, 2]))            # fewer than 3 points
    assert all(math.isnan(v) for v in analysis.pearson([1, 2, 3], [5, 5, 5]))      # constant input


# ---------------------------------------------------------------------------------------------
# Tables and figures


def test_analyze_writes_every_table_and_figure(results):
    root, out, _ = results
    for name in analysis.OUTPUTS:
        assert (root / "analysis" / f"{name}.csv").is_file() and (root / "analysis" / f"{name}.parquet").is_file()
    figs = out["figures"]
    assert list(figs["status"]) == ["ok"] * N_FIGURES, figs[["name", "reason"]]
    assert all((root / f).stat().st_size > 5000 for f in figs["file"])
    captions = json.loads((root / "figures" / "captions.json").read_text())
    assert set(captions) == set(analysis.FIGURES) and all(c.endswith(".") for c in captions.values())
    assert set(out["pca"]["arch"]) == {"gru", "lstm"}                 # both recurrent runs loaded


def test_iia_table_means_cis_controls_and_best_count(results):
    _, out, _ = results
    t = out["iia_table"].set_index(["arch", "task", "program", "variable", "map"])
    gru = t.loc[("gru", "multi_object", "up_down", "count", "orthogonal")]
    assert gru["mean"] == pytest.approx(0.95) and gru["n"] == 2       # the dropped seed's zeros are not in it
    # two seeds (0.95 ± 0.02): the interval is their range, low end first
    assert (gru["ci_low"], gru["ci_high"], gru["interval"]) == (pytest.approx(0.93), pytest.approx(0.97), "range")
    assert gru["nontrivial_mean"] == pytest.approx(0.85)
    assert t.loc[("gru", "multi_object", "up_down", "count", "linear"), "mean"] == pytest.approx(0.98)
    assert gru["untrained_mean"] == pytest.approx(0.05) and gru["random_mean"] == pytest.approx(0.05)
    assert gru["fullswap_mean"] == pytest.approx(0.08)
    best = t.loc[("lstm", "single_object", "up_up", "best_count", "orthogonal")]
    assert best["mean"] == pytest.approx(PAPER[("lstm", "single_object")][1])    # max(demo, resp) per seed
    lone = t.loc[("transformer", "same_object", "up_down", "count", "orthogonal")]
    assert lone["n"] == 1 and math.isnan(lone["ci_low"])


def test_headline_and_other_tables(results):
    _, out, _ = results
    h = out["headline"].set_index(["arch", "task", "measure", "map"])
    assert len(h) == 9 * 3 + 9                                 # Figure 2's 27 cells, Up-Down with the linear map too
    assert h.loc[("transformer", "multi_object", "full_swap", "—"), "mean"] == pytest.approx(0.97)
    assert h.loc[("gru", "multi_object", "up_down_count", "linear"), "mean"] == pytest.approx(0.98)
    sweep = out["size_sweep"].set_index("d_model")
    assert list(sweep.index) == [8, 20, 48] and sweep.loc[8, "mean"] == pytest.approx(0.6)
    dyn = out["dynamics_runs"].set_index("run_name")
    g = dyn.loc["gru-multi_object-default-d20-s0"]
    e = np.array([1, 2, 4, 8, 16])
    assert g["r"] == pytest.approx(stats.pearsonr(np.minimum(1, e / 16), e / 20 + 0.1 * (e == 2))[0])
    assert math.isnan(dyn.loc["lstm-multi_object-default-d20-s0", "r"])           # two checkpoints only
    assert g["n_after"] == 2 and g["iia_at_criterion"] == pytest.approx(0.4) and g["iia_last"] == pytest.approx(0.8)
    assert "all" in set(out["dynamics_pooled"]["scope"])
    phases = out["phase_pairs"]
    cell = phases[(phases["arch"] == "gru") & (phases["task"] == "multi_object") & (phases["phase_t"] == "T")
                  & (phases["phase_u"] == "T")].iloc[0]
    assert cell["pairs"] == 2 * 4 and cell["iia"] == pytest.approx(0.5)     # b, s in {1, 4}: (1, 4) and (4, 1) fail
    errors = out["signed_error"]
    assert set(errors["signed_error"]) == {-1, 1} and errors.groupby("arch")["fraction"].sum().eq(1).all()
    grid = out["gradience_grid"]
    assert len(grid) == 36
    expected = [float(abs(b - s) <= 2 or (b + s) % 2 == 0) for b, s in zip(grid["base_value"], grid["source_value"])]
    assert grid["iia"].tolist() == expected and (grid["pairs"] == 2).all()     # the two kept seeds, pooled
    oor = out["oor"]
    assert oor[(oor["count"] == 30)]["mean"].eq(0).all() and oor[(oor["count"] == 5)]["mean"].eq(1).all()


def test_dropped_seed_is_listed_and_excluded_everywhere(results):
    _, out, _ = results
    name = "gru-multi_object-default-d20-s2"
    assert list(out["dropped"]["run_name"]) == [name]
    assert name not in set(out["runs"]["run_name"]) and name not in set(out["dynamics_runs"]["run_name"])


def test_empty_inputs_skip_their_figures(results, tmp_path):
    root = tmp_path / "res"
    shutil.copytree(results[0], root)
    for name in ("dynamics", "pairs"):                                # a header and no rows
        pd.DataFrame(columns=analysis.RAW[name]).to_csv(root / "tables" / f"{name}.csv", index=False)
    (root / "tables" / "oor.csv").write_text("")                       # not even a header
    figs = analysis.analyze(root)["figures"].set_index("name")
    assert figs.loc["dynamics", "status"] == "skipped" and "no training-dynamics rows" in figs.loc["dynamics", "reason"]
    assert set(figs.index[figs["status"] == "skipped"]) == {"dynamics", "gradience_heatmap", "gradience_diff", "oor",
                                                           "phase_pairs", "signed_error"}
    assert not (root / "figures" / "dynamics.png").exists()               # no stale figure from the first analysis
    page = report.render(root).read_text()
    assert "Figure skipped: no training-dynamics rows" in page and page.count("<img") == N_FIGURES - 6


def test_bad_results_directories_name_the_fix(tmp_path):
    with pytest.raises(NumvarsError, match="does not exist; run `numvars reproduce`"):
        analysis.analyze(tmp_path / "nowhere")
    (tmp_path / "tables").mkdir()
    with pytest.raises(NumvarsError, match="runs.csv is missing; rerun `numvars reproduce`"):
        report.render(tmp_path)


# ---------------------------------------------------------------------------------------------
# The report


def test_report_is_self_contained_and_compares_with_the_paper(results):
    _, _, path = results
    page = path.read_text()
    srcs = re.findall(r"<img[^>]*\ssrc='([^']*)'", page)
    assert len(srcs) == page.count("<img") == N_FIGURES
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"(src|href)=['\"](https?:)?//", page) and "<link" not in page
    assert "Figure 2" in page and "✓ match" in page and "✗ mismatch" in page and "0.97" in page
    assert "n/a" in page                                                 # the one-seed condition
    assert "test &lt;b&gt;&amp;&lt;/b&gt;" in page and "<b>&</b>" not in page   # escaped meta
    assert "1 h 2 min 3 s" in page
    # the measured cause stands beside a mismatched cell (here the Transformer's full swap on Same-Object)
    assert html.escape(report.FIDELITY_NOTES[("transformer", "same_object", "full_swap", "—")], quote=True) in page


def test_report_opens_with_the_findings_and_ends_with_what_ran(results):
    """Ours beside the paper first, then the verdicts, figures and trials; the protocol and what ran (preset,
    grid, versions, hardware) last."""
    _, _, path = results
    page = path.read_text()
    sections = re.findall(r"<section id='([^']+)'", page)
    assert sections[0] == "headline" and sections[-2:] == ["protocol", "what-ran"], sections
    assert sections.index("analyses") < sections.index("trials") < sections.index("protocol")
    nav = re.findall(r"<a href='#([^']+)'>", page.split("</nav>")[0])
    assert nav[0] == "headline" and nav[-1] == "what-ran"
    # the synthetic results name no alignment folder: the explorer lists the alignments and says why it is empty
    data = json.loads(page.split("id='trial-data'>", 1)[1].split("</script>", 1)[0])
    assert data["alignments"] and all("not in this results folder" in a["note"] and not a["trials"]
                                      for a in data["alignments"])


def test_paper_comparison_verdicts(results):
    _, out, _ = results
    cmp = report.paper_comparison(out["headline"]).set_index(["arch", "task", "measure", "map"])["verdict"]
    assert cmp[("gru", "multi_object", "up_down_count", "orthogonal")] == "match"
    assert cmp[("gru", "multi_object", "up_down_count", "linear")] == "match"
    assert cmp[("transformer", "same_object", "full_swap", "—")] == "mismatch"          # ours 0.5, paper 0.97
    empty = report.paper_comparison(out["headline"].iloc[:0])
    assert set(empty["verdict"]) == {"missing"}


def _chromium() -> str:
    """The installed Chromium; the suite never installs one (`.ci/run` does, for CI)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("NUMVARS_REQUIRE_BROWSER"):
        pytest.fail("NUMVARS_REQUIRE_BROWSER is set but chromium is not on PATH")
    pytest.skip("chromium is not installed (install Debian's chromium package, as .ci/run does, to run this check)")


@pytest.mark.browser
def test_report_loads_every_figure_in_headless_chromium(results, tmp_path):
    chromium = _chromium()
    _, out, path = results
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*base, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120).stdout
    loaded = re.search(r'data-figures-loaded="(\d+)/(\d+)"', dom)
    assert loaded, dom[:500]
    n, m = int(loaded.group(1)), int(loaded.group(2))
    assert n == m >= (out["figures"]["status"] == "ok").sum() == N_FIGURES
    shot = tmp_path / "report.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1280,2400", path.as_uri()], capture_output=True,
                   timeout=120)
    from matplotlib.image import imread
    pixels = imread(shot)
    assert pixels.shape[:2] == (2400, 1280) and pixels[..., :3].std() > 0.05     # not a blank page


def test_mcnemar_and_the_paired_difference_on_known_verdicts():
    from numvars.stats import mcnemar, paired_diff, pooled_ci
    a = np.array([1] * 60 + [0] * 10 + [1] * 30, dtype=bool)          # 60 only a, 10 only b, 30 both
    b = np.array([0] * 60 + [1] * 10 + [1] * 30, dtype=bool)
    test = mcnemar(a, b)
    assert (test["a_only"], test["b_only"]) == (60, 10)
    assert test["p_greater"] == pytest.approx(stats.binomtest(60, 70, 0.5, alternative="greater").pvalue)
    assert test["p"] == pytest.approx(stats.binomtest(60, 70, 0.5).pvalue) and test["p"] < 1e-9
    assert mcnemar(b, a)["p_greater"] > 0.99 and mcnemar(a, a) == {"a_only": 0, "b_only": 0, "p_greater": 1.0, "p": 1.0}
    diff, low, high = paired_diff(a, b)
    assert diff == pytest.approx(0.5) and low < 0.5 < high and -1 <= low and high <= 1
    low, high = pooled_ci([np.ones(50), np.zeros(50)])                  # two runs that disagree completely
    assert 0.0 <= low < 0.5 < high <= 1.0
