"""Every protocol option changes what it says it changes (a test that fails if the option is ignored),
and a bad value is a one-line error."""
import pytest
import torch

from handbuilt import LineCounter, summing_transformer
from numvars import align, programs as P
from numvars.align import DASOptions
from numvars.errors import NumvarsError
from numvars.jobs.cache import das_key, job_name
from numvars.tasks import BOS, DEMO, EOS, RESP, TRIGGER, get_task

from test_cli import assert_one_line_error, run_cli, tiny_args

TASK = get_task("multi_object")
FEW = dict(n_train=600, n_val=200, n_test=300)


def test_positions_tokens_never_swaps_at_the_trigger():
    everywhere = align.das(LineCounter(TASK), TASK, k=1, seed=0, **FEW).pairs
    tokens = align.das(LineCounter(TASK), TASK, k=1, seed=0, positions="tokens", **FEW).pairs
    assert (everywhere["role_t"] == "TRIGGER").any() and (everywhere["role_u"] == "TRIGGER").any()
    assert set(tokens["role_t"]) | set(tokens["role_u"]) <= {"DEMO", "RESP"}


def test_pair_counts_train_leaves_out_the_held_out_counts():
    result = align.das(LineCounter(TASK), TASK, k=1, seed=0, pair_counts="train", **FEW).pairs
    assert not set(result["base_count"]) & set(TASK.spec.holdouts)
    assert not set(result["source_count"]) & set(TASK.spec.holdouts)
    every = align.das(LineCounter(TASK), TASK, k=1, seed=0, **FEW).pairs
    assert set(every["base_count"]) & set(TASK.spec.holdouts)


def _demo_phase_pairs(rule):
    base = torch.tensor([[BOS] + [DEMO] * 6 + [TRIGGER] + [RESP] * 6 + [EOS]]).expand(300, -1)   # BOS D×6 T R×6 EOS
    source = base.clone()
    t, u = torch.full((300,), 2), torch.full((300,), 4)        # base count 2 (demo phase) gets the source's 4
    return P.counterfactuals("up_down", base, source, "count", t, u, seed=1, demo_rule=rule, count_range=(1, 20))


def test_demo_rules_continue_a_demo_phase_base_differently():
    extra, target, random = (_demo_phase_pairs(r) for r in ("extra", "target", "random"))
    n_demo = lambda cf: (cf.cont_roles == DEMO).sum(1)                                     # noqa: E731
    assert set(n_demo(extra).tolist()) == {0, 1, 2, 3}            # 0–3 more demo tokens
    assert set(n_demo(target).tolist()) == {2}                    # until the swapped 4 reaches the base's 6
    assert set(n_demo(random).tolist()) > {0, 1, 2, 3} and n_demo(random).max() <= 16   # up to a random count
    assert ((target.cont_roles == RESP).sum(1) == 6).all()        # then the target count of responses
    with pytest.raises(NumvarsError, match="unknown demo_rule"):
        _demo_phase_pairs("sometimes")


def test_loss_on_all_tokens_trains_on_the_forced_ones_too():
    scored = align.das(LineCounter(TASK), TASK, k=1, seed=0, max_epochs=2, **FEW)
    every = align.das(LineCounter(TASK), TASK, k=1, seed=0, max_epochs=2, loss_on="all", **FEW)
    assert not scored.history["loss"].equals(every.history["loss"])


def test_max_steps_and_batch_size_set_the_number_of_steps():
    result = align.das(LineCounter(TASK), TASK, k=1, seed=0, max_steps=7, batch_size=128, patience=99, init="random",
                       target=1.0, **FEW)
    assert result.steps == 7 and result.epochs == 2                 # 600 pairs at 128: 5 steps, then 2 more


def test_a_probe_start_begins_where_the_count_lies_and_a_random_start_must_search():
    probe = align.das(LineCounter(TASK), TASK, k=1, seed=0, n_train=2000, n_val=300, n_test=500)
    random = align.das(LineCounter(TASK), TASK, k=1, seed=0, n_train=2000, n_val=300, n_test=500, init="random")
    assert probe.history["val_iia"].iloc[0] >= 0.99 > random.history["val_iia"].iloc[0]
    assert probe.steps < random.steps
    slow = align.das(LineCounter(TASK), TASK, k=1, seed=0, n_train=2000, n_val=300, n_test=500, init="random",
                     lr=3e-3, schedule="constant", max_epochs=30)
    assert slow.iia < 0.5                  # the classic fit from a random start does not find it in 30 epochs


def test_the_schedule_and_map_set_the_learning_rate_defaults():
    fit = lambda o: (o.lr, o.schedule, o.max_epochs, o.batch_size)  # noqa: E731
    assert fit(align.DASOptions()) == (5e-2, "cosine", 6, 512)
    assert fit(align.DASOptions(map="linear")) == (5e-2, "cosine", 4, 64)
    assert align.DASOptions(lr=1e-3).key() == {"lr": 1e-3} and align.DASOptions().key() == {}


def test_orthogonal_job_keys_are_unchanged_and_linear_ones_carry_the_fit_version():
    # keys and job folder names as numvars wrote them before the linear map's fit changed (PROTOCOL 3)
    before = {(): ({}, "das-d2986da0"),
              (("positions", "tokens"),): ({"positions": "tokens"}, "das-c331aa5f"),
              (("k", 5), ("lr", 1e-2), ("positions", "tokens"), ("seed", 2)):
                  ({"k": 5, "seed": 2, "lr": 0.01, "positions": "tokens"}, "das-93d248d3"),
              (("batch_size", 512), ("map", "orthogonal"), ("max_epochs", 6)): ({}, "das-d2986da0"),
              (("control", "random"), ("map", "linear")): ({"map": "linear", "control": "random"}, "das-05f31d20")}
    for opts, (key, name) in before.items():
        assert das_key(DASOptions(**dict(opts))) == key
        assert job_name("das", {**das_key(DASOptions(**dict(opts))), "protocol": 3}) == name
    old_linear = {"map": "linear", "positions": "tokens"}                   # the 50-epoch fit's key
    new_linear = das_key(DASOptions(map="linear", positions="tokens"))
    assert new_linear == {**old_linear, "fit": 2} and new_linear != old_linear
    assert das_key(DASOptions(map="linear", lr=3e-3, schedule="constant", max_epochs=50, batch_size=512))["fit"] == 2


def test_full_swaps_matched_by_role_or_over_tokens_only_spare_the_trigger():
    model = summing_transformer(TASK)
    by_phase = align.full_swap(model, TASK, n=300)
    by_role = align.full_swap(model, TASK, n=300, match="role")
    tokens = align.full_swap(model, TASK, n=300, positions="tokens")
    assert by_phase.iia < 1.0 and by_role.iia == 1.0 and tokens.iia == 1.0
    untrained = align.full_swap(model, TASK, n=300, match="role", control="untrained")
    assert untrained.iia < 0.2


def test_pairs_say_whether_the_swap_keeps_the_input_token():
    by_role = P.make_pairs(TASK, "ctx_distributed", None, 400, seed=0, match="role").info()
    assert by_role[by_role["role_t"] != "DEMO"]["same_token"].all()      # T with T, R with R
    demo = by_role[by_role["role_t"] == "DEMO"]["same_token"]            # three object types: a demo may differ
    assert 0 < demo.mean() < 1
    single = get_task("single_object")                                  # one object type: always the same
    assert P.make_pairs(single, "ctx_distributed", None, 200, seed=0, match="role").info()["same_token"].all()
    swap = align.full_swap(summing_transformer(TASK), TASK, n=300, match="role").summary()
    assert swap["iia_by_token"] == {"other token": 1.0, "same token": 1.0}


@pytest.mark.parametrize("args, words", [
    (["positions=some"], ["unknown positions"]), (["pair_counts=odd"], ["unknown pair_counts"]),
    (["demo_rule=later"], ["unknown demo_rule"]), (["loss_on=every"], ["unknown loss_on"]),
    (["init=zeros"], ["unknown init"]), (["schedule=step"], ["unknown schedule"]),
    (["max_steps=0"], ["max_steps=0"]), (["lr=-1"], ["lr=-1"]), (["max_extra_demo=-1"], ["max_extra_demo"]),
])
def test_bad_alignment_options_are_one_line_errors(tiny_run, capsys, args, words):
    code, _, err = run_cli(capsys, "align", tiny_run.run_dir, *args, "--quiet")
    assert_one_line_error(code, err, *words)


@pytest.mark.parametrize("args, words", [(["match=token"], ["unknown match"]), (["control=random"], ["control"]),
                                         (["positions=x"], ["unknown positions"])])
def test_bad_full_swap_options_are_one_line_errors(tiny_run, capsys, args, words):
    code, _, err = run_cli(capsys, "fullswap", tiny_run.run_dir, *args)
    assert_one_line_error(code, err, *words)


@pytest.mark.parametrize("args, words", [
    (["extra_epochs=-1"], ["extra_epochs"]), (["plateau=-2"], ["plateau"]), (["train_set=-5"], ["train_set"]),
    (["inputs=oracle"], ["unknown inputs"]), (["arch=transformer", "layer_dropout=1.5"], ["layer_dropout"]),
    (["layer_dropout=0.1"], ["layer_dropout is for the Transformer"]),
])
def test_bad_training_options_are_one_line_errors(tmp_path, capsys, args, words):
    code, _, err = run_cli(capsys, "train", "--quiet", f"out={tmp_path}", *tiny_args(*args))
    assert_one_line_error(code, err, *words)
    assert list(tmp_path.iterdir()) == []
