"""Models: the step path is the specification the fused kernels must equal."""
import pytest
import torch

from numvars import models
from numvars.align.sites import RecurrentSite, get_site
from numvars.errors import NumvarsError
from numvars.models import ModelConfig
from numvars.tasks import get_task

ATOL = 1e-5


def make(arch, seed=0, **kw):
    task = get_task("multi_object", void_prob=0.2)
    cfg = ModelConfig(arch=arch, vocab_size=task.vocab_size, **{"d_model": 12, **kw})
    return models.build(cfg, seed=seed).eval(), task


def tokens_of(task, n=16, seed=0):
    return task.sample(n, seed=seed, counts=range(1, 21)).tokens


def step_logits(model, tokens):
    """Logits by the plain step path: readout after each step, from the initial state."""
    state, out = model.initial_state(tokens.shape[0]), []
    for j in range(tokens.shape[1]):
        state = model.step(tokens[:, j], state)
        out.append(model.readout(state))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_step_path_gives_the_same_logits_as_the_fused_kernel(arch):
    model, task = make(arch)
    tokens = tokens_of(task)
    with torch.no_grad():
        fused = model(tokens)                                       # (B, L, V)
        assert torch.allclose(step_logits(model, tokens), fused, atol=ATOL)
        assert torch.allclose(model.head(model._readout_input(model.states(tokens))), fused, atol=ATOL)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_states_are_the_step_states(arch):
    model, task = make(arch)
    tokens = tokens_of(task)
    with torch.no_grad():
        state, expected = model.initial_state(len(tokens)), []
        for j in range(tokens.shape[1]):
            state = model.step(tokens[:, j], state)
            expected.append(state)
        assert torch.allclose(model.states(tokens), torch.stack(expected, 1), atol=ATOL)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_run_from_a_mid_sequence_state_continues_the_fused_run(arch):
    model, task = make(arch)
    tokens = tokens_of(task)
    t = 5
    with torch.no_grad():
        state = model.states(tokens)[:, t]                          # after consuming tokens[:, :t+1]
        cont = model.run_from(state, tokens[:, t + 1:])             # (B, L-t, V)
        full = model(tokens)
        assert cont.shape[1] == tokens.shape[1] - t
        assert torch.allclose(cont, full[:, t:], atol=ATOL)
        assert torch.allclose(cont[:, 0], model.readout(state), atol=ATOL)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_an_intervened_state_changes_the_next_prediction_and_everything_after(arch):
    model, task = make(arch)
    tokens = tokens_of(task)
    t = 4
    with torch.no_grad():
        states = model.states(tokens)
        swapped = states[:, t].flip(0)                              # another row's state
        cont = model.run_from(swapped, tokens[:, t + 1:])
        stepped, state = [model.readout(swapped)], swapped
        for j in range(t + 1, tokens.shape[1]):
            state = model.step(tokens[:, j], state)
            stepped.append(model.readout(state))
        assert torch.allclose(cont, torch.stack(stepped, 1), atol=ATOL)
        assert not torch.allclose(cont, model(tokens)[:, t:], atol=1e-3)


def test_lstm_state_has_size_d_with_h_and_c_halves():
    model, task = make("lstm", d_model=12)
    tokens = tokens_of(task, n=4)
    with torch.no_grad():
        states = model.states(tokens)
        assert states.shape == (4, tokens.shape[1], 12)
        h_seq, (h_n, c_n) = model.rnn(model.embed(tokens))
        assert torch.allclose(states[..., :6], h_seq, atol=ATOL)           # h is the first half
        assert torch.allclose(states[:, -1, 6:], c_n[0], atol=ATOL)        # c is the second half
    assert model.initial_state(3).shape == (3, 12)


def test_gru_state_is_h_of_size_d():
    model, task = make("gru", d_model=12)
    tokens = tokens_of(task, n=4)
    with torch.no_grad():
        assert torch.allclose(model.states(tokens), model.rnn(model.embed(tokens))[0], atol=ATOL)
    assert model.initial_state(3).shape == (3, 12)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_builtin_rnns_follow_the_bring_your_own_model_protocol(arch):
    model, _ = make(arch)
    assert models.is_recurrent(model) and models.default_site(model) == "state"
    assert isinstance(get_site(model), RecurrentSite)
    assert not models.is_recurrent(make("transformer")[0])


@pytest.mark.parametrize("pos", ["rope", "none"])
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_transformer_forward_from_the_residual_after_layer_L_equals_forward(pos, layer):
    model, task = make("transformer", pos=pos)
    tokens = tokens_of(task)
    with torch.no_grad():
        resid = model.run(model.embed(tokens), stop=layer)
        assert torch.allclose(model.unembed(model.run(resid, start=layer)), model(tokens), atol=ATOL)
    assert model.site_names == ("resid.0", "resid.1", "resid.2")
    assert models.default_site(model) == "resid.1"
    with torch.no_grad():
        acts = model.activations(tokens, f"resid.{layer}")
        positions = torch.arange(tokens.shape[1]).expand(tokens.shape[0], -1)
        assert torch.allclose(model.logits_from(f"resid.{layer}", acts, positions), model(tokens), atol=ATOL)


@pytest.mark.parametrize("pos", ["rope", "none"])
def test_transformer_plain_attention_equals_the_fused_sdpa_path(pos):
    model, task = make("transformer", pos=pos, n_heads=2)
    tokens = tokens_of(task)
    with torch.no_grad():
        x = model.embed(tokens)
        for block in model.blocks:
            fused = block.attn(block.ln1(x))
            plain, weights = block.attn(block.ln1(x), weights=True)
            assert torch.allclose(plain, fused, atol=ATOL)
            assert weights.shape == (len(tokens), 2, tokens.shape[1], tokens.shape[1])
            x = block(x)
        w = model.attention_weights(tokens)
    assert w.shape == (2, len(tokens), 2, tokens.shape[1], tokens.shape[1])
    assert torch.allclose(w.sum(-1), torch.ones(()), atol=ATOL)
    assert (w.triu(diagonal=1) == 0).all()                          # nothing attends to the future


@pytest.mark.parametrize("pos", ["rope", "none"])
def test_transformer_is_causal_changing_a_later_token_leaves_earlier_logits(pos):
    model, task = make("transformer", pos=pos)
    tokens = tokens_of(task)
    t = 6
    changed = tokens.clone()
    changed[:, t:] = torch.randint(1, task.vocab_size, changed[:, t:].shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert torch.allclose(a[:, :t], b[:, :t], atol=ATOL)
    assert not torch.allclose(a[:, t:], b[:, t:], atol=1e-3)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_rnns_are_causal_too(arch):
    model, task = make(arch)
    tokens = tokens_of(task)
    changed = tokens.clone()
    changed[:, 6:] = 3
    with torch.no_grad():
        assert torch.allclose(model(tokens)[:, :6], model(changed)[:, :6], atol=ATOL)


def test_rope_makes_attention_depend_on_position_and_npe_does_not():
    """Without positional encoding a 1-layer model's last logits depend only on the multiset of its
    context (the minimal variant's NPE model); RoPE makes them depend on the order."""
    tokens = torch.tensor([[1, 5, 6, 7, 3]])
    permuted = torch.tensor([[1, 7, 5, 6, 3]])
    for pos, same in (("none", True), ("rope", False)):
        model, _ = make("transformer", pos=pos, n_layers=1)
        with torch.no_grad():
            a, b = model(tokens)[:, -1], model(permuted)[:, -1]
        assert torch.allclose(a, b, atol=ATOL) == same


def test_every_model_has_an_mlp_head_with_hidden_4d_and_dropout():
    for arch in ("gru", "lstm", "transformer"):
        model, _ = make(arch, d_model=12, head_dropout=0.5)
        hidden, drop = model.head[0], model.head[2]
        assert hidden.out_features == 48 and drop.p == 0.5
        assert model.head[-1].out_features == model.cfg.vocab_size


def test_the_same_seed_builds_the_same_weights():
    a, b = make("lstm", seed=3)[0], make("lstm", seed=3)[0]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = make("lstm", seed=4)[0]
    assert not torch.equal(a.embed.weight, c.embed.weight)


@pytest.mark.parametrize("kw, message", [
    (dict(arch="lstm", d_model=7), "even"),
    (dict(arch="mamba"), "unknown arch"),
    (dict(arch="gru", d_model=-4), "positive"),
    (dict(arch="gru", d_model=0), "positive"),
    (dict(arch="transformer", pos="sinusoid"), "unknown pos"),
    (dict(arch="transformer", d_model=12, n_heads=5), "heads"),
    (dict(arch="transformer", d_model=6, n_heads=2), "even"),       # RoPE needs even head size
    (dict(arch="transformer", n_layers=0), "n_layers=0 must be in 1..48"),
    (dict(arch="gru", d_model=100_000), "d_model=100000 must be in 1..2048"),
    (dict(arch="gru", d_model=20.5), "cannot read d_model=20.5 as int"),
    (dict(arch="gru", d_model="twenty"), "cannot read d_model"),
    (dict(arch="gru", head_dropout=1.0), "head_dropout"),
])
def test_impossible_model_configs_are_one_line_errors(kw, message):
    with pytest.raises(NumvarsError, match=message) as e:
        ModelConfig(**kw)
    assert "\n" not in str(e.value)


def test_odd_widths_are_fine_where_nothing_splits_them():
    ModelConfig(arch="gru", d_model=7)
    ModelConfig(arch="transformer", d_model=6, n_heads=2, pos="none")


def test_head_dropout_drops_half_the_hidden_units_in_training_and_none_in_eval():
    from numvars.models.head import Dropout

    drop, x = Dropout(0.5), torch.ones(200_000)
    kept = drop.train()(x)
    assert abs(float((kept > 0).float().mean()) - 0.5) < 0.01
    assert set(kept.unique().tolist()) == {0.0, 2.0}          # survivors scaled by 1 / (1 - p)
    assert torch.equal(drop.eval()(x), x)
