"""Interchange interventions and DAS, proved on networks whose answer is known."""
import pytest
import torch

from handbuilt import LineCounter, ShiftCounter, summing_transformer
from numvars import align, models
from numvars.align import cache, frozen
from numvars.align.maps import block_masks, interchange, make_map
from numvars.align.scoring import response_length
from numvars.align.sites import RecurrentSite, StreamSite, get_site
from numvars.errors import NumvarsError
from numvars.runs import load_run
from numvars.models import ModelConfig
from numvars.programs import make_pairs
from numvars.tasks import get_task

TASK = get_task("multi_object")
SMALL = dict(n_train=2000, n_val=300, n_test=500, max_epochs=25, patience=6, batch_size=256)


def test_handbuilt_line_counter_counts_correctly():
    model = LineCounter(TASK)
    batch = TASK.sample(200, seed=0, counts=range(1, 21))
    state, right = model.initial_state(200), torch.ones(200, dtype=torch.bool)
    for j in range(batch.tokens.shape[1] - 1):
        state = model.step(batch.tokens[:, j], state)
        pred = model.readout(state).argmax(-1)
        right &= (pred == batch.tokens[:, j + 1]) | ~batch.task_mask[:, j + 1]
    assert right.all()


def test_a_bring_your_own_step_model_is_scored_by_trial_accuracy_both_ways():
    from numvars.evaluate import greedy_trials, trial_accuracy
    assert trial_accuracy(LineCounter(TASK), TASK, range(1, 31), per_count=2).accuracy == 1.0
    assert greedy_trials(LineCounter(TASK), TASK, range(1, 31), per_count=2).accuracy == 1.0


def test_frozen_gives_eval_mode_without_gradients_and_restores_everything_even_when_the_body_raises():
    model = models.build(ModelConfig(arch="gru", vocab_size=TASK.vocab_size, d_model=8), seed=0).train()
    model.embed.weight.requires_grad_(False)                  # the caller's own flags, mixed

    def state():
        """Every module's mode and every parameter's requires_grad flag."""
        return ({n: m.training for n, m in model.named_modules()},
                {n: p.requires_grad for n, p in model.named_parameters()})

    before = state()
    with frozen(model, "cpu") as m:
        assert m is model and not model.head.training
        assert model.rnn.training            # the fused RNN stays in train mode (cuDNN backward needs it)
        assert not any(p.requires_grad for p in model.parameters())
    assert state() == before
    with pytest.raises(RuntimeError, match="a failure inside"), frozen(model, "cpu"):
        assert not model.head.training and not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("a failure inside")
    assert state() == before


def test_das_on_the_real_model_leaves_it_as_it_found_it():
    model = models.build(ModelConfig(arch="gru", vocab_size=TASK.vocab_size, d_model=8), seed=0).train()
    model.embed.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    align.das(model, TASK, "up_down", "count", k=2, seed=0, **{**SMALL, "max_epochs": 1})
    assert model.training and model.head.training
    assert not model.embed.weight.requires_grad and model.rnn.weight_hh_l0.requires_grad
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.rand(1), expected)          # the caller's random stream is untouched


def test_das_finds_a_count_stored_on_one_direction_with_k_1():
    result = align.das(LineCounter(TASK), TASK, "up_down", "count", k=1, seed=0, n_train=2000, n_val=300,
                       n_test=500)
    assert result.iia >= 0.99
    assert result.iia_free == pytest.approx(result.iia)


def test_a_random_rotation_or_the_identity_does_not_find_the_line_counters_count():
    for control in ("random", "identity"):
        assert align.das(LineCounter(TASK), TASK, "up_down", "count", k=1, seed=0, control=control, **SMALL).iia < 0.3


def test_das_cannot_move_a_one_hot_count_with_a_one_dimensional_swap():
    model = ShiftCounter(TASK)
    full = align.das(model, TASK, "up_down", "count", k=1, seed=0, control="identity", **SMALL)
    result = align.das(model, TASK, "up_down", "count", k=1, seed=0, **SMALL)
    assert result.iia <= 0.3, result.iia
    assert full.iia <= 0.3


def test_swapping_every_dimension_of_a_line_counter_moves_count_and_phase():
    # k = d: the whole state comes from the source, so a full-state swap must follow Up-Down
    result = align.full_swap(LineCounter(TASK), TASK, programs=("up_down", "ctx_distributed"), n=500)
    assert result.iia_by_program["up_down"] == 1.0
    assert result.iia_by_program["ctx_distributed"] < 0.5


# --- the Transformer's named sites, on a hand-built summing network --------------------------------

def test_the_hand_built_summing_transformer_solves_the_task():
    from numvars.evaluate import greedy_trials
    assert greedy_trials(summing_transformer(TASK), TASK, range(1, 21), per_count=5).accuracy == 1.0


def test_full_swaps_at_resid_1_leave_a_summing_transformer_unchanged_except_at_the_trigger():
    result = align.full_swap(summing_transformer(TASK), TASK, n=500)
    pairs = result.pairs[result.pairs["program"] == "ctx_distributed"]
    same_role = pairs["role_t"] == pairs["role_u"]
    assert pairs.loc[same_role, "correct"].all()        # a token's place in the sum is all resid.1 holds
    assert not pairs.loc[~same_role, "correct"].all()    # a T swapped for an R changes the sum
    assert result.iia_by_program["up_down"] < 0.2


def test_das_through_the_transformer_site_finds_no_count_in_a_summing_network():
    result = align.das(summing_transformer(TASK), TASK, "up_down", "count", seed=0, **SMALL)
    assert result.site == "resid.1" and result.iia < 0.35, result.iia


def test_das_aligns_at_the_site_it_is_given():
    quick = dict(n_train=64, n_val=32, n_test=32, max_epochs=1, batch_size=64)    # only where it aligns matters
    result = align.das(summing_transformer(TASK), TASK, "up_down", "count", seed=0, site="resid.2", **quick)
    assert result.site == "resid.2"


def test_transformer_free_running_continuation_is_greedy_decoding_from_the_intervened_stream():
    model = summing_transformer(TASK)
    site = get_site(model, "resid.1")
    pairs = cache(site, make_pairs(TASK, "up_down", None, 64, seed=1, match="phase"))
    new = pairs.states["source"]                                    # the whole state swapped
    with torch.no_grad():
        generated = site.free_run(pairs, new, pairs.scored)
        seq = pairs.states["prefix"].clone()
        rows = torch.arange(64)
        seq[rows, pairs.t] = 0
        for j in range(pairs.cont.shape[1]):                        # decode by hand, one token at a time
            acts = model.activations(seq, "resid.1").index_put((rows, pairs.t), new)
            pred = model.logits_from("resid.1", acts, (pairs.t + j)[:, None])[:, 0].argmax(-1)
            assert torch.equal(pred, generated[:, j])
            seq[rows, pairs.t + 1 + j] = torch.where(pairs.scored[:, j], pred, pairs.cont[:, j])


def test_interchange_with_a_full_mask_returns_the_source_and_with_an_empty_mask_the_base():
    rot = make_map("orthogonal", 6, seed=1)
    b, s = torch.randn(4, 6), torch.randn(4, 6)
    assert torch.allclose(interchange(rot, torch.ones(6), b, s), s, atol=1e-5)
    assert torch.allclose(interchange(rot, torch.zeros(6), b, s), b, atol=1e-5)


def test_linear_map_inverts_exactly():
    lin = make_map("linear", 5, seed=0)
    with torch.no_grad():
        lin.weight.add_(0.3 * torch.randn(5, 5))
    x = torch.randn(7, 5)
    assert torch.allclose(lin.inverse(lin(x)), x, atol=1e-4)


def test_joint_variables_take_disjoint_blocks():
    masks = block_masks(20, 4, 2)
    assert masks.sum(1).tolist() == [4, 4] and (masks[0] * masks[1]).sum() == 0
    with pytest.raises(NumvarsError, match="k=11"):
        block_masks(20, 11, 2)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_fused_continuation_equals_the_step_by_step_path(arch):
    model = models.build(ModelConfig(arch=arch, vocab_size=TASK.vocab_size, d_model=8), seed=0).eval()
    fast, plain = RecurrentSite(model, fast=True), RecurrentSite(model, fast=False)
    pairs = cache(fast, make_pairs(TASK, "up_down", ("count",), 64, seed=3))
    new = interchange(make_map("random", 8, 0), block_masks(8, 4, 1)[0], pairs.states["base"], pairs.states["source"])
    with torch.no_grad():
        assert torch.allclose(fast.run(pairs, new), plain.run(pairs, new), atol=1e-5)


def test_transformer_site_without_a_swap_reproduces_the_models_own_logits():
    cfg = ModelConfig(arch="transformer", vocab_size=TASK.vocab_size, d_model=8)
    model = models.build(cfg, seed=0).eval()
    site = get_site(model, "resid.1")
    assert isinstance(site, StreamSite)
    pairs = cache(site, make_pairs(TASK, "up_down", ("count",), 32, seed=4))
    with torch.no_grad():
        logits = site.run(pairs, pairs.states["base"])
        full = model(pairs.states["prefix"])
    rows = torch.arange(32)
    for j in range(3):
        assert torch.allclose(logits[:, j], full[rows, pairs.t + j], atol=1e-5)


@pytest.mark.parametrize("pos", ["rope", "none"])
@pytest.mark.parametrize("site_name", ["resid.0", "resid.1", "resid.2"])
def test_a_transformer_window_equals_running_the_whole_sequence_again(pos, site_name):
    """The window (positions from t on, every other position's keys and values cached) computes what the whole
    spliced sequence computes, teacher-forced and free-running, for any swapped state."""
    cfg = ModelConfig(arch="transformer", vocab_size=TASK.vocab_size, d_model=8, pos=pos, n_heads=2)
    model = models.build(cfg, seed=0).eval()
    site = get_site(model, site_name)
    assert site.windowed and site.generates
    pairs = cache(site, make_pairs(TASK, "up_down", ("count",), 48, seed=6))
    new = interchange(make_map("random", 8, 1), block_masks(8, 4, 1)[0], pairs.states["base"], pairs.states["source"])
    whole = StreamSite(model, site_name)
    whole.windowed = whole.generates = False
    with torch.no_grad():
        assert torch.allclose(site.run(pairs, new), whole.run(pairs, new), atol=1e-5)
        scored = pairs.scored & (torch.rand(pairs.scored.shape, generator=torch.Generator().manual_seed(0)) < 0.7)
        assert torch.equal(site.free_run(pairs, new, scored), whole.free_run(pairs, new, scored))


def test_cached_base_state_is_the_state_of_the_base_run_at_t():
    model = models.build(ModelConfig(arch="lstm", vocab_size=TASK.vocab_size, d_model=8), seed=0).eval()
    pairs = cache(get_site(model), make_pairs(TASK, "up_down", ("count",), 16, seed=5))
    state = model.initial_state(16)
    with torch.no_grad():
        states = torch.stack([state := model.step(pairs.base[:, j], state) for j in range(pairs.base.shape[1])], 1)
    assert torch.allclose(pairs.states["base"], states[torch.arange(16), pairs.t], atol=1e-6)


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_free_running_and_teacher_forced_iia_agree_trial_by_trial(partly_trained, arch):
    model, task, _, _ = load_run(partly_trained(arch), require_trained=False)
    result = align.das(model, task, "up_down", "count", seed=0, **{**SMALL, "max_epochs": 2})
    assert 0.05 < result.iia < 0.95, result.iia          # some pairs right and some wrong: the check can fail
    assert (result.pairs["correct"] == result.pairs["correct_free"]).all()


def test_response_length_counts_responses_before_the_first_other_token():
    R, E, D = 7, 2, 5
    generated = torch.tensor([[D, R, R, E, R], [D, R, R, R, R], [D, R, D, E, 0]])
    scored = torch.tensor([[False, True, True, True, True]] * 3)
    length, ended = response_length(generated, scored, R, E)
    assert length.tolist() == [2, 4, 1] and ended.tolist() == [True, False, False]


def test_per_pair_diagnostics_explain_each_failure():
    result = align.das(LineCounter(TASK), TASK, "up_down", "count", k=1, seed=0, control="random", **SMALL)
    p = result.pairs
    for column in ("role_t", "phase_t", "role_u", "phase_u", "cf_resp_len", "model_resp_len", "signed_error",
                   "trivial"):
        assert column in p
    right = p[p["correct_free"]]
    assert (right["signed_error"] == 0).all() and (right["model_resp_len"] == right["cf_resp_len"]).all()
    wrong = p[~p["correct_free"] & p["model_ended"]]
    assert len(wrong) and (wrong["signed_error"] != 0).all()
    assert p.loc[p["trivial"], "correct"].mean() > p.loc[~p["trivial"], "correct"].mean()


def test_untrained_copy_notes_only_the_parameters_no_initialiser_reached(capsys):
    """A LayerNorm reset to the ones it already had (an untrained model's copy) was reached; a bare parameter
    of the model itself was not, and is named."""
    fresh_transformer = models.build(ModelConfig(arch="transformer", vocab_size=TASK.vocab_size, d_model=8), seed=0)
    align.untrained_copy(fresh_transformer, seed=1)
    assert "keep their trained values" not in capsys.readouterr().err

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.scale = torch.nn.Linear(3, 3), torch.nn.Parameter(torch.full((3,), 2.0))

    align.untrained_copy(Scaled(), seed=1)
    err = capsys.readouterr().err
    assert "1 parameter(s) of Scaled have no initialiser" in err and "(e.g. scale)" in err


def test_untrained_copy_has_fresh_weights_and_leaves_the_original_alone():
    model = models.build(ModelConfig(arch="gru", vocab_size=TASK.vocab_size, d_model=8), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = align.untrained_copy(model, seed=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not torch.equal(fresh.rnn.weight_hh_l0, model.rnn.weight_hh_l0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(program="nope", variable="count"), "unknown program"),
    (dict(program="up_down", variable="demo_count"), "no variable 'demo_count'"),
    (dict(program="ctx_distributed", variable="count"), "no variables"),
    (dict(program="up_down", variable="count", k=0), "k=0"),
    (dict(program="up_down", variable="count", k=7), "k=7"),
    (dict(program="up_down", variable="count", map="mlp"), "unknown map"),
    (dict(program="up_down", variable="count", lr=float("inf")), "finite"),
    (dict(program="up_down", variable="count", device="tpu"), "device='tpu'"),
])
def test_bad_requests_name_the_problem(kwargs, message):
    with pytest.raises(NumvarsError, match=message):
        align.das(LineCounter(TASK), TASK, seed=0, **{**SMALL, **kwargs})


def test_dasresult_breakdowns_and_save(tmp_path):
    import json
    result = align.das(LineCounter(TASK), TASK, "up_down", "count", k=3, seed=0, **SMALL)
    by = result.iia_by("abs_diff")
    assert by["pairs"].sum() == SMALL["n_test"]
    assert (by["iia"] * by["pairs"]).sum() == pytest.approx(result.iia * SMALL["n_test"])
    out = result.save(tmp_path / "r")
    saved = json.loads((out / "result.json").read_text())
    assert saved["iia"] == result.iia and saved["k"] == 3
    assert torch.allclose(__import__("numvars.io", fromlist=["x"]).load_tensors(out / "alignment.safetensors")["matrix"],
                          result.matrix)
