"""Saved trials: the sample an alignment keeps (bounded, failures and distinguishing pairs in it), what each
trial holds, `numvars trials` in a terminal, and how large the pages' explorer data may grow."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from numvars import align, explorer, models
from numvars.align.trials import MAX_TRIALS, choose
from numvars.models import ModelConfig
from numvars.tasks import get_task

from test_cli import assert_one_line_error, run_cli

TASK = get_task("multi_object")


def test_the_sample_is_bounded_deterministic_and_holds_failures_and_distinguishing_pairs():
    rng = np.random.default_rng(0)
    failed = rng.random(1000) < 0.05                     # 50 failures, rare among 1000 pairs
    split = rng.random(1000) < 0.5
    pick = choose(failed, split)
    assert len(pick) == MAX_TRIALS and len(set(pick)) == MAX_TRIALS and (np.diff(pick) > 0).all()
    assert failed[pick].sum() == failed.sum()                                   # every failure, when they fit
    assert split[pick].sum() >= MAX_TRIALS // 3
    assert (choose(failed, split) == pick).all()                                # the same every time
    many = choose(np.ones(1000, bool), np.zeros(1000, bool), 30)                # more failures than the limit
    assert len(many) == 30 and many.max() > 900                                 # spread over all of them
    assert (choose(failed[:40], split[:40]) == np.arange(40)).all()             # few pairs: all of them
    rare = np.zeros(1000, bool)
    rare[[3, 500, 998]] = True
    assert set(np.flatnonzero(rare)) <= set(choose(np.zeros(1000, bool), rare, 10))


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    """An untrained GRU's alignment on counts 1..20, saved: it fails most trials, so failures are plenty."""
    model = models.build(ModelConfig(arch="gru", vocab_size=TASK.vocab_size, d_model=8), seed=0)
    result = align.das(model, TASK, "up_down", "count", n_train=50, n_val=20, n_test=400, max_epochs=1)
    folder = result.save(tmp_path_factory.mktemp("aligned") / "das-test")
    return result, folder


def test_an_alignment_saves_its_trials_token_by_token(aligned):
    result, folder = aligned
    trials = align.DASResult.load(folder).trials
    assert len(trials) == MAX_TRIALS < len(result.pairs)
    assert (~trials["correct"]).sum() >= MAX_TRIALS // 3 and trials["distinguishing"].sum() >= MAX_TRIALS // 3
    pairs = result.pairs.iloc[trials["pair"]].reset_index(drop=True)
    for column in ("t", "u", "base_count", "phase_t", "correct", "trivial"):
        assert (trials[column].to_numpy() == pairs[column].to_numpy()).all(), column
    for r in trials.itertuples():
        base, expected, model = r.base.split(), r.expected.split(), r.model.split()
        scored = [c == "1" for c in r.scored]
        assert base[0] == "BOS" and base[-1] == "EOS" and base.count("D0") + base.count("D1") + base.count("D2") \
            == r.base_count
        assert expected[-1] == "EOS" and len(expected) == len(scored) == len(model)
        right = all(m == x for m, x, s in zip(model, expected, scored) if s)
        assert right == r.correct                       # the verdict is what the saved tokens show
        predictions = json.loads(r.predictions)
        assert predictions["up_down.count"] == r.expected
        assert set(predictions) == {"up_down.count", "up_up.demo_count", "up_up.resp_count", "ctx_distributed"}
        assert r.distinguishing == any(predictions[k] != r.expected for k in ("up_up.demo_count", "up_up.resp_count"))
        logprobs = r.token_logprob.split()
        assert [v != "-" for v in logprobs] == scored
        assert sum(float(v) for v in logprobs if v != "-") == pytest.approx(r.logprob, abs=1e-2)


def test_numvars_trials_prints_plain_text_with_filters(aligned, capsys):
    _, folder = aligned
    code, out, err = run_cli(capsys, "trials", folder, "--n", "3")
    assert code == 0, err
    assert out.startswith(f"{MAX_TRIALS} of {MAX_TRIALS} saved trials pass the filters; showing 3")
    assert "\033[" not in out and out.count("\npair ") == 3           # not a terminal: no colour
    assert "  base " in out and "  source " in out and "  up_up.demo_count " in out and "[" in out
    code, out, _ = run_cli(capsys, "trials", folder, "--failed", "--phase", "demo,response", "--n", "1000")
    assert code == 0
    heads = [line for line in out.splitlines() if line.startswith("pair ")]
    assert heads and all(": wrong" in h and "(demo), u = " in h and "(response)" in h for h in heads)


def test_on_a_terminal_differences_are_red_and_the_swap_positions_reversed(aligned):
    from numvars.align import trial_text

    text = trial_text.show(aligned[1], n=1, colour=True, failed=True)
    assert "\033[31mwrong\033[0m" in text and "\033[7m" in text and "*" not in text.split("\n", 3)[3]
    lines = text.splitlines()
    model = next(line for line in lines if line.startswith("  model "))
    assert "\033[31m" in model                         # a failed trial: the model's wrong tokens in red


@pytest.mark.parametrize("damage, args, words", [
    ("none", ["--phase", "middle"], ["--phase 'middle'", "demo, T, response"]),
    ("none", ["--phase", "demo,T,response"], ["--phase"]),
    ("none", ["--n", "-1"], ["--n"]),
    ("trials", [], ["no trials saved"]),
    ("folder", [], ["is not a folder"]),
    ("result", [], ["not an alignment folder"]),
])
def test_bad_numvars_trials_input_is_one_line_exit_2(aligned, tmp_path, capsys, damage, args, words):
    folder = shutil.copytree(aligned[1], tmp_path / "das-copy")
    if damage == "trials":                                 # an alignment made before trials were saved
        (folder / "trials.parquet").unlink()
    elif damage == "folder":
        shutil.rmtree(folder)
    elif damage == "result":
        (folder / "result.json").unlink()
    code, _, err = run_cli(capsys, "trials", folder, *args)
    assert_one_line_error(code, err, *words)


# Measured on quick-preset-like pages (docs/guide.md states these bounds): explain shows about 6 alignments of
# 300 trials (the best of each core variable and its untrained control), the report 27 headline alignments of
# 100; sequences of counts up to 20.
EXPLAIN_BOUND, REPORT_BOUND = 1_000_000, 1_500_000


def test_the_explorer_data_of_a_quick_preset_page_stays_under_the_stated_bound(aligned):
    result, _ = aligned
    longest = result.trials.sort_values("base_count", ascending=False)
    explain = explorer.section([explorer.Shown(f"alignment {i}", longest, result.pairs) for i in range(6)])
    report = explorer.section([explorer.Shown(f"alignment {i}", longest.iloc[:100], result.pairs)
                               for i in range(27)])
    assert 100_000 < len(explain.encode()) < EXPLAIN_BOUND
    assert 100_000 < len(report.encode()) < REPORT_BOUND
    data = explorer.data([explorer.Shown("a", longest, result.pairs)])
    assert len(data["alignments"][0]["trials"]) == MAX_TRIALS and len(data["tokens"]) <= len(explorer.ALPHABET)


def test_the_explorer_data_cannot_close_its_script_element():
    hostile = pd.DataFrame([{"pair": 0, "variable": "</script><b>x", "base": "BOS </script> EOS", "source": "BOS EOS",
                             "t": 1, "u": 0, "base_count": 1, "source_count": 0, "base_value": 1, "source_value": 0,
                             "phase_t": "demo", "phase_u": "demo", "trivial": False, "distinguishing": False,
                             "correct": False, "correct_free": False, "logprob": -1.0, "expected": "EOS",
                             "scored": "1", "model": "EOS", "model_free": "EOS", "token_logprob": "-1.0",
                             "predictions": json.dumps({"x</script>": "EOS"})}])
    page = explorer.section([explorer.Shown("<img src=x onerror=alert(1)>", hostile)])
    payload = page.split("id='trial-data'>", 1)[1].split("</script>", 1)[0]
    assert "<" not in payload and "</script><b>" not in page
    assert json.loads(payload)["alignments"][0]["label"] == "<img src=x onerror=alert(1)>"
