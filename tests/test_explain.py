"""`explain` names the algorithm a network runs; cross-model alignment; the attention test."""
import json

import pytest
import torch

from handbuilt import LineCounter, SkewCounter, SkewUpUpCounter, UpUpCounter, summing_transformer
from numvars import models
from numvars.align.attention import attention_test
from numvars.align.align_models import align_models
from numvars.errors import NumvarsError
from numvars.explain import ExplainOptions, explain
from numvars.models import ModelConfig
from numvars.tasks import get_task

TASK = get_task("multi_object")
SMALL = dict(ks="1,d/2", maps="orthogonal", n_train=2000, n_val=300, n_test=500, n_eval=1000, jobs=1)


def up_down_counter():
    return LineCounter(TASK)


def random_gru():
    return models.build(ModelConfig(arch="gru", vocab_size=TASK.vocab_size, d_model=8), seed=0)



def test_an_up_down_counter_is_named_up_down_and_wins_where_up_up_predicts_otherwise():
    x = explain(up_down_counter(), TASK, progress=False, **SMALL)
    assert (x.best, x.grade) == ("up_down", "strong"), x.text
    fights = [d for d in x.duels if {d.program, d.rival} == {"up_down", "up_up"}]
    assert {d.rival_variable if d.program == "up_down" else d.variable for d in fights} == {"demo_count",
                                                                                           "resp_count"}
    for d in fights:
        mine, theirs = (d.iia, d.rival_iia) if d.program == "up_down" else (d.rival_iia, d.iia)
        assert d.distinguishing > 100 and mine > 0.9 > 0.5 > theirs and d.p < 1e-6
        assert d.winner == ("program" if d.program == "up_down" else "rival")
    up_up = next(v for v in x.verdicts if v.program == "up_up")
    assert not up_up.fits and "up_down" in up_up.refuted_by
    assert x.text.startswith("Up-Down (strong: count IIA 1.00") and "where they differ" in x.text


def test_an_up_up_counter_is_named_up_up_and_up_down_is_said_to_fit_as_well():
    """Swapping both of an Up-Up network's counters is Up-Down's count swap, so Up-Down cannot lose where the
    two disagree: the finer program is named, and the verdict says the other fits too."""
    x = explain(UpUpCounter(TASK), TASK, progress=False, **SMALL)
    assert (x.best, x.grade) == ("up_up", "partial"), x.text
    up_down = next(v for v in x.verdicts if v.program == "up_down")
    assert up_down.grade == "also" and not up_down.refuted_by
    assert all(d.winner is None for d in x.duels if {d.program, d.rival} == {"up_down", "up_up"})
    assert "Up-Down fits as well" in x.text


def test_two_counters_only_a_linear_map_can_separate_are_named_up_up_with_both_maps():
    """Why a tie names the finer program rather than the one the rotation prefers: a rotation cannot swap one of
    a skewed network's two counters without the other, so under the rotation Up-Up loses where it differs from
    Up-Down; the linear map swaps each, and the network (which keeps two counters) is named Up-Up."""
    x = explain(SkewUpUpCounter(TASK), TASK, progress=False, **{**SMALL, "maps": "orthogonal,linear", "ks": "d/2"})
    assert (x.best, x.grade) == ("up_up", "partial"), x.text
    for e in x.named.evidence:
        assert e.map == "linear" and e.needs_linear and e.iia > 0.95 > 0.7 > e.per_map["orthogonal"], e
    up_down = next(v for v in x.verdicts if v.program == "up_down")
    assert up_down.grade == "also" and up_down.evidence[0].per_map["orthogonal"] > 0.95
    assert "only a general linear map reads it" in x.named.text


def test_a_random_network_gets_no_verdict():
    x = explain(random_gru(), TASK, progress=False, **SMALL)
    assert x.best == "none" and x.grade == "none" and x.text.startswith("No program fits"), x.text
    assert not any(v.standing for v in x.verdicts)


def test_a_count_only_a_linear_map_can_read_is_reported_as_such():
    x = explain(SkewCounter(TASK), TASK, progress=False, **{**SMALL, "maps": "orthogonal,linear", "ks": "d/2"})
    assert x.best == "up_down", x.text
    count = x.named.evidence[0]
    assert count.map == "linear" and count.needs_linear and count.iia > 0.95 > 0.7 > count.per_map["orthogonal"]
    assert "only a general linear map reads it" in x.named.text


def test_explain_finds_a_context_summing_transformer_and_its_attention_test_moves_the_eos():
    x = explain(summing_transformer(TASK), TASK, progress=False, program="up_down,ctx_distributed", site="resid.1",
                **SMALL)
    assert x.best == "ctx_distributed", x.text
    assert x.swap["iia"] == 1.0 and x.attention["accuracy"] == {"add": 1.0, "remove": 1.0}
    up_down = next(v for v in x.verdicts if v.program == "up_down")
    assert not up_down.fits


def test_the_decision_thresholds_are_options():
    assert explain(up_down_counter(), TASK, progress=False, margin=0.99, **SMALL).best == "none"   # IIA 1 vs ≥ 0.01
    rotation_only = {**SMALL, "ks": "d/2"}            # the skewed count: a rotation reads only part of it
    partly = explain(SkewCounter(TASK), TASK, progress=False, **rotation_only)
    assert (partly.best, partly.grade) == ("up_down", "partial") and 0.3 < partly.named.evidence[0].iia < 0.8
    assert explain(SkewCounter(TASK), TASK, progress=False, strong=0.3, **rotation_only).grade == "strong"
    with pytest.raises(NumvarsError, match="k='two': give an integer or d/N"):
        ExplainOptions(ks="two")
    with pytest.raises(NumvarsError, match="k='d/0'"):
        ExplainOptions(ks="d/0")
    with pytest.raises(NumvarsError, match="k=d/4 is 0 dims"):              # too small a state: said, not skipped
        ExplainOptions(ks="1,d/4").k_values(2)
    assert ExplainOptions(ks="1,2,d/4,d/2").k_values(20) == [1, 2, 5, 10]
    assert ExplainOptions(ks="1").k_values(20) == [1, 10]               # d/2 is always fitted first


def test_explanation_json_has_the_graded_verdict_every_control_and_every_comparison():
    x = explain(up_down_counter(), TASK, progress=False, **SMALL)
    doc = json.loads(json.dumps(x.to_json()))
    assert doc["best"] == "up_down" and doc["grade"] == "strong" and "McNemar" in doc["rule"]
    count = doc["ranking"][0]["variables"][0]
    assert count["variable"] == "count" and count["found"] and count["ci"][0] <= count["iia"] <= count["ci"][1]
    assert count["k"] == 3 and count["k_curve"]["orthogonal"]["1"] >= 0.95       # d/2 = 3 first, then the sweep
    random = next(c for c in count["controls"] if c["name"] == "random subspace")
    assert random["learned"] - random["high"] >= 0.1 and random["p"] < 0.01 and random["low"] <= random["high"]
    assert count["isolation_pairs"] > 100 and count["isolation"] > 0.9
    assert {c["name"] for c in count["controls"]} == {"random subspace"}        # no untrained copy of a hand-built net
    pairs = {(c["program"], c["rival"]) for c in doc["comparisons"]}
    assert ("up_down", "up_up") in pairs or ("up_up", "up_down") in pairs
    assert all(c["distinguishing"] <= c["pairs"] and c["p"] is not None for c in doc["comparisons"])


def test_two_counters_with_counts_in_different_known_directions_align_with_each_other():
    result = align_models(LineCounter(TASK, seed=1), LineCounter(TASK, seed=2), TASK, k=1, n_train=3000, n_val=300,
                          n_test=500, within=False)
    assert result.iia["a<-b"] >= 0.9 and result.iia["b<-a"] >= 0.9, result.iia


def test_a_counter_and_a_summing_transformer_do_not_align():
    result = align_models(LineCounter(TASK, seed=1), summing_transformer(TASK), TASK, k=1, n_train=1000, n_val=200,
                          n_test=300, max_epochs=3, within=False)
    assert result.iia["a<-b"] < 0.3 and result.iia["b<-a"] < 0.3, result.iia


def test_the_attention_test_moves_a_summing_transformers_eos_by_exactly_one():
    r = attention_test(summing_transformer(TASK), TASK, n=100)
    assert r.accuracy == {"add": 1.0, "remove": 1.0} and r.base_accuracy == 1.0
    assert set(r.trials.loc[r.trials["edit"] == "add", "shift"]) == {1}


def test_the_attention_test_on_a_recurrent_model_is_a_one_line_error():
    with pytest.raises(NumvarsError, match="needs a Transformer"):
        attention_test(LineCounter(TASK), TASK)


def test_explains_bar_shows_every_planned_job_from_the_start_and_accounts_for_each(monkeypatch):
    import numvars.explain.runs  # noqa: F401  (imported before the patch: it keeps the class it checks against)
    from recording import recorder

    bars = []
    monkeypatch.setattr("numvars.jobs.progress.Progress", recorder(bars))
    x = explain(up_down_counter(), TASK, progress=True, **SMALL)
    bar, = bars
    assert x.best == "up_down" and bar.kinds.get("das_set") == 1          # the k sweep ran, on the bar
    assert set(bar.totals) == {bar.budget.total_jobs}                     # the total never changed
    assert bar.before_close == bar.total                                  # each planned job ran or was credited
