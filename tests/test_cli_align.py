"""`numvars align` and `numvars fullswap`: results saved once, mistakes in one line."""
import importlib
import json
import shutil

import pytest

from numvars.config import from_mapping
from numvars.explain.verdict import title
from numvars.train import train

from test_cli import assert_one_line_error, run_cli, snapshot

SMALL = ["n_train=300", "n_val=100", "n_test=100", "max_epochs=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A GRU that reaches the criterion on counts 1..5 in a few seconds, and one that does not."""
    out = tmp_path_factory.mktemp("align_runs")
    good = train(from_mapping({"task": "single_object", "d_model": 12, "max_count": 5, "holdouts": "",
                               "out": str(out)}), progress=False)
    assert good.summary["reached_criterion"]
    bad = train(from_mapping({"task": "single_object", "d_model": 4, "max_epochs": 1, "out": str(out)}),
                progress=False)
    return good.run_dir, bad.run_dir


def test_align_prints_iia_and_saves_the_result_then_reuses_it(trained, capsys):
    run = trained[0]
    code, out, _ = run_cli(capsys, "align", run, "program=up_down", "variable=count", "k=6", *SMALL, "--quiet")
    assert code == 0 and "IIA (teacher-forced)" in out and "IIA (free-running)" in out
    result_dir = out.strip().split("result: ")[-1]
    saved = json.loads((__import__("pathlib").Path(result_dir) / "result.json").read_text())
    assert saved["k"] == 6 and saved["variables"] == ["count"]
    assert f"IIA (teacher-forced)    {saved['iia']:.3f}" in out and saved["options"]["n_train"] == 300
    assert "IIA, non-trivial pairs" in out and "IIA by phase of t (rows) and u (columns)" in out
    code, again, _ = run_cli(capsys, "align", run, "program=up_down", "variable=count", "k=6", *SMALL, "--quiet")
    assert code == 0 and again.startswith("reused")


def test_align_two_variables_with_a_linear_map_and_the_untrained_control(trained, capsys):
    code, out, _ = run_cli(capsys, "align", trained[0], "variable=count,phase", "k=3", "map=linear", *SMALL, "--quiet")
    assert code == 0 and "IIA [count]" in out and "IIA [phase]" in out
    code, out, _ = run_cli(capsys, "align", trained[0], "control=untrained", *SMALL, "--quiet")
    assert code == 0 and "control=untrained" in out


def test_fullswap_scores_both_programs(trained, capsys):
    code, out, _ = run_cli(capsys, "fullswap", trained[0], "n=100")
    assert code == 0 and "IIA [ctx_distributed]" in out and "IIA [up_down]" in out


@pytest.mark.parametrize("args, words", [
    (["program=nope"], ["unknown program"]),
    (["variable=demo_count"], ["no variable 'demo_count'"]),
    (["program=up_up", "variable=count"], ["no variable 'count'"]),
    (["k=0"], ["k=0"]),
    (["k=13"], ["k=13"]),
    (["k=two"], ["cannot read k"]),
    (["colour=red"], ["unknown align key"]),
    (["map=mlp"], ["unknown map"]),
    (["control=sometimes"], ["unknown control"]),
    (["site=resid.1"], ["unknown site 'resid.1'", "its site is 'state'"]),
])
def test_bad_align_requests_are_one_line_errors_and_write_nothing(trained, capsys, tmp_path, args, words):
    run = shutil.copytree(trained[0], tmp_path / "run", ignore=shutil.ignore_patterns("align"))   # no align/ yet
    before = snapshot(run)
    code, _, err = run_cli(capsys, "align", run, *args, *SMALL, "--quiet")
    assert_one_line_error(code, err, *words)
    assert snapshot(run) == before


def test_aligning_a_run_that_never_reached_the_criterion_is_refused(trained, capsys):
    before = snapshot(trained[1])
    code, _, err = run_cli(capsys, "align", trained[1], *SMALL)
    assert_one_line_error(code, err, "never reached the accuracy criterion")
    assert snapshot(trained[1]) == before


def test_aligning_a_missing_run_is_refused(tmp_path, capsys):
    code, _, err = run_cli(capsys, "align", tmp_path / "nothing")
    assert_one_line_error(code, err, "does not exist")


def test_results_of_an_older_protocol_are_ignored_and_said_so(trained, capsys, monkeypatch):
    import numvars
    args = ["align", trained[0], "k=5", *SMALL, "--quiet"]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    code, out, err = run_cli(capsys, *args)
    assert out.startswith("reused") and err == ""
    monkeypatch.setattr(numvars, "PROTOCOL", numvars.PROTOCOL + 1)       # as if the scoring code had changed
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and out.startswith("aligned")
    assert "ignoring 1 result(s) computed by an older numvars" in err and str(trained[0]) in err
    saved = json.loads((__import__("pathlib").Path(out.strip().split("result: ")[-1]) / "result.json").read_text())
    assert saved["protocol"] == numvars.PROTOCOL and saved["options"]["k"] == 5


def test_a_run_trained_by_an_older_protocol_is_retrained_and_said_so(tmp_path, capsys, monkeypatch):
    import numvars
    from test_cli import TINY_ARGS
    code, first, _ = run_cli(capsys, "train", "--quiet", f"out={tmp_path}", *TINY_ARGS)
    monkeypatch.setattr(numvars, "TRAIN_PROTOCOL", numvars.TRAIN_PROTOCOL + 1)
    code, second, err = run_cli(capsys, "train", "--quiet", f"out={tmp_path}", *TINY_ARGS)
    assert code == 0 and second.startswith("trained: ") and first.split()[1] != second.split()[1]
    assert "ignoring 1 result(s) computed by an older numvars" in err


def named_by_the_rule(doc: dict) -> tuple[str, str]:
    """(best, grade) as the decision rule explain.json states gives them from the evidence it records: a variable
    is found when its alignment beats every control by the margin with p < alpha; a program stands when all its
    core variables are found (Context-Distributed: when its full swap beats its control); the standing, unrefuted
    program storing the most variables is named, strong when it stands alone and every core variable reaches
    `strong` non-trivial IIA (Context-Distributed: its full swap does), partial otherwise."""
    o = doc["options"]
    beats = lambda c: c["learned"] - c["high"] >= o["margin"] and c["p"] < o["alpha"]     # noqa: E731
    for v in doc["ranking"]:
        for e in v["variables"]:
            assert e["found"] == (bool(e["controls"]) and all(map(beats, e["controls"]))), (v["program"], e)
        swap_found = all(map(beats, v["controls"])) if v["controls"] else v["score"] >= o["margin"]
        assert v["standing"] == all([e["found"] for e in v["variables"]] or [swap_found]), v["program"]
    candidates = sorted((v for v in doc["ranking"] if v["standing"] and not v["refuted_by"]),
                        key=lambda v: (-v["stored_variables"], -v["score"]))
    if not candidates:
        return "none", "none"
    named = candidates[0]
    reached = [(e["iia"] if e["nontrivial"] is None else e["nontrivial"]) >= o["strong"] for e in named["variables"]] \
        or [named["score"] >= o["strong"]]
    return named["program"], "strong" if len(candidates) == 1 and all(reached) else "partial"


def test_explain_prints_the_verdict_its_rule_gives_from_its_evidence_and_reuses_every_result(trained, capsys,
                                                                                             tmp_path, monkeypatch):
    out = tmp_path / "explain"
    args = ["explain", trained[0], "ks=d/2", "maps=orthogonal", "site=default", "n_train=300", "n_val=100",
            "n_test=100", "--out", out, "--quiet"]
    code, text, err = run_cli(capsys, *args)
    assert code == 0, err
    doc = json.loads((out / "explain.json").read_text())
    assert sorted(v["program"] for v in doc["ranking"]) == ["ctx_distributed", "up_down", "up_up"]   # each once
    best, grade = named_by_the_rule(doc)
    assert (doc["best"], doc["grade"]) == (best, grade) and "McNemar" in doc["rule"]
    if best == "none":
        assert text.startswith("verdict: no program fits"), text
    else:
        assert doc["ranking"][0]["program"] == best and doc["ranking"][0]["grade"] == grade
        assert text.startswith(f"verdict: {title(best)} ({grade}: "), text
    assert "  1. " in text and "  3. " in text
    controls = {c["name"] for v in doc["ranking"] for e in v["variables"] for c in e["controls"]}
    assert "random subspace" in controls
    page = (out / "explain.html").read_text()
    assert "Decision rule" in page and "Where the programs disagree" in page and page.count("<img") >= 2
    for module, name in (("numvars.jobs.cache", "das"), ("numvars.jobs.cache", "full_swap"),
                         ("numvars.align.search", "das_set"), ("numvars.explain.runs", "collect")):      # a second explain computes none of them again
        monkeypatch.setattr(importlib.import_module(module), name,
                            lambda *a, name=name, **k: pytest.fail(f"{name} ran again instead of being reused"))
    code, again, err = run_cli(capsys, *args, "--jobs", "1")         # one worker: in this process, patched
    assert code == 0, err
    assert again == text


def test_explain_of_a_run_of_another_task_is_refused_in_one_line_naming_it(trained, capsys, tmp_path):
    other = train(from_mapping({"task": "same_object", "d_model": 8, "max_count": 3, "holdouts": "",
                                "out": str(tmp_path / "runs")}), progress=False)
    assert other.summary["reached_criterion"]                  # so the task is all that can be refused
    before = snapshot(trained[0]), snapshot(other.run_dir)
    code, _, err = run_cli(capsys, "explain", trained[0], other.run_dir, "--out", tmp_path / "explain", "--quiet")
    assert_one_line_error(code, err, f"{other.run_dir} was trained on another task than {trained[0]}")
    assert (snapshot(trained[0]), snapshot(other.run_dir)) == before and not (tmp_path / "explain").exists()


def test_align_models_reports_every_direction(trained, capsys, tmp_path):
    other = train(from_mapping({"task": "single_object", "d_model": 12, "max_count": 5, "holdouts": "", "seed": 1,
                                "out": str(trained[0].parent)}), progress=False).run_dir
    code, text, err = run_cli(capsys, "align-models", trained[0], other, "n_train=300", "n_val=100", "n_test=100",
                              "max_epochs=2", "--quiet")
    assert code == 0, err
    for direction in ("B's count into A", "A's count into B", "A's count into A", "B's count into B"):
        assert direction in text
    code, _, err = run_cli(capsys, "align-models", trained[0], other, "colour=red", "--quiet")
    assert_one_line_error(code, err, "unknown align-models key")


def test_the_attention_test_needs_a_transformer(trained, capsys):
    code, _, err = run_cli(capsys, "attention", trained[0], "n=50")
    assert_one_line_error(code, err, "needs a Transformer")
