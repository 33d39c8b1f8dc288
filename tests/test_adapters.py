"""Any model through nnsight: the adapter on numvars' own GRU and Transformer gives the native numbers (same
pairs, same seed), its interventions change what they must, and bad input is one line."""
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import extra  # noqa: E402

extra("nnsight")

from numvars.adapters import RecurrentAdapter, StreamAdapter, adapt  # noqa: E402
from numvars.align import DASOptions, FullSwapOptions, das, full_swap  # noqa: E402
from numvars.errors import NumvarsError  # noqa: E402
from numvars.evaluate import greedy_trials, sequence_logits  # noqa: E402
from numvars.runs import load_run  # noqa: E402

from test_cli import assert_one_line_error, run_cli  # noqa: E402

FIT = dict(k=4, n_train=200, n_val=50, n_test=100, max_epochs=2, seed=3)
# numvars' own site, and the module path whose output (or hidden state) it is
SITES = {"gru": (None, "rnn"), "lstm": (None, "rnn"), "transformer": ("resid.1", "blocks.0")}


def native_and_adapted(partly_trained, arch):
    model, task, _, _ = load_run(partly_trained(arch), require_trained=False)
    native_site, path = SITES[arch]
    adapted = adapt(model, path, dict(task.vocab), task)
    return model, adapted, task, native_site, path


@contextmanager
def float64(model):
    """DAS in float64: Adam moves a parameter whose gradient is float32 noise (~1e-9, below its eps of 1e-8) by a
    sizeable fraction of the learning rate, so two paths that agree to 1e-6 in float32 end two steps apart by
    ~1e-2 in the map (the native windowed and whole-sequence Transformer paths alike); in float64 they agree
    to ~1e-10, which is what this test can check."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    model.double()
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@pytest.mark.parametrize("arch", ["gru", "lstm", "transformer"])
def test_das_through_the_adapter_equals_the_native_path(partly_trained, arch):
    model, adapted, task, native_site, path = native_and_adapted(partly_trained, arch)
    assert isinstance(adapted, StreamAdapter if arch == "transformer" else RecurrentAdapter)
    with float64(model):
        ours = das(model, task, options=DASOptions(site=native_site, **FIT))
        theirs = das(adapted, task, options=DASOptions(site=None if arch != "transformer" else path, **FIT))
    assert theirs.steps == ours.steps > 0
    assert torch.allclose(theirs.matrix, ours.matrix, atol=1e-5)
    assert (theirs.iia, theirs.iia_free, theirs.val_iia) == pytest.approx((ours.iia, ours.iia_free, ours.val_iia),
                                                                           abs=1e-5)
    assert theirs.pairs["correct"].tolist() == ours.pairs["correct"].tolist()
    assert 0 < ours.iia < 1 or 0 < ours.iia_free < 1           # a map that got some pairs right and some wrong


@pytest.mark.parametrize("arch", ["gru", "lstm", "transformer"])
def test_full_swap_and_trial_accuracy_through_the_adapter_equal_the_native_path(partly_trained, arch):
    model, adapted, task, native_site, path = native_and_adapted(partly_trained, arch)
    ours = full_swap(model, task, options=FullSwapOptions(n=100, site=native_site))
    theirs = full_swap(adapted, task, options=FullSwapOptions(n=100, site=None if arch != "transformer" else path))
    assert theirs.summary()["iia_by_program"] == pytest.approx(ours.summary()["iia_by_program"], abs=1e-6)
    tokens = task.sample(20, seed=5).tokens
    with torch.no_grad():
        assert torch.allclose(sequence_logits(adapted.eval(), tokens), sequence_logits(model.eval(), tokens), atol=1e-5)
    native, through = greedy_trials(model, task, range(1, 11), 3), greedy_trials(adapted, task, range(1, 11), 3)
    assert through.correct.tolist() == native.correct.tolist() and 0 < native.accuracy < 1


def test_an_intervention_that_must_change_the_output_does(partly_trained):
    """nnsight fails silently when an edit is made to a copy: each edit the adapter makes must show."""
    for arch in ("gru", "transformer"):
        model, adapted, task, _, path = native_and_adapted(partly_trained, arch)
        tokens = task.sample(8, seed=2).tokens
        with torch.no_grad():
            if arch == "gru":
                state = adapted.states(tokens)[:, 4]
                other = state.roll(1, 0)
                assert not torch.allclose(adapted.readout(state), adapted.readout(other), atol=1e-3)
                assert not torch.allclose(adapted.step(tokens[:, 5], state), adapted.step(tokens[:, 5], other), atol=1e-3)
                assert torch.allclose(adapted.readout(state), model.readout(state), atol=1e-5)
            else:
                acts = adapted.activations(tokens, path)
                positions = torch.arange(tokens.shape[1]).expand(len(tokens), -1)
                same = adapted.logits_from(path, acts, positions)
                assert torch.allclose(same, model(tokens), atol=1e-5)
                assert not torch.allclose(adapted.logits_from(path, acts.roll(1, 0), positions), same, atol=1e-3)


class Pooled(nn.Module):
    """A classifier: one vector per sequence, no logits per position (no generate path)."""

    def __init__(self):
        super().__init__()
        self.embed, self.out = nn.Embedding(9, 8), nn.Linear(8, 9)

    def forward(self, tokens):
        return self.out(self.embed(tokens).mean(1))


def test_bad_models_sites_and_token_maps_are_one_line(partly_trained):
    model, task, _, _ = load_run(partly_trained("gru"), require_trained=False)
    with pytest.raises(NumvarsError, match="no module 'rnnn'.*rnn"):
        adapt(model, "rnnn", dict(task.vocab), task)
    with pytest.raises(NumvarsError, match="no model token for task token.*BOS"):
        adapt(model, "rnn", {k: v for k, v in task.vocab.items() if k != "BOS"}, task)
    with pytest.raises(NumvarsError, match="same model token"):
        adapt(model, "rnn", {**task.vocab, "EOS": task.vocab["BOS"]}, task)
    with pytest.raises(NumvarsError, match="does not return logits"):
        adapt(Pooled(), "embed", dict(task.vocab), task)
    with pytest.raises(NumvarsError, match="does not run as a causal LM with module 'unused'"):
        adapt(_Skips(model), "unused", dict(task.vocab), task)
    with pytest.raises(NumvarsError, match="not in the local Hugging Face cache"):
        adapt("no-such-org/no-such-model", "transformer.h.0", dict(task.vocab), task)


class _Skips(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.unused = model, nn.Linear(4, 4)

    def forward(self, tokens):
        return self.model(tokens)


def test_the_adapt_command_makes_a_folder_align_fullswap_and_eval_take(hf_run, capsys, tmp_path):
    model, task, _, _ = load_run(hf_run)
    tokens = ",".join(f"{name}:{i}" for name, i in task.vocab.items())
    task_words = ["task=single_object", "max_count=4", "holdouts="]
    folder = tmp_path / "adapted"
    code, out, _ = run_cli(capsys, "adapt", f"{hf_run}/hf", "site=transformer.h.0", f"tokens={tokens}", *task_words,
                           "--out", folder)
    assert code == 0 and (folder / "adapter.yaml").is_file()
    code, out, _ = run_cli(capsys, "align", folder, "k=5", "n_train=200", "n_val=50", "n_test=50", "max_epochs=1",
                           "--quiet")
    assert code == 0 and "site=transformer.h.0" in out
    through = float(out.split("IIA (free-running)")[1].split()[0])
    run = shutil.copytree(hf_run, tmp_path / "run")
    code, out, _ = run_cli(capsys, "align", run, "k=5", "n_train=200", "n_val=50", "n_test=50", "max_epochs=1",
                           "--quiet")
    assert float(out.split("IIA (free-running)")[1].split()[0]) == through      # the native path: same number
    code, out, _ = run_cli(capsys, "fullswap", folder, "n=50")
    assert code == 0 and "IIA [up_down]" in out
    code, out, _ = run_cli(capsys, "eval", folder, "--max-count", "5", "--per-count", "2")
    assert code == 0 and "overall" in out
    for words, expected in [(["site=transformer.hh.0", f"tokens={tokens}"], ["no module 'transformer.hh.0'"]),
                            (["site=transformer.h.0", "tokens=PAD:0,BOS:1"], ["no model token", "EOS"]),
                            (["site=transformer.h.0"], ["give tokens="]),
                            (["site=transformer", f"tokens={tokens}"], ["outputs a BaseModelOutput", "not a stream"])]:
        code, _, err = run_cli(capsys, "adapt", f"{hf_run}/hf", *words, *task_words, "--out", tmp_path / "x")
        assert_one_line_error(code, err, *expected)
    code, _, err = run_cli(capsys, "adapt", tmp_path, "site=a", f"tokens={tokens}", "--out", tmp_path / "x")
    assert_one_line_error(code, err, "local Hugging Face model folder")


def test_free_running_with_the_models_kv_cache_gives_the_tokens_of_recomputing_the_sequence(hf_run):
    from numvars.align.intervention import Intervention
    from numvars.align.sites import cache, get_site
    from numvars.programs import make_pairs
    import transformers

    lm = transformers.GPT2LMHeadModel.from_pretrained(f"{hf_run}/hf", local_files_only=True).eval()
    _, task, _, _ = load_run(hf_run)
    gpt = adapt(lm, "transformer.h.1", dict(task.vocab), task)
    assert callable(gpt.free_run_from)                              # a HF model: the cached path
    site = get_site(gpt)
    pairs = cache(site, make_pairs(task, "up_down", ("count",), 120, seed=4))
    swapped = Intervention.random(gpt, site.name, k=10, seed=1).state(pairs)
    for state in (swapped, pairs.states["base"]):
        cached = site.free_run(pairs, state, pairs.scored)
        gpt.use_cache = False
        recomputed = site.free_run(pairs, state, pairs.scored)
        gpt.use_cache = True
        assert torch.equal(cached, recomputed)
    assert not torch.equal(site.free_run(pairs, swapped, pairs.scored), site.free_run(pairs, pairs.states["base"],
                                                                                      pairs.scored))


def test_explain_and_align_models_take_an_adapter_folder(hf_run, capsys, tmp_path):
    _, task, _, _ = load_run(hf_run)
    folder = tmp_path / "adapted"
    tokens = ",".join(f"{name}:{i}" for name, i in task.vocab.items())
    assert run_cli(capsys, "adapt", f"{hf_run}/hf", "site=transformer.h.0", f"tokens={tokens}",
                   "task=single_object", "max_count=4", "holdouts=", "--out", folder)[0] == 0
    small = ["n_train=150", "n_val=50", "n_test=50"]
    code, out, err = run_cli(capsys, "explain", folder, "program=up_down,ctx_distributed", "ks=d/2",
                             "maps=orthogonal", "n_eval=100", "random_seeds=1", *small, "--quiet", "--jobs", "1")
    assert code == 0, err
    assert "verdict:" in out and "transformer.h.0" in out and (folder / "explain" / "explain.json").is_file()
    code, out, err = run_cli(capsys, "align-models", folder, folder, "k=4", "max_epochs=1", *small)
    assert code == 0 and "A's count into B" in out, err


def test_a_token_map_may_name_tokens_of_the_model_folders_tokenizer(hf_run, capsys, tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    _, task, _, _ = load_run(hf_run)
    folder = Path(shutil.copytree(Path(hf_run) / "hf", tmp_path / "hf"))
    words = {"<pad>": 0, "<s>": 1, "</s>": 2, "go": 3, "void": 4, "apple": 5, "say": 6}     # the model's ids
    Tokenizer(WordLevel(words, unk_token="<pad>")).save(str(folder / "tokenizer.json"))
    names = dict(zip(task.vocab, words))                          # PAD -> <pad>, BOS -> <s>, ...
    tokens = ",".join(f"{name}:{word}" for name, word in names.items())
    code, out, err = run_cli(capsys, "adapt", folder, "site=transformer.h.0", f"tokens={tokens}",
                             "task=single_object", "max_count=4", "holdouts=", "--out", tmp_path / "adapted")
    assert code == 0, err
    model, _, cfg, _ = load_run(tmp_path / "adapted")
    assert model.tokens.mapping == dict(task.vocab) and cfg.tokens == dict(task.vocab)
    code, _, err = run_cli(capsys, "adapt", folder, "site=transformer.h.0", "tokens=" + tokens.replace("apple", "pear"),
                           "task=single_object", "--out", tmp_path / "x")
    assert_one_line_error(code, err, "D='pear'", "no such token")
    (folder / "tokenizer.json").unlink()
    code, _, err = run_cli(capsys, "adapt", folder, "site=transformer.h.0", f"tokens={tokens}",
                           "task=single_object", "--out", tmp_path / "x")
    assert_one_line_error(code, err, "needs the model folder's tokenizer.json")
