"""The command line: --help everywhere; mistakes are one line on stderr, exit 2, nothing written."""
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from numvars import cli

from conftest import TINY

TINY_ARGS = [f"{k}={v}" for k, v in TINY.items()]


def tiny_args(*overrides: str) -> list[str]:
    """TINY_ARGS with `overrides` replacing keys they name (a key may be given only once)."""
    named = {o.split("=")[0] for o in overrides}
    return [a for a in TINY_ARGS if a.split("=")[0] not in named] + list(overrides)


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("numvars: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0]


def commands() -> list[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


def test_the_installed_numvars_command_prints_help():
    exe = Path(sys.executable).with_name("numvars")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "numvars.cli"]
    done = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == ""
    for name in commands():
        assert name in done.stdout


@pytest.mark.parametrize("command", commands())
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: numvars {command}")


@pytest.mark.parametrize("command", commands())
def test_help_states_each_default_once(command, capsys):
    """A key whose help names its default ("(default d/2)") is not followed by "(default None)" as well."""
    import re

    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())             # wrapped lines joined
    twice = re.search(r"\(default[^()]*(\([^()]*\)[^()]*)*\) \(default", text)
    assert twice is None, text[max(twice.start() - 60, 0):twice.end() + 20]


def test_train_help_lists_every_config_key(capsys):
    from numvars.config import KEYS

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    words = set(out.replace("=", " ").split())
    for key in KEYS:
        assert key in words, key
    assert "model's own" in out and "fixed training set" in out       # the new training keys explain themselves


@pytest.mark.parametrize("overrides, words", [
    (["task=two_object"], ["unknown task", "multi_object"]),
    (["arch=mamba"], ["unknown arch", "gru"]),
    (["colour=red"], ["unknown config key 'colour'"]),
    (["d_model=-4"], ["d_model=-4"]),
    (["max_epochs=-1"], ["max_epochs"]),
    (["arch=lstm", "d_model=7"], ["even"]),
    (["d_model=big"], ["cannot read"]),
    (["d_model"], ["expected key=value"]),
    (["max_count=3", "holdouts=1,2,3"], ["held out"]),
])
def test_bad_train_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, overrides, words):
    out_dir = tmp_path / "runs"
    code, out, err = run_cli(capsys, "train", "--quiet", f"out={out_dir}", *tiny_args(*overrides))
    assert_one_line_error(code, err, *words)
    assert not out_dir.exists() and list(tmp_path.iterdir()) == []


def test_train_trains_then_skips_a_finished_run(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "train", "--quiet", f"out={tmp_path}", *TINY_ARGS, "arch=lstm")
    assert code == 0 and out.startswith("trained: ")
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "summary.json").is_file() and run_dir.name.startswith("multi_object-lstm-d8-s0-")
    code, out, _ = run_cli(capsys, "train", "--quiet", f"out={tmp_path}", *TINY_ARGS, "arch=lstm")
    assert code == 0 and out.startswith("already trained: ")


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    return shutil.copytree(tiny_run.run_dir, tmp_path / "run")


def test_eval_prints_the_table_and_writes_a_csv(run_copy, capsys):
    code, out, err = run_cli(capsys, "eval", run_copy, "--max-count", 25, "--per-count", 3)
    assert code == 0, err
    csv = run_copy / "eval_max25_per3.csv"
    table = pd.read_csv(csv)
    assert table["count"].tolist() == list(range(1, 26)) and (table["trials"] == 3).all()
    assert table.loc[table["held_out"], "count"].tolist() == [4, 9, 14, 17]
    assert table.loc[~table["in_training_range"], "count"].tolist() == list(range(21, 26))
    assert "free-running trial accuracy per count" in out and str(csv) in out
    assert "in_training_range" in out.splitlines()[1]
    assert len(out.splitlines()) == 1 + 1 + 25 + 1          # title, header, 25 counts, overall


@pytest.mark.parametrize("damage, args, words", [
    ("garbage_weights", [], ["model.safetensors", "corrupt"]),
    ("empty_weights", [], ["model.safetensors", "corrupt"]),
    ("no_weights", [], ["model.safetensors", "missing"]),
    ("other_model", [], ["do not fit"]),
    ("bad_yaml", [], ["config.yaml", "YAML"]),
    ("no_config", [], ["config.yaml", "missing"]),
    ("flat_task", [], ["config.yaml needs mappings"]),
    (None, ["--max-count", "0"], ["--max-count"]),
])
def test_bad_eval_input_is_one_line_exit_2_and_writes_nothing(run_copy, capsys, damage, args, words):
    from numvars import io, models
    from numvars.config import from_mapping

    weights = run_copy / "model.safetensors"
    if damage == "garbage_weights":
        weights.write_bytes(b"\x93\x17garbage, not safetensors" * 40)
    elif damage == "empty_weights":
        weights.write_bytes(b"")
    elif damage == "no_weights":
        weights.unlink()
    elif damage == "other_model":
        io.save_tensors(weights, models.build(from_mapping({"arch": "lstm"}).model).state_dict())
    elif damage == "bad_yaml":
        (run_copy / "config.yaml").write_text("model: [unclosed\n")
    elif damage == "no_config":
        (run_copy / "config.yaml").unlink()
    elif damage == "flat_task":
        text = (run_copy / "config.yaml").read_text()
        cut = text.index("task:")
        model = text.index("model:")
        (run_copy / "config.yaml").write_text(text[:cut] + "task: multi_object\n" + text[model:])
    before = snapshot(run_copy)
    code, out, err = run_cli(capsys, "eval", run_copy, *args)
    assert_one_line_error(code, err, *words)
    assert snapshot(run_copy) == before


def test_eval_of_a_missing_run_directory_is_one_line_exit_2(tmp_path, capsys):
    code, _, err = run_cli(capsys, "eval", tmp_path / "no-such-run")
    assert_one_line_error(code, err, "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    code, _, err = run_cli(capsys, "train", "--quiet", "--device", "cuda", f"out={tmp_path}", *TINY_ARGS)
    assert_one_line_error(code, err, "device=cuda")
    assert list(tmp_path.iterdir()) == []
