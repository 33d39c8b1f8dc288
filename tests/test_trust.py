"""Run folders from elsewhere run no code; mistakes and failures end in one line, with a way out."""
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from numvars import io
from numvars import train as train_mod
from numvars.errors import NumvarsError
from numvars.train import run_dir_for, train

from conftest import TINY, claim_trained, tiny_config
from test_cli import assert_one_line_error, run_cli, snapshot, tiny_args

TINY_ARGS = [f"{k}={v}" for k, v in TINY.items()]


class Payload:
    """Unpickling this writes a marker file: what a malicious resume.pt could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


# --- security -----------------------------------------------------------------------------------

def test_a_crafted_pickle_resume_file_is_refused_and_runs_nothing(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "runs")
    d = run_dir_for(cfg)
    d.mkdir(parents=True)
    marker = tmp_path / "marker"
    (d / "resume.pt").write_bytes(pickle.dumps({"model": Payload(marker)}))
    code, _, err = run_cli(capsys, "train", "--quiet", f"out={tmp_path / 'runs'}", *TINY_ARGS)
    assert_one_line_error(code, err, "resume.pt", "pickle", "delete it")
    assert not marker.exists()                                    # nothing was unpickled
    assert sorted(p.name for p in d.iterdir()) == ["resume.pt"]  # and nothing trained or written


def test_resume_state_is_saved_without_pickle(tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "RESUME_EVERY_S", 0.0)
    calls = []

    def die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = train_mod.trial_accuracy
    monkeypatch.setattr(train_mod, "trial_accuracy", die)
    cfg = tiny_config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    data = (run_dir_for(cfg) / "resume.safetensors").read_bytes()
    assert data[:1] != b"\x80" and data[:2] != b"PK"      # not a pickle (PROTO opcode first), nor torch.save's zip
    size = int.from_bytes(data[:8], "little")              # safetensors: the header's length, a JSON header, tensors
    header = json.loads(data[8:8 + size])
    assert "numvars_resume" in header["__metadata__"] and any(name.startswith("model/") for name in header)


# --- non-finite numbers ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_non_finite_numbers_are_refused_everywhere(tmp_path, capsys, value):
    code, _, err = run_cli(capsys, "train", "--quiet", f"out={tmp_path}", *TINY_ARGS, f"lr={value}")
    assert_one_line_error(code, err, "finite")
    code, _, err = run_cli(capsys, "train", "--quiet", f"out={tmp_path}", *TINY_ARGS, f"void_prob={value}")
    assert code == 2
    assert list(tmp_path.iterdir()) == []


def test_a_run_whose_loss_turns_non_finite_stops_and_keeps_its_good_checkpoints(tmp_path, monkeypatch):
    real = train_mod.next_token_loss
    steps = []

    def poisoned(model, tokens, targets=None):   # the loss of the 5th step (epoch 3) turns NaN
        steps.append(1)
        loss = real(model, tokens, targets)
        return loss * float("nan") if len(steps) >= 5 else loss

    monkeypatch.setattr(train_mod, "next_token_loss", poisoned)
    cfg = tiny_config(tmp_path, max_epochs=6)
    with pytest.raises(NumvarsError, match="non-finite in epoch 3.*epoch_000002.safetensors.*smaller lr") as e:
        train(cfg, progress=False)
    assert "\n" not in str(e.value)
    d = run_dir_for(cfg)
    assert sorted(p.name for p in (d / "checkpoints").iterdir()) == ["epoch_000001.safetensors",
                                                                     "epoch_000002.safetensors"]
    assert not (d / "model.safetensors").exists() and not (d / "summary.json").exists()
    for ckpt in (d / "checkpoints").iterdir():
        assert all(torch.isfinite(v).all() for v in io.load_tensors(ckpt).values())


# --- dead ends --------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["delete", "corrupt"])
def test_a_run_whose_weights_went_missing_is_retrained_not_skipped(tiny_run, tmp_path, capsys, damage):
    d = shutil.copytree(tiny_run.run_dir, tmp_path / "runs" / tiny_run.run_dir.name)
    weights = d / "model.safetensors"
    expected = {k: v.clone() for k, v in io.load_tensors(weights).items()}   # not backed by the file
    if damage == "delete":
        weights.unlink()
    else:
        weights.write_bytes(b"garbage")
    code, _, err = run_cli(capsys, "eval", d)                    # the error names the command that recovers
    assert_one_line_error(code, err, f"numvars train --from {d}")
    code, out, _ = run_cli(capsys, "train", "--quiet", "--from", d)
    assert code == 0 and out.startswith("trained: ")            # not "already trained"
    got = io.load_tensors(weights)
    assert all(torch.equal(got[k], expected[k]) for k in expected)      # the same seed: the same weights


def test_train_from_a_run_folder_uses_its_config_and_keeps_its_place(tiny_run, capsys):
    code, out, _ = run_cli(capsys, "train", "--quiet", "--from", tiny_run.run_dir)
    assert code == 0 and out.startswith(f"already trained: {tiny_run.run_dir}")


# --- one line, exit 2, nothing written ---------------------------------------------------------------

@pytest.mark.parametrize("overrides, words", [
    (["d_model=100000"], ["d_model=100000", "1..2048"]),
    (["max_count=100000"], ["max_count"]),
    (["batch_size=10000000"], ["batch_size"]),
    (["device=tpu"], ["device='tpu'"]),
    (["d_model=8", "d_model=12"], ["d_model is given twice"]),
    (["out="], ["out= is empty"]),
    (["threads=0"], ["threads"]),
])
def test_impossible_or_ambiguous_train_input_is_one_line(tmp_path, capsys, monkeypatch, overrides, words):
    monkeypatch.chdir(tmp_path)
    duplicate = len(set(o.split("=")[0] for o in overrides)) < len(overrides)
    args = [*TINY_ARGS, *overrides] if duplicate else tiny_args(*overrides)
    code, _, err = run_cli(capsys, "train", "--quiet", *args)
    assert_one_line_error(code, err, *words)
    assert list(tmp_path.iterdir()) == []


def test_out_naming_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    code, _, err = run_cli(capsys, "train", "--quiet", f"out={tmp_path / 'afile'}", *TINY_ARGS)
    assert_one_line_error(code, err, "afile")
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("edit, words", [
    (("model", "d_model", 20.5), ["d_model=20.5", "int"]),
    (("model", "d_model", 10**9), ["d_model", "1..2048"]),
    (("model", "d_model", "twenty"), ["cannot read d_model"]),
    (("train", "lr", ".inf"), ["lr"]),
])
def test_a_config_yaml_with_bad_values_is_one_line(tiny_run, tmp_path, capsys, edit, words):
    import yaml
    d = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    section, key, value = edit
    cfg[section][key] = value
    text = yaml.safe_dump(cfg).replace("'.inf'", ".inf")
    (d / "config.yaml").write_text(text)
    before = snapshot(d)
    code, _, err = run_cli(capsys, "eval", d)
    assert_one_line_error(code, err, *words)
    assert snapshot(d) == before


def test_align_checks_that_it_can_write_before_it_works(tiny_run, tmp_path, capsys, monkeypatch):
    import numvars.jobs.cache as jobs
    d = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    claim_trained(d)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == d / "align" else real_access(p, mode))
    monkeypatch.setattr(jobs, "das", lambda *a, **k: pytest.fail("DAS ran before the write check"))
    code, _, err = run_cli(capsys, "align", d, "n_train=50", "n_val=20", "n_test=20", "--quiet")
    assert_one_line_error(code, err, "cannot write", "align")


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))     # as good as a full disk: writes past 2 kB fail
from numvars import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path):
    done = subprocess.run([sys.executable, "-c", FULL_DISK, "train", "--quiet", f"out={tmp_path}", *TINY_ARGS],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("numvars: error: cannot write") and "size limit" in lines[0]
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("summary.json"))


def test_make_clean_never_deletes_runs_or_results():
    root = Path(__file__).parents[1]
    plan = subprocess.run(["make", "-n", "clean"], cwd=root, capture_output=True, text=True, check=True).stdout
    assert plan.strip() and "runs" not in plan and "results" not in plan


def test_the_test_suite_never_installs_anything():
    for path in Path(__file__).parent.glob("*.py"):
        if path.name != Path(__file__).name:
            text = path.read_text()
            assert "apt-get" not in text and "pip install" not in text and "pip3 install" not in text, path.name
