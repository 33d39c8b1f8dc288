"""`explain` names the algorithm a network runs; cross-model alignment; the attention test."""
import json

import pytest
import torch

from handbuilt import LineCounter, UpUpCounter, summing_transformer
from numvars import models
from numvars.align.attention import attention_test
from numvars.align.cross import align_models
from numvars.errors import NumvarsError
from numvars.explain import ExplainOptions, explain
from numvars.models import ModelConfig
from numvars.tasks import get_task

TASK = get_task("multi_object")
SMALL = dict(ks="1,d/2", maps="orthogonal", n_train=2000, n_val=300, n_test=500)


@pytest.mark.parametrize("name, make, expected", [
    ("an Up-Down counter", lambda: LineCounter(TASK), "up_down"),
    ("an Up-Up counter (two separate counts)", lambda: UpUpCounter(TASK), "up_up"),
    ("a random network", lambda: models.build(ModelConfig(arch="gru", vocab_size=TASK.vocab_size, d_model=8), seed=0),
     "none"),
])
def test_explain_names_the_program_of_a_hand_built_network(name, make, expected):
    x = explain(make(), TASK, progress=False, **SMALL)
    assert x.best == expected, x.text
    fitting = [v.program for v in x.verdicts if v.fits]
    assert (fitting[0] if fitting else "none") == expected
    if expected != "none":
        assert x.text.startswith(f"Best explanation — {expected} fits")


def test_explain_finds_a_context_summing_transformer_and_its_attention_test_moves_the_eos():
    x = explain(summing_transformer(TASK), TASK, progress=False, program="up_down,ctx_distributed", site="resid.1",
                **SMALL)
    assert x.best == "ctx_distributed", x.text
    assert x.swap["iia"] == 1.0 and x.attention["accuracy"] == {"add": 1.0, "remove": 1.0}
    up_down = next(v for v in x.verdicts if v.program == "up_down")
    assert not up_down.fits


def test_the_decision_thresholds_are_options():
    strict = explain(LineCounter(TASK), TASK, progress=False, accept=1.01 - 1e-9, **SMALL) \
        if False else explain(LineCounter(TASK), TASK, progress=False, margin=0.99, **SMALL)
    assert strict.best == "none"                     # the count is found, but not 0.99 above its controls
    with pytest.raises(NumvarsError, match="ks="):
        ExplainOptions(ks="two").k_values(20)
    assert ExplainOptions(ks="1,2,d/4,d/2").k_values(20) == [1, 2, 5, 10]


def test_explanation_json_has_the_ranking_and_every_alignment():
    x = explain(LineCounter(TASK), TASK, progress=False, program="up_down", **SMALL)
    doc = json.loads(json.dumps(x.to_json()))
    assert doc["best"] == "up_down" and doc["ranking"][0]["variables"][0]["variable"] == "count"
    count = doc["ranking"][0]["variables"][0]
    assert count["found"] and count["k"] == 1 and count["ci"][0] <= count["iia"] <= count["ci"][1]
    assert {a["control"] for a in doc["alignments"]} == {"none", "random"}      # no untrained copy of a hand-built net


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
