"""Training and evaluation: run directories, resuming, seeds, the lr schedule, trial accuracy."""
import json
import shutil

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from numvars import io, models
from numvars import train as train_mod
from numvars.config import RunConfig, from_mapping
from numvars.options import split_words
from numvars.errors import NumvarsError
from numvars.evaluate import greedy_trials, trial_accuracy
from numvars.tasks import get_task
from numvars.train import checkpoint_epochs, lr_factor, next_token_loss, train

from conftest import PARTLY, tiny_config

WALL_CLOCK = ["seconds"]


def weights(path) -> dict[str, torch.Tensor]:
    return io.load_tensors(path)


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def metrics(run_dir) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "metrics.parquet").drop(columns=WALL_CLOCK)


def files(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --- run directories -----------------------------------------------------------------------------

def test_a_tiny_run_writes_config_weights_checkpoints_metrics_and_summary(tiny_run):
    d = tiny_run.run_dir
    assert d.name.startswith("multi_object-gru-d8-s0-")
    assert files(d) == {"config.yaml", "model.safetensors", "metrics.parquet", "summary.json", "checkpoints",
                        "checkpoints/epoch_000001.safetensors", "checkpoints/epoch_000002.safetensors",
                        "checkpoints/epoch_000003.safetensors"}      # no resume.safetensors, no temporary files
    summary = json.loads((d / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["steps"] == 6 and summary["reached_criterion"] is False
    assert summary["run_id"] == tiny_config(d.parent).run_id()
    m = pd.read_parquet(d / "metrics.parquet")
    assert list(m.columns) == ["epoch", "step", "loss", "lr", "trial_accuracy", "val_loss", "seconds", "checkpoint"]
    assert m["epoch"].tolist() == [1, 2, 3] and m["step"].tolist() == [2, 4, 6]
    assert m["checkpoint"].all()
    assert same_weights(weights(d / "model.safetensors"), weights(d / "checkpoints/epoch_000003.safetensors"))


def test_run_files_get_the_permissions_of_ordinary_files_despite_atomic_writes(tiny_run):
    import os

    umask = os.umask(0o022)
    os.umask(umask)
    for p in tiny_run.run_dir.rglob("*.*"):
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p


def test_config_yaml_holds_the_resolved_config_and_reads_back_to_the_same_run(tiny_run):
    sections = io.read_yaml(tiny_run.run_dir / "config.yaml")
    assert set(sections) == {"run_id", "protocol", "task", "model", "train"}
    assert sections["model"]["vocab_size"] == 9 and sections["task"]["holdouts"] == [4, 9, 14, 17]
    cfg = RunConfig.from_sections(sections)
    assert cfg == tiny_config(tiny_run.run_dir.parent)
    assert cfg.run_id() == sections["run_id"]


def test_a_finished_run_is_skipped(tiny_run):
    d = tiny_run.run_dir
    before = {p: p.stat().st_mtime_ns for p in d.rglob("*")}
    again = train(tiny_config(d.parent), progress=False)
    assert again.skipped and again.run_dir == d and again.summary == tiny_run.summary
    assert {p: p.stat().st_mtime_ns for p in d.rglob("*")} == before


def test_models_load_round_trips_the_trained_weights(tiny_run):
    d = tiny_run.run_dir
    model = models.load(d)
    assert not model.training and isinstance(model, models.GRULM) and model.cfg.d_model == 8
    assert same_weights(model.state_dict(), weights(d / "model.safetensors"))
    first = models.load(d, checkpoint="epoch_000001.safetensors")
    assert same_weights(first.state_dict(), weights(d / "checkpoints/epoch_000001.safetensors"))
    assert not same_weights(first.state_dict(), model.state_dict())


def test_loading_mismatched_or_missing_weights_is_a_one_line_error(tiny_run, tmp_path):
    d = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    other = models.build(from_mapping({"d_model": 12}).model, seed=0)
    io.save_tensors(d / "model.safetensors", other.state_dict())
    with pytest.raises(NumvarsError, match="do not fit"):
        models.load(d)
    with pytest.raises(NumvarsError, match="missing"):
        models.load(d, checkpoint="epoch_000099.safetensors")
    (d / "config.yaml").write_text("task: {}\n")
    with pytest.raises(NumvarsError, match="model section"):
        models.load(d)
    with pytest.raises(NumvarsError, match="does not exist"):
        models.load(tmp_path / "nowhere")


# --- seeds and resuming --------------------------------------------------------------------------

def test_the_same_seed_gives_identical_weights_and_metrics(tmp_path):
    a = train(tiny_config(tmp_path / "a"), progress=False).run_dir
    b = train(tiny_config(tmp_path / "b"), progress=False).run_dir
    c = train(tiny_config(tmp_path / "c", seed=1), progress=False).run_dir
    assert a.name == b.name != c.name
    assert same_weights(weights(a / "model.safetensors"), weights(b / "model.safetensors"))
    for ckpt in (a / "checkpoints").iterdir():
        assert same_weights(weights(ckpt), weights(b / "checkpoints" / ckpt.name))
    pd.testing.assert_frame_equal(metrics(a), metrics(b))
    assert not same_weights(weights(a / "model.safetensors"), weights(c / "model.safetensors"))


class Killed(KeyboardInterrupt):
    pass


def kill_at_evaluation(monkeypatch, k: int) -> list:
    """Make training die (like Ctrl-C) inside the k-th epoch's evaluation; returns the call log."""
    calls, real = [], train_mod.trial_accuracy

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == k:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "trial_accuracy", evaluate)
    return calls


def count_evaluations(monkeypatch) -> list:
    return kill_at_evaluation(monkeypatch, k=10**9)


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_a_run_killed_midway_resumes_and_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch, arch):
    whole = train(tiny_config(tmp_path / "whole", arch=arch, max_epochs=6), progress=False).run_dir

    monkeypatch.setattr(train_mod, "RESUME_EVERY_S", 0.0)        # save resume state after every epoch
    cfg = tiny_config(tmp_path / "killed", arch=arch, max_epochs=6)
    kill_at_evaluation(monkeypatch, k=4)                          # dies in epoch 4, after its training steps
    with pytest.raises(Killed):
        train(cfg, progress=False)
    d = train_mod.run_dir_for(cfg)
    assert (d / "resume.safetensors").is_file() and not (d / "summary.json").exists()
    assert not (d / "model.safetensors").exists()

    calls = count_evaluations(monkeypatch)
    resumed = train(cfg, progress=False)
    assert not resumed.skipped
    assert len(calls) == 3                                        # epochs 4, 5, 6: it resumed, not restarted
    assert same_weights(weights(d / "model.safetensors"), weights(whole / "model.safetensors"))
    assert files(d) == files(whole)
    for ckpt in (d / "checkpoints").iterdir():
        assert same_weights(weights(ckpt), weights(whole / "checkpoints" / ckpt.name))
    pd.testing.assert_frame_equal(metrics(d), metrics(whole))
    assert resumed.summary["epochs"] == 6


def test_a_run_killed_before_its_first_resume_save_starts_over_and_ends_the_same(tmp_path, monkeypatch):
    whole = train(tiny_config(tmp_path / "whole"), progress=False).run_dir
    cfg = tiny_config(tmp_path / "killed")
    kill_at_evaluation(monkeypatch, k=2)                          # RESUME_EVERY_S (20 s) has not passed
    with pytest.raises(Killed):
        train(cfg, progress=False)
    d = train_mod.run_dir_for(cfg)
    assert (d / "config.yaml").is_file() and not (d / "resume.safetensors").exists()
    monkeypatch.undo()
    train(cfg, progress=False)
    assert same_weights(weights(d / "model.safetensors"), weights(whole / "model.safetensors"))
    pd.testing.assert_frame_equal(metrics(d), metrics(whole))


def test_an_unreadable_resume_file_is_a_one_line_error(tmp_path):
    cfg = tiny_config(tmp_path)
    d = train_mod.run_dir_for(cfg)
    d.mkdir(parents=True)
    (d / "resume.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(NumvarsError, match="resume.safetensors is unreadable"):
        train(cfg, progress=False)


def test_training_stops_once_every_evaluation_trial_is_right(tmp_path):
    cfg = from_mapping({**PARTLY["transformer"], "max_epochs": 200, "out": str(tmp_path)})
    result = train(cfg, progress=False)
    m = pd.read_parquet(result.run_dir / "metrics.parquet")
    assert result.summary["reached_criterion"] and result.summary["epochs"] < 200
    assert m["trial_accuracy"].iloc[-1] == 1.0 and (m["trial_accuracy"].iloc[:-1] < 1.0).all()
    assert m["checkpoint"].iloc[-1]
    assert (result.run_dir / f"checkpoints/epoch_{len(m):06d}.safetensors").is_file()


# --- schedule, loss, run ids ---------------------------------------------------------------------

def test_lr_warms_up_over_100_steps_to_1e3_then_decays_as_inverse_sqrt():
    cfg = RunConfig().train
    lr = [cfg.lr * lr_factor(s, cfg) for s in range(2000)]       # lr used by optimiser step s (0-based)
    assert lr[0] == pytest.approx(1e-5) and lr[49] == pytest.approx(5e-4)
    assert lr[99] == pytest.approx(1e-3) and max(lr) == lr[99]     # the 100th step runs at the peak
    assert all(a < b for a, b in zip(lr[:99], lr[1:100]))
    assert lr[399] == pytest.approx(5e-4) and lr[1599] == pytest.approx(2.5e-4)
    assert all(a > b for a, b in zip(lr[100:], lr[101:]))
    assert cfg.lr * lr_factor(10**15, cfg) == pytest.approx(1e-7)   # the floor


def test_lr_floor_holds_early_and_late():
    cfg = from_mapping({"min_lr": "4e-4"}).train
    assert cfg.lr * lr_factor(0, cfg) == pytest.approx(4e-4)
    assert cfg.lr * lr_factor(10_000, cfg) == pytest.approx(4e-4)


def test_the_training_loop_follows_the_schedule(tiny_run):
    m = pd.read_parquet(tiny_run.run_dir / "metrics.parquet")
    assert m["lr"].tolist() == pytest.approx([3e-5, 5e-5, 7e-5])    # lr of the next step after 2, 4, 6 steps


def test_checkpoints_are_dense_early_and_sparse_late():
    epochs = sorted(checkpoint_epochs(2000))
    assert epochs[:8] == [1, 2, 3, 4, 6, 8, 11, 16] and epochs[-1] == 1448
    assert all(b / a <= 1.5 for a, b in zip(epochs[3:], epochs[4:]))
    assert checkpoint_epochs(1) == {1} and checkpoint_epochs(3) == {1, 2, 3}


def test_loss_is_cross_entropy_on_all_positions_except_padding():
    task = get_task("multi_object")
    tokens = task.sample(8, seed=0).tokens
    model = models.build(from_mapping({"head_dropout": "0"}).model, seed=0)
    logits = model(tokens[:, :-1])
    targets = tokens[:, 1:]
    keep = targets != task.vocab["PAD"]
    expected = F.cross_entropy(logits[keep], targets[keep])
    assert torch.allclose(next_token_loss(model, tokens), expected)


def test_run_ids_are_stable_and_ignore_where_and_how():
    base = RunConfig()
    assert base.run_id() == RunConfig().run_id() == from_mapping(split_words(["d_model=20"])).run_id()
    assert base.run_id() == from_mapping({"out": "elsewhere", "device": "cpu", "threads": "2"}).run_id()
    assert base.run_id() == "e150a18df8"              # the default run id drifts only with numvars.PROTOCOL
    assert base.run_id() == from_mapping(dict(void_prob=0, lr=0.001, bos=1, holdouts=[17, 14, 9, 4])).run_id()
    assert base.run_id() != from_mapping({"seed": 1}).run_id() != from_mapping({"arch": "lstm"}).run_id()


@pytest.mark.parametrize("raw, holdouts", [("4,9", (4, 9)), ("9 4", (4, 9)), ("[4, 9]", (4, 9)),
                                           ("(4,9)", (4, 9)), ("", ()), ("[]", ())])
def test_holdouts_read_from_the_command_line_in_any_usual_spelling(raw, holdouts):
    assert from_mapping(split_words([f"holdouts={raw}"])).task.holdouts == holdouts


@pytest.mark.parametrize("overrides, message", [
    ({"task": "two_object"}, "unknown task"), ({"arch": "mamba"}, "unknown arch"),
    ({"colour": "red"}, "unknown config key"), ({"d_model": "-2"}, "d_model"),
    ({"d_model": "x"}, "cannot read"), ({"bos": "maybe"}, "cannot read"),
    ({"batch_size": "0"}, "batch_size"), ({"lr": "0"}, "lr"), ({"device": "tpu"}, "device"),
])
def test_bad_configs_are_one_line_errors(overrides, message):
    with pytest.raises(NumvarsError, match=message) as e:
        from_mapping(overrides)
    assert "\n" not in str(e.value)


# --- trial accuracy: teacher-forced and free-running agree ---------------------------------------

def task_of(run_dir):
    return RunConfig.from_sections(io.read_yaml(run_dir / "config.yaml")).make_task()


@pytest.mark.parametrize("name", ["gru", "lstm", "transformer", "gru_minimal"])
def test_teacher_forced_and_free_running_trial_accuracy_agree_trial_by_trial(partly_trained, name):
    d = partly_trained(name)
    model, task = models.load(d), task_of(d)
    forced = trial_accuracy(model, task, range(1, 11), per_count=8)
    free = greedy_trials(model, task, range(1, 11), per_count=8)
    assert 0 < forced.accuracy < 1                      # partly right, so the comparison can fail
    assert torch.equal(forced.correct, free.correct)
    assert torch.equal(forced.counts, free.counts)


def test_trial_accuracy_by_count_and_mode(partly_trained):
    model = models.load(partly_trained("lstm")).train()
    result = trial_accuracy(model, task_of(partly_trained("lstm")), range(1, 11), per_count=8)
    assert model.training                               # restored after evaluating in eval mode
    table = result.by_count()
    assert table["count"].tolist() == list(range(1, 11)) and (table["trials"] == 8).all()
    assert table["accuracy"].mean() == pytest.approx(result.accuracy)


class Oracle(nn.Module):
    """A hand-written causal 'model' for multi_object: R while fewer responses than demo tokens, then EOS.
    With off_by=1 it emits one R too many."""

    def __init__(self, task, off_by=0):
        super().__init__()
        self.task, self.off_by = task, off_by

    def forward(self, tokens):
        v = self.task.vocab
        demo = torch.isin(tokens, torch.tensor([v["D0"], v["D1"], v["D2"]])).cumsum(1)
        responding = (tokens == v["T"]).cumsum(1) > 0
        resp = (tokens == v["R"]).cumsum(1)
        nxt = torch.where(resp < demo + self.off_by, v["R"], v["EOS"])
        nxt = torch.where(responding, nxt, v["D0"])
        return F.one_hot(nxt, self.task.vocab_size).float()


def test_a_perfect_counter_gets_every_trial_right_even_beyond_the_training_range():
    task = get_task("multi_object", void_prob=0.2)
    for evaluate in (trial_accuracy, greedy_trials):
        assert evaluate(Oracle(task), task, range(1, 31), per_count=4).accuracy == 1.0
        assert evaluate(Oracle(task, off_by=1), task, range(1, 31), per_count=4).accuracy == 0.0


# --- training past the criterion, fixed sets, model-fed inputs -----------------------------------------

def rows_of(*val_losses, first=3):
    """Metrics rows: trial accuracy 1 from epoch `first` on, with the given validation losses."""
    return [{"epoch": e, "trial_accuracy": 1.0 if e >= first else 0.5, "val_loss": v}
            for e, v in enumerate(val_losses, start=1)]


def test_training_stops_at_the_criterion_or_as_far_past_it_as_asked():
    cfg = RunConfig().train
    rows = rows_of(0.9, 0.5, 0.3, 0.2)
    assert train_mod.criterion_epoch(rows) == 3 and train_mod.done(rows, cfg)
    assert not train_mod.done(rows_of(0.9, 0.5), cfg)
    extra = from_mapping({"extra_epochs": 2}).train
    assert not train_mod.done(rows_of(0.9, 0.5, 0.3, 0.2), extra) and train_mod.done(rows_of(*[0.5] * 5), extra)
    plateau = from_mapping({"plateau": 2}).train
    assert not train_mod.done(rows_of(0.9, 0.5, 0.3, 0.2, 0.1), plateau)           # still improving
    assert not train_mod.done(rows_of(0.9, 0.5, 0.3, 0.2, 0.2), plateau)           # one epoch without a gain
    assert train_mod.done(rows_of(0.9, 0.5, 0.3, 0.2, 0.20001, 0.25), plateau)    # two without a gain of 1e-4
    with pytest.raises(NumvarsError, match="not both"):
        from_mapping({"extra_epochs": 2, "plateau": 2})


def test_a_run_trained_past_the_criterion_keeps_checkpointing(tmp_path):
    cfg = from_mapping({**PARTLY["transformer"], "max_epochs": 200, "extra_epochs": 7, "out": str(tmp_path)})
    result = train(cfg, progress=False)
    m = pd.read_parquet(result.run_dir / "metrics.parquet")
    first = result.summary["criterion_epoch"]
    assert result.summary["reached_criterion"] and result.summary["epochs"] == first + 7 == len(m)
    saved = set(m.loc[m["checkpoint"], "epoch"])
    assert first in saved and first + 7 in saved                       # the criterion's epoch and the last
    assert saved - {first, first + 7} <= checkpoint_epochs(200)         # otherwise the √2 schedule


def test_a_fixed_training_set_is_all_a_run_ever_sees():
    task = get_task("multi_object")
    cfg = from_mapping({"train_set": 50, "batch_size": 16}).train
    batches = train_mod.Batches(task, cfg, "cpu")
    fixed = {tuple(t[:n].tolist()) for t, n in zip(batches.fixed.tokens, batches.fixed.lengths)}
    seen = set()
    for step in range(40):
        tokens, mask = batches(step)
        assert tokens.shape[1] == int((tokens != 0).sum(1).max())      # trimmed to the longest row
        seen |= {tuple(t[t != 0].tolist()) for t in tokens}
    assert seen <= fixed and len(seen) > 40                             # only the fixed set, most of it
    fresh = train_mod.Batches(task, RunConfig().train, "cpu")
    assert not torch.equal(fresh(0)[0], fresh(1)[0])


def test_model_fed_inputs_are_the_models_own_greedy_tokens_at_response_positions(partly_trained):
    model, task = models.load(partly_trained("gru")), task_of(partly_trained("gru"))
    batch = task.sample(200, seed=3, counts=range(1, 11))
    inputs = train_mod.model_fed(model, batch.tokens, batch.task_mask)
    mask = batch.task_mask
    assert torch.equal(inputs[~mask], batch.tokens[~mask])              # demo tokens and T are the true ones
    with torch.no_grad():
        pred = model.eval()(inputs[:, :-1]).argmax(-1)
    assert torch.equal(inputs[:, 1:][mask[:, 1:]], pred[mask[:, 1:]])   # the fixed point: fed = predicted
    assert not torch.equal(inputs, batch.tokens)                        # this model errs, so some inputs differ


def test_model_fed_training_runs_and_differs_from_teacher_forcing(tmp_path):
    teacher = train(from_mapping({**PARTLY["gru"], "max_epochs": 6, "out": str(tmp_path)}), progress=False)
    fed = train(from_mapping({**PARTLY["gru"], "max_epochs": 6, "inputs": "model", "out": str(tmp_path)}),
                progress=False)
    assert teacher.run_dir != fed.run_dir
    assert not same_weights(weights(teacher.run_dir / "model.safetensors"), weights(fed.run_dir / "model.safetensors"))
