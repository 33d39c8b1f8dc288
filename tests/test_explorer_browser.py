"""The trial explorer in headless Chromium (and, without it, the explain page's caption): an explain page and a report built from a tiny trained run. A
driver script (explorer_driver.js), injected into a copy of each page, picks every alignment, applies each
filter, clicks heatmap cells and opens a trial; what the page then shows is checked against the alignment
folders' own files (trials.parquet, pairs.parquet). DOM assertions, no screenshots."""
from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from numvars import report
from numvars.config import from_mapping
from numvars.explain.runs import explain_runs
from numvars.train import train

from test_report import _chromium, write_results

DRIVER = Path(__file__).with_name("explorer_driver.js")


def alignment_folder(run_dir: Path, program: str, variable: str) -> Path:
    for result in sorted((run_dir / "align").glob("das-*/result.json")):
        s = json.loads(result.read_text())
        if (s["program"], s["variables"], s["control"]) == (program, [variable], None):
            return result.parent
    raise AssertionError(f"no {program}.{variable} alignment in {run_dir}")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(explain.html, report.html, the Up-Down and Up-Up alignment folders) of one tiny trained GRU."""
    root = tmp_path_factory.mktemp("explorer") / "results"
    run = train(from_mapping({"task": "single_object", "d_model": 12, "max_count": 5, "holdouts": "",
                              "out": str(root / "runs")}), progress=False)
    assert run.summary["reached_criterion"]
    _, out = explain_runs([run.run_dir], jobs=1, progress=False, ks="d/2", maps="orthogonal", n_train=200,
                          n_val=50, n_test=200, n_eval=200)
    folders = {v: alignment_folder(run.run_dir, p, v) for p, v in (("up_down", "count"), ("up_up", "demo_count"))}
    write_results(root, {})                       # a results folder whose GRU Multi-Object seed 0 is this run
    iia = pd.read_csv(root / "tables" / "iia.csv")
    for variable, folder in folders.items():
        at = (iia["arch"] == "gru") & (iia["task"] == "multi_object") & (iia["seed"] == 0) & (iia["d_model"] == 20) \
            & (iia["variant"] == "default") & (iia["control"] == "none") & (iia["variable"] == variable)
        iia.loc[at, "result_dir"] = str(folder)
    iia.to_csv(root / "tables" / "iia.csv", index=False)
    return out / "explain.html", report.render(root), folders


def drive(page: Path, alignment: int, tmp_path: Path) -> dict:
    """Load a copy of the page with the driver in headless Chromium; what the driver saw."""
    chromium = _chromium()
    copy = tmp_path / f"driven-{page.name}"
    copy.write_text(page.read_text().replace("</body>", f"<script>window.TEST_ALIGNMENT = {alignment};</script>"
                                                        f"<script>{DRIVER.read_text()}</script></body>"))
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
                          copy.as_uri()], capture_output=True, text=True, timeout=180).stdout
    found = re.search(r'<pre id="test-out">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1)))


def check_filters(seen: dict, trials: pd.DataFrame, pairs: pd.DataFrame) -> None:
    ids = lambda mask: trials.loc[mask, "pair"].tolist()  # noqa: E731
    assert seen["filters"]["f-failed"] == ids(~trials["correct"])
    assert seen["filters"]["f-nontrivial"] == ids(~trials["trivial"])
    assert seen["filters"]["f-distinguishing"] == ids(trials["distinguishing"])
    assert seen["phase"][""] == ids(trials["pair"] >= 0)
    for value, listed in seen["phase"].items():
        if value:
            t, u = value.split("|")
            assert listed == ids((trials["phase_t"] == t) & (trials["phase_u"] == u)), value
    assert seen["counts"] == ids(trials["base_count"].between(2, 3) & trials["source_count"].between(2, 3))
    assert len(seen["cells"]) == 4 and seen["after_clear"] == len(trials)
    for cell in seen["cells"]:
        columns = ("base_value", "source_value") if cell["kind"] == "count" else ("phase_t", "phase_u")
        cast = int if cell["kind"] == "count" else str
        inside = lambda f: (f[columns[0]] == cast(cell["a"])) & (f[columns[1]] == cast(cell["b"]))  # noqa: E731
        assert cell["rows"] == ids(inside(trials)), cell
        assert cell["text"] == f"{pairs.loc[inside(pairs), 'correct'].mean():.2f}"      # IIA over every test pair
        assert cell["a"] in cell["chip"] and cell["b"] in cell["chip"]


def check_trial(detail: dict, trials: pd.DataFrame) -> None:
    r = trials.set_index("pair").loc[detail["pair"]]
    assert not r["correct"]                                       # opened from the failed-only list
    assert detail["base"] == r["base"].split() and detail["base_swap"] == r["t"]
    assert detail["source"] == r["source"].split() and detail["source_swap"] == r["u"]
    expected, scored = r["expected"].split(), [c == "1" for c in r["scored"]]
    assert [text for text, _ in detail["rows"]["expected"]] == expected
    for row, saved in (("model", r["model"]), ("model_free", r["model_free"])):
        shown = detail["rows"][row]
        for (text, differs), token, want, s in zip(shown, saved.split(), expected, scored):
            assert (text, differs) == ((token, token != want) if s else ("·", False)), row
    assert any(differs for _, differs in detail["rows"]["model"])  # a failed trial shows where it went wrong
    for name, tokens in json.loads(r["predictions"]).items():
        assert [text for text, _ in detail["rows"][f"program:{name}"]] == tokens.split()
    logprobs = [text for text, _ in detail["rows"]["logprob"]]
    assert logprobs == ["" if v == "-" else f"{float(v):.2f}" for v in r["token_logprob"].split()]


@pytest.mark.browser
def test_the_explain_pages_explorer_filters_lists_cells_and_shows_a_trial_as_saved(built, tmp_path):
    page, _, folders = built
    seen = drive(page, 0, tmp_path)
    assert seen["ready"] == "1" and seen["alignments"][0]["label"].startswith("Up-Down: count at state")
    trials = pd.read_parquet(folders["count"] / "trials.parquet")
    pairs = pd.read_parquet(folders["count"] / "pairs.parquet")
    assert seen["alignments"][0]["rows"] == trials["pair"].tolist()
    assert seen["alignments"][0]["shown"] == f"{len(trials)} of {len(trials)} saved trials shown"
    assert all(a["rows"] and not a["note"] for a in seen["alignments"])
    check_filters(seen, trials, pairs)
    check_trial(seen["detail"], trials)


@pytest.mark.browser
def test_the_reports_explorer_shows_the_headline_alignments_saved_trials(built, tmp_path):
    _, page, folders = built
    probe = drive(page, 0, tmp_path)
    labels = [a["label"] for a in probe["alignments"]]
    mine = next(i for i, label in enumerate(labels) if label.startswith("gru, multi_object, seed 0: up_down count"))
    seen = drive(page, mine, tmp_path) if mine else probe
    trials = pd.read_parquet(folders["count"] / "trials.parquet")
    shown = trials[trials["pair"].isin(seen["alignments"][mine]["rows"])].reset_index(drop=True)
    assert len(shown) == report.report_trials.REPORT_TRIALS == len(seen["alignments"][mine]["rows"])
    assert (~shown["correct"]).sum() >= min((~trials["correct"]).sum(), report.report_trials.REPORT_TRIALS // 3)
    others = [a for a in seen["alignments"] if not a["rows"]]
    assert others and all("no trials saved" in a["note"] for a in others)
    check_filters(seen, shown, pd.read_parquet(folders["count"] / "pairs.parquet"))
    check_trial(seen["detail"], shown)


def test_the_explain_pages_count_by_count_caption_names_the_models_own_size_once(built):
    """The caption once read "GRU, Multi-Object, d = 0" under a d = 20 model's heatmap: it names the model
    explained (here a d = 12 GRU on Single-Object) and its size, once."""
    page = html.unescape(built[0].read_text())
    caption = re.search(r"by the base's and the source's count at the swapped positions \((.*?); blank: no pairs\)", page)
    assert caption, "no count-by-count caption"
    text = caption.group(1)
    assert text.startswith("gru on single_object, d = 12, 1 run(s)") and text.count("d = ") == 1, text
    assert "Multi-Object" not in text and "d = 0" not in text
