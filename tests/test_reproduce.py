"""`numvars reproduce`: the grid, idempotent jobs, and a kill that costs nothing."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from numvars import cli
from numvars.reproduce.run import PRESETS, grid, reproduce

from recording import recorder
from tiny_preset import TINY_PRESET

TESTS = Path(__file__).parent
SCRIPT = ("import sys; sys.path.insert(0, {tests!r}); from tiny_preset import TINY_PRESET; "
          "from numvars.reproduce import reproduce; reproduce(TINY_PRESET, out={out!r}, progress=False)")


def launch(out: Path) -> subprocess.Popen:
    code = SCRIPT.format(tests=str(TESTS), out=str(out))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def tables(out: Path) -> dict[str, pd.DataFrame]:
    return {p.name: pd.read_csv(p) for p in sorted((out / "analysis").glob("*.csv"))}


BARS = []                     # the bars of the uninterrupted reproduction


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "whole"
    with pytest.MonkeyPatch.context() as m:
        m.setattr("numvars.reproduce.run.Progress", recorder(BARS))
        report = reproduce(TINY_PRESET, out=out, progress=True)
    return out, report


def test_the_grid_lists_each_run_once_and_the_paper_preset_is_full():
    specs = grid(TINY_PRESET)
    assert len(specs) == len(set(specs)) == 2 * 2 + 2 + 2       # archs × seeds, the size sweep's GRUs, NPE × seeds
    paper = grid(PRESETS["paper"])
    assert {s.seed for s in paper} == set(range(6))
    assert {s.d_model for s in paper if s.arch == "gru" and s.task == "multi_object"} == {8, 16, 20, 32, 48, 96}
    assert {s.variant for s in paper} == {"default", "npe", "void", "minimal"}
    short = grid(PRESETS["paper-short"])
    main = {s for s in short if s.variant == "default" and s.d_model == 20}
    assert main == {s for s in paper if s.variant == "default" and s.d_model == 20}   # the main grid keeps six seeds
    assert {s.seed for s in short if s not in main} == {0, 1, 2}                   # the rest has three
    assert {(s.variant, s.d_model) for s in short} == {(s.variant, s.d_model) for s in paper}


def test_the_cli_offers_every_preset():
    from numvars.cli.runs import PRESET_NAMES
    assert PRESET_NAMES == tuple(PRESETS)


def test_reproduce_writes_tables_figures_and_a_report(uninterrupted):
    out, report = uninterrupted
    assert report == out / "report.html" and report.is_file()
    for name in ("runs", "iia", "fullswap", "oor", "dynamics", "pairs", "timings"):
        assert (out / "tables" / f"{name}.csv").is_file()
    iia = pd.read_csv(out / "tables" / "iia.csv")
    assert set(iia["control"]) == {"none", "untrained", "random", "identity"}
    assert {"up_down", "up_up"} <= set(iia["program"])
    figures = pd.read_csv(out / "analysis" / "figures.csv")
    drawn = figures[figures["status"] == "ok"]
    assert len(drawn) >= 6 and all((out / f).stat().st_size > 5000 for f in drawn["file"])
    variants = pd.read_csv(out / "analysis" / "variants.csv")
    assert set(variants["variant"]) == {"default", "npe"} and set(variants["arch"]) == {"transformer"}
    page = report.read_text()
    assert "id='variants'" in page and page.count("<img") == len(drawn)
    # every run of the grid is listed with the numbers its own summary.json holds
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert len(runs) == len(grid(TINY_PRESET))
    for row in runs.itertuples():
        summary = json.loads((Path(row.run_dir) / "summary.json").read_text())
        assert summary["epochs"] == row.epochs and summary["reached_criterion"] == row.reached_criterion
    # the headline row for the GRU's Up-Down count is the mean of the per-seed IIAs in iia.csv
    ud = iia[(iia["arch"] == "gru") & (iia["task"] == "single_object") & (iia["variable"] == "count")
             & (iia["control"] == "none") & (iia["d_model"] == TINY_PRESET.d_model)]
    headline = pd.read_csv(out / "analysis" / "headline.csv")
    row = headline[(headline["arch"] == "gru") & (headline["task"] == "single_object")
                   & (headline["measure"] == "up_down_count")].iloc[0]
    assert row["mean"] == pytest.approx(ud["iia"].mean()) and row["n"] == len(TINY_PRESET.seeds)


def test_one_worker_and_two_give_the_same_tables_and_each_records_its_workers(uninterrupted, tmp_path):
    whole, _ = uninterrupted                                  # ran with one worker per core
    serial = tmp_path / "serial"
    reproduce(TINY_PRESET, out=serial, progress=False, jobs=1)
    mine, reference = tables(serial), tables(whole)
    assert mine.keys() == reference.keys()
    for name in reference:
        if name not in ("figures.csv", "runs.csv"):            # these hold paths of the results directory
            pd.testing.assert_frame_equal(mine[name], reference[name], obj=name)
    workers = {asked: json.loads((out / "meta.json").read_text())["hardware"]["jobs"]
               for asked, out in (("default", whole), ("jobs=1", serial))}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert workers == {"default": cores, "jobs=1": 1}                # as asked, and recorded in meta.json


def _ray():
    try:
        import ray
    except ImportError:
        if os.environ.get("NUMVARS_REQUIRE_RAY"):
            pytest.fail("NUMVARS_REQUIRE_RAY is set but Ray is not installed")
        pytest.skip("Ray is not installed (the numvars[ray] extra runs this check)")
    return ray


@pytest.mark.ray
def test_the_ray_engine_gives_the_same_tables(uninterrupted, tmp_path, monkeypatch):
    ray = _ray()
    whole, _ = uninterrupted
    out = tmp_path / "ray"
    monkeypatch.setenv("RAY_worker_niceness", "0")    # Ray nices its workers; on a busy machine they would starve
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)    # a local Ray with 2 CPUs
    try:
        reproduce(TINY_PRESET, out=out, progress=False, engine="ray")
    finally:
        ray.shutdown()
    mine, reference = tables(out), tables(whole)
    assert mine.keys() == reference.keys()
    for name in reference:
        if name not in ("figures.csv", "runs.csv"):
            pd.testing.assert_frame_equal(mine[name], reference[name], obj=name)
    assert json.loads((out / "meta.json").read_text())["hardware"]["engine"] == "ray"


def test_a_rerun_reuses_every_job(uninterrupted):
    out, _ = uninterrupted
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    reproduce(TINY_PRESET, out=out, progress=False)
    after = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    assert before == after                                   # nothing trained, aligned or evaluated again


def test_a_killed_reproduction_resumes_and_ends_with_identical_tables(uninterrupted, tmp_path):
    whole, _ = uninterrupted
    out = tmp_path / "killed"
    proc = launch(out)
    deadline = time.time() + 120
    while len(list((out / "runs").glob("*/summary.json"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)                      # half-way: some runs finished, others not
    proc.wait()
    finished = len(list((out / "runs").glob("*/summary.json")))
    assert 2 <= finished < len(grid(TINY_PRESET)), "kill the job half-way, not before or after"
    assert not (out / "report.html").exists()
    reproduce(TINY_PRESET, out=out, progress=False)
    mine, reference = tables(out), tables(whole)
    assert mine.keys() == reference.keys()
    for name in reference:
        if name == "figures.csv" or name == "runs.csv":
            continue                                          # these hold paths of the results directory
        pd.testing.assert_frame_equal(mine[name], reference[name], obj=name)
    runs = pd.read_csv(out / "analysis" / "runs.csv").drop(columns=["run_dir"])
    pd.testing.assert_frame_equal(runs, pd.read_csv(whole / "analysis" / "runs.csv").drop(columns=["run_dir"]))


@pytest.mark.parametrize("argv, words", [
    (["reproduce", "--preset", "huge"], ["invalid choice: 'huge'", "numvars reproduce --help"]),
    (["reproduce", "--jobz", "2"], ["unrecognized arguments: --jobz"]),
    (["frobnicate"], ["invalid choice: 'frobnicate'"]),
    ([], ["the following arguments are required: command"]),
])
def test_usage_mistakes_are_one_line_errors(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:                     # argparse rejects it before anything runs
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("numvars: error: ")
    for w in words:
        assert w in err
    assert list(tmp_path.iterdir()) == []


def test_analyze_and_report_commands(uninterrupted, capsys):
    out, _ = uninterrupted
    assert cli.main(["analyze", str(out)]) == 0
    assert cli.main(["report", str(out)]) == 0
    assert str(out / "report.html") in capsys.readouterr().out


def test_analyze_a_missing_results_directory_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["analyze", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_the_plan_counts_every_job_and_what_is_already_done(uninterrupted, tmp_path):
    from numvars.reproduce.plan import plan
    fresh = plan(TINY_PRESET, tmp_path / "fresh", workers=2).counts.set_index("kind")
    assert fresh.loc["train", "jobs"] == fresh.loc["train", "to_run"] == len(grid(TINY_PRESET))
    assert (fresh["done"] == 0).all() and (fresh["seconds"] > 0).all()
    assert {"das", "fullswap", "eval", "attention", "align_models"} <= set(fresh.index)   # explain's jobs are in the grid
    one, two = (plan(TINY_PRESET, tmp_path / "fresh", workers=w).wall_seconds for w in (1, 2))
    assert two < one
    whole, _ = uninterrupted
    done = plan(TINY_PRESET, whole, workers=2).counts.set_index("kind")
    grid_kinds = done.drop(index=["align_models", "explain_page", "report"])   # costed, not looked up (no jobs)
    assert (grid_kinds["done"] == grid_kinds["jobs"]).all() and grid_kinds["seconds"].sum() == 0


def test_the_bar_shows_the_planned_jobs_from_the_start_and_every_one_is_accounted_for(uninterrupted):
    bar, = BARS
    assert bar.budget.total_jobs > len(grid(TINY_PRESET))
    assert set(bar.totals) == {bar.budget.total_jobs}                 # the total never changed
    assert bar.before_close == bar.total                          # each job ran or was credited when skipped
    assert bar.kinds["train"] == len(grid(TINY_PRESET))
    assert bar.remaining() == pytest.approx(0.0, abs=1e-6)


def test_explains_jobs_run_with_the_grid_but_stay_out_of_its_tables(uninterrupted):
    out, _ = uninterrupted
    swaps = pd.read_csv(out / "tables" / "fullswap.csv")
    assert not swaps.duplicated(["run_name", "site", "program"]).any()      # explain's full swaps are not here
    iia = pd.read_csv(out / "tables" / "iia.csv")
    assert set(iia.loc[iia["control"] != "none", "program"]) == {"up_down"}    # nor its controls of Up-Up
    explained = pd.read_csv(out / "tables" / "explain.csv")
    assert len(explained) == 2 and set(explained["arch"]) == {"gru", "transformer"}


def test_the_results_page_and_the_readme_figures_show_the_folders_numbers(uninterrupted, tmp_path):
    out, _ = uninterrupted
    bench = TESTS.parent / "benchmarks"
    doc, img = tmp_path / "docs" / "results.md", tmp_path / "docs" / "img"
    for script, args in (("results_page.py", ["--doc", doc, "--img", img / "results"]),
                         ("readme_figures.py", ["--img", img])):
        subprocess.run([sys.executable, str(bench / script), str(out), *map(str, args)], check=True,
                       capture_output=True)
    page = doc.read_text()
    for section in ("## Figure 2", "## Figure 3 (left)", "## Figure 4", "## Figure 6", "## Variants",
                    "## Beyond the paper", "## The paper's qualitative claims"):
        assert section in page
    for link in re.findall(r"\]\((img/results/[^)]+)\)", page):
        assert (doc.parent / link).is_file()
    # the Figure 2 row shows the headline's mean, and the README figure was drawn from the same cells
    head = pd.read_csv(out / "analysis" / "headline.csv").set_index(["arch", "task", "measure", "map"])
    mean = head.loc[("gru", "single_object", "up_down_count", "orthogonal"), "mean"]
    assert f"| gru | single_object | Up-Down count | 0.94 [0.92–0.96] | {mean:.2f}" in page
    captions = json.loads((img / "captions.json").read_text())
    assert set(captions) == {"figure2.png", "k_curve_gru.png"} and all("preset tiny" in c for c in captions.values())
    assert (img / "figure2.png").stat().st_size > 5000 and (img / "k_curve_gru.png").stat().st_size > 5000
