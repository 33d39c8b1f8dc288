"""The fuzz suite: random and boundary inputs for every command and options class, and random damage to
every file a run or results folder holds.

Property, for every example: exit 0, or exit 2 with one line on stderr; never a traceback, never a hang
past HANG_S seconds, never a write outside the example's own folder, never a partial file, never a byte
of a file outside the folder in what numvars prints or writes.

Bounded and reproducible: every property runs derandomized (a fixed seed, no example database) for the
number of examples in EXAMPLES (764 in all: 500 options, 120 command lines, 100 damaged run folders, 40
damaged results folders, 4 real processes), about two minutes on a 2-core machine; the suite prints a
summary line (examples, how many ended in exit 0, seconds) at its end. Sizes in the generated words are
either tiny (1, 2) or out of range, so the real work each example does stays small; there is no
per-example deadline (timings on a shared 2-core machine vary): a hard alarm bounds every command instead.
"""
from __future__ import annotations

import base64
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import types
import typing
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from numvars import analysis, cli, config, io, options, report
from numvars.align import protocol
from numvars.errors import NumvarsError
from numvars.explain import ExplainOptions
from numvars.models import ModelConfig
from numvars.tasks import TaskSpec

from conftest import TINY, claim_trained, tiny_config
from test_report import write_results

EXAMPLES = {"options": 500, "words": 120, "run_files": 100, "results_files": 40, "process": 4}
HANG_S = 120
RUNS: dict[str, list] = {}            # property -> [examples, seconds, exit 0]; printed by conftest at the end
SECRET = "SECRET-b5e1-" * 8


def fuzz(name: str):
    return settings(max_examples=EXAMPLES[name], derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


class Hang(Exception):
    pass


@contextmanager
def bounded(seconds: int = HANG_S):
    """A hard bound on one command: past it the example fails as a hang."""
    def alarm(*_):
        raise Hang(f"no answer within {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _count(name: str, started: float, code: int | None = None) -> None:
    """Record one example: how long it took and how the command ended (exit 0: work done or reused)."""
    n, s, ok = RUNS.setdefault(name, [0, 0.0, 0])
    RUNS[name] = [n + 1, s + time.perf_counter() - started, ok + (code == 0)]


# --- values -------------------------------------------------------------------------------------------

HOSTILE = ["", " ", "../x", "a/b", "x" * 3000, "a\nb", "\x1b[31m", "javascript:alert(1)", "none", "ü", "a,b",
           "\t", "$(touch pwned)", "; rm -rf x"]
INTS = ["-1", "0", "1", "2", str(2 ** 63), str(2 ** 64), "1" + "0" * 30, "1.5", "2.0", "1e3", "x", "", "nan", "-0",
        " 1 ", "0x10", "9" * 5000]
FLOATS = ["-1", "0", "1e-3", "0.5", "1", "1e30", "nan", "inf", "-inf", "1e999", "x", "", "1e-320", "-0.0"]
BOOLS = ["true", "false", "1", "0", "yes", "maybe", "", "2"]
TUPLES = ["", "1", "2", "25", "-1", "1,1", "x", "[1, 2]", "1,2,3", "1e3"]
CHOICES = {"arch": ["gru", "lstm", "transformer"], "task": ["multi_object", "single_object", "same_object"],
           "pos": ["rope", "none"], "inputs": ["teacher", "model"], "device": ["cpu", "auto", "cuda", "quantum"],
           "map": ["orthogonal", "linear"], "maps": ["orthogonal", "linear", "orthogonal,linear"],
           "control": ["untrained", "random", "identity"], "site": ["state", "resid.1", "default"],
           "variable": ["count", "phase", "count,phase", "demo_count"], "variables": ["all", "core"],
           "program": ["up_down", "up_up", "ctx_distributed", "mine.py:Mine", "../w/mine.py:Mine",
                       "bad.py:NoStep", "bad.py:Exits", "bad.py:Raises", "missing.py:X"],
           "ks": ["1", "2", "d/2", "d/0", "d/", "0", "1,d/2"], "positions": ["all", "tokens"],
           "match": ["phase", "role"], "schedule": ["constant", "cosine"], "init": ["probe", "random"],
           "out": ["runs", "a/b", "../o", "../../o", "", " ", "o" * 300, "x\ny", "runs/../.."]}


GOOD = {int: ["1", "2"], float: ["0.5", "1e-3"], bool: ["true", "false"], tuple: ["", "1"]}


def values(key: str, kind) -> st.SearchStrategy:
    """Half the time a value that is valid for the key's kind (small), else a boundary or hostile one."""
    optional = typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)
    base = next(a for a in typing.get_args(kind) if a is not type(None)) if optional else kind
    base = tuple if typing.get_origin(base) is tuple else base
    if key in CHOICES:
        good, bad = CHOICES[key], ([] if key == "out" else HOSTILE)
    else:
        good, bad = GOOD.get(base, ["x"]), {bool: BOOLS, int: INTS, float: FLOATS, tuple: TUPLES}.get(base, HOSTILE)
    return st.one_of(st.sampled_from(good + (["none"] if optional else [])), st.sampled_from(bad or good))


def words(schema: dict, base: dict, n: int = 3) -> st.SearchStrategy:
    """key=value words: `base` with up to n keys of `schema` replaced by generated values, and now and
    then an unknown key or a word without '='."""
    keys = list(schema)

    @st.composite
    def make(draw):
        chosen = draw(st.lists(st.sampled_from(keys), max_size=n, unique=True))
        over = {k: draw(values(k, schema[k])) for k in chosen}
        extra = draw(st.sampled_from([[], [], [], ["bogus=1"], ["noequals"], ["=x"], ["k==="]]))
        return [f"{k}={v}" for k, v in {**base, **over}.items()] + extra
    return make()


# --- 1. every options class, in Python --------------------------------------------------------------

CONFIG_SCHEMA = {k: options.schema_of(config.SECTIONS[s])[f] for k, (s, f) in config.KEYS.items()}
OPTION_CLASSES = [TaskSpec, ModelConfig, config.TrainConfig, config.Placement, protocol.DASOptions,
                  protocol.FullSwapOptions, ExplainOptions,
                  *[c for c in (getattr(protocol, "AlignModelsOptions", None), getattr(protocol, "AttentionOptions", None))
                    if c is not None]]


@fuzz("options")
@given(data=st.data())
def test_fuzz_every_options_class_accepts_or_names_the_problem(data):
    started = time.perf_counter()
    cls = data.draw(st.sampled_from([*OPTION_CLASSES, config.from_mapping]))
    schema = CONFIG_SCHEMA if cls is config.from_mapping else options.schema_of(cls)
    raw = dict(w.split("=", 1) for w in data.draw(words(schema, {})) if "=" in w[1:])
    try:
        if cls is config.from_mapping:
            cls(raw)
        else:
            made = cls(**options.parse(raw, schema, "fuzz"))
            if isinstance(made, ExplainOptions):
                made.k_values(20)
    except NumvarsError as e:
        assert "\n" not in str(e) and len(str(e)) <= 1100
        return _count("options", started, 2)
    _count("options", started, 0)


# --- 2. command lines, run for real on tiny runs -----------------------------------------------------------

MINE = "from numvars.programs import UpDown\nclass Mine(UpDown):\n    name = 'mine'\n"
BAD = ("import sys\nfrom numvars.programs import Program, UpDown\n"
       "class NoStep(Program):\n    variables = ('count',)\n    def init(self, b):\n        return {}\n"
       "    def predict(self, s):\n        return None\n"
       "class Exits(UpDown):\n    def step(self, state, roles):\n        sys.exit(3)\n"
       "class Raises(UpDown):\n    def __init__(self):\n        raise KeyError('boom')\n")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A sandbox template: a trained-looking GRU run with an alignment, a full swap and an evaluation; a
    second run of the same task; a Transformer run; the user program files; a secret file beside it."""
    from numvars.train import train

    root = tmp_path_factory.mktemp("fuzz_pristine")
    work = root / "w" / "d"
    work.mkdir(parents=True)
    (work / "mine.py").write_text(MINE)
    (work / "bad.py").write_text(BAD)
    (root / "w" / "mine.py").write_text(MINE)
    runs = root / "runs"
    gru = claim_trained(train(tiny_config(runs), progress=False).run_dir)
    other = claim_trained(train(tiny_config(runs, seed=1), progress=False).run_dir)
    tf = claim_trained(train(tiny_config(runs, arch="transformer"), progress=False).run_dir)
    for argv in (["align", gru, "n_train=20", "n_val=10", "n_test=10", "max_epochs=1", "--quiet"],
                 ["fullswap", gru, "n=10"], ["eval", gru, "--max-count", "5", "--per-count", "1"]):
        assert cli.main([str(a) for a in argv]) == 0
    return root, {"gru": gru.relative_to(root), "other": other.relative_to(root), "tf": tf.relative_to(root)}


def _commands(names: dict) -> dict:
    """command -> (argv before the words, schema of its key=value words, base words)."""
    small = {"n_train": "20", "n_val": "10", "n_test": "10", "max_epochs": "1"}
    gru, other, tf = (Path("../..") / names[k] for k in ("gru", "other", "tf"))
    cross = options.schema_of(protocol.AlignModelsOptions) if hasattr(protocol, "AlignModelsOptions") else \
        __import__("numvars.jobs.cache", fromlist=["x"]).CROSS_KEYS
    schema = CONFIG_SCHEMA
    explain = {"program": "up_down", "variables": "core", "ks": "1", "maps": "orthogonal", "site": "default",
               "attention": "false", "n_train": "20", "n_val": "10", "n_test": "10"}
    return {"train": (["train", "--quiet"], schema, {k: str(v) for k, v in TINY.items()}),
            "align": (["align", gru, "--quiet"], options.schema_of(protocol.DASOptions), small),
            "fullswap": (["fullswap", gru], options.schema_of(protocol.FullSwapOptions), {"n": "10"}),
            "explain": (["explain", gru, "--quiet"], options.schema_of(ExplainOptions), explain),
            "align-models": (["align-models", gru, other, "--quiet"], cross, small),
            "attention": (["attention", tf], {"n": int, "seed": int, "device": str}, {"n": "5"})}


FLAGS = st.lists(st.sampled_from([["--jobs", "0"], ["--jobs", "-3"], ["--jobs", "1"], ["--threads", "0"],
                                  ["--threads", "1"], ["--max-count", "100000"], ["--max-count", "3"],
                                  ["--per-count", "1"], ["--per-count", "-2"], ["--preset", "quick"],
                                  ["--preset", "paper"], ["--out", "res"], ["--out", "o" * 300]]), max_size=3)


@st.composite
def command_lines(draw, names):
    table = _commands(names)
    which = draw(st.sampled_from([*table, "eval", "reproduce", "report", "analyze"]))
    flags = [x for pair in draw(FLAGS) for x in pair]
    if which == "eval":
        return ["eval", Path("../..") / names["gru"], *(f for f in flags if f not in ("--preset", "quick", "paper"))]
    if which == "reproduce":
        return ["reproduce", "--dry-run", *(f for f in flags if "count" not in f)]
    if which in ("report", "analyze"):
        return [which, draw(st.sampled_from(["../..", "nowhere", "../../runs", "x" * 300]))]
    head, schema, base = table[which]
    jobs = [f for pair in draw(st.lists(st.sampled_from([["--jobs", "0"], ["--jobs", "-3"], ["--jobs", "1"]]),
                                        max_size=1)) for f in pair] if which == "explain" else []
    return [*head, *draw(words(schema, base)), *jobs]


def _sandbox(pristine, tmp_path) -> Path:
    src, _ = pristine
    box = tmp_path / f"box{len(list(tmp_path.iterdir()))}"
    shutil.copytree(src, box, symlinks=True)
    return box


def _listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns if p.is_file() else 0)
            for p in folder.rglob("*") if not p.is_symlink()}


def check_outcome(code, out: str, err: str, box: Path, outside: Path, before: dict, box_before: dict) -> None:
    """The property every example must have."""
    assert code in (0, 2), (code, err[-500:])
    lines = err.strip().splitlines()
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("numvars: error: ") and len(lines[0]) < 1200, err[-500:]
    else:
        assert all(line.startswith("numvars: note: ") for line in lines), err[-500:]
    assert "Traceback" not in err and SECRET not in out + err
    assert not [p for p in box.rglob("*.tmp")], "a partial file was left"
    written = [box / name for name, mtime in _listing(box).items() if box_before.get(name) != mtime]
    for p in written:                                   # whole, never half-written
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".parquet":
            pd.read_parquet(p)
    assert _listing(outside) == before, "something was written outside the example's folder"


def _run(argv, capsys, cwd: Path):
    """cli.main in-process, as the `numvars` process would end: a SystemExit (argparse's usage errors, or a
    user program's sys.exit that numvars failed to catch) gives its exit code; any other exception fails."""
    started = os.getcwd()
    os.chdir(cwd)
    capsys.readouterr()
    try:
        with bounded():
            code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException as e:                              # noqa: B036
        raise AssertionError(f"{[str(a)[:80] for a in argv]} raised {type(e).__name__}: {str(e)[:300]}") from e
    finally:
        os.chdir(started)
    out, err = capsys.readouterr()
    return code, out, err


@fuzz("words")
@given(data=st.data())
def test_fuzz_command_lines_of_every_command(pristine, tmp_path, capsys, data):
    started = time.perf_counter()
    argv = data.draw(command_lines(pristine[1]))          # every draw before the sandbox: a draw may end the example
    box = _sandbox(pristine, tmp_path)
    outside = tmp_path / "outside"                   # beside the example's folder: must stay empty
    outside.mkdir(exist_ok=True)
    box_before = _listing(box)
    try:
        code, out, err = _run(argv, capsys, box / "w" / "d")
        check_outcome(code, out, err, box, outside, {}, box_before)
        assert sorted(os.listdir(tmp_path)) == sorted([box.name, "outside"])
    finally:
        shutil.rmtree(box)
    _count("words", started, code)


# --- 3. damaged run folders ----------------------------------------------------------------------------------

def _damage(path: Path, how: str, value, secret: Path) -> None:
    """Damage one file (or folder) of a run: `how` names the kind, `value` its detail."""
    if how == "link out":
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        path.symlink_to(secret.parent if value else secret)
    elif how == "delete":
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    elif path.is_dir():
        return
    elif how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * value)])
    elif how == "huge":
        path.write_bytes(b"a" * 2_000_000)
    elif how == "json":
        path.write_text(json.dumps(value))
    elif how == "field" and path.suffix == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data:
            data[sorted(data)[len(str(value)) % len(data)]] = value
        path.write_text(json.dumps(data))
    elif how == "yaml bomb" and path.suffix == ".yaml":
        path.write_text("a: &a [x, x, x, x]\n" + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}]\n"
                                                        for p, c in zip("abcdefghij", "bcdefghijk")) + "task: *k\n")
    elif how == "nan weights" and path.suffix == ".safetensors":
        tensors = io.load_tensors(path)
        save_file({k: torch.full_like(v, value) if v.is_floating_point() else v for k, v in tensors.items()},
                  str(path))


DAMAGES = st.one_of(
    st.tuples(st.just("truncate"), st.sampled_from([0.0, 0.1, 0.5, 0.99])),
    st.tuples(st.just("json"), st.sampled_from([[], {}, "text", 1, None, float("nan"), [1, 2], {"a": []}])),
    st.tuples(st.just("field"), st.sampled_from(["x", None, [], float("nan"), float("inf"), 1e308, -1, True, "false",
                                                 {"x": 1}, "INSIDE-TEXT " * 20])),
    st.tuples(st.sampled_from(["delete", "huge", "yaml bomb"]), st.none()),
    st.tuples(st.just("link out"), st.booleans()),
    st.tuples(st.just("nan weights"), st.sampled_from([float("nan"), float("inf"), 1e38])))


def _run_files(pristine) -> list[str]:
    src, names = pristine
    gru = src / names["gru"]
    files = sorted(str(p.relative_to(gru)) for p in gru.rglob("*"))
    return files


@fuzz("run_files")
@given(data=st.data())
def test_fuzz_damaged_run_folders(pristine, tmp_path, capsys, data):
    started = time.perf_counter()
    target = data.draw(st.sampled_from(_run_files(pristine)))
    how, value = data.draw(DAMAGES)
    command = data.draw(st.sampled_from(["eval", "align", "fullswap", "train", "attention", "align-models"]))
    box = _sandbox(pristine, tmp_path)
    gru = box / pristine[1]["gru"]
    outside = box.parent / "elsewhere"
    outside.mkdir()
    secret = outside / "secret.json"
    secret.write_text(json.dumps({"reached_criterion": True, "epochs": 1, "trial_accuracy": 1.0, "note": SECRET}))
    _damage(gru / target, how, value, secret)
    before, box_before = _listing(outside), _listing(box)
    small = ["n_train=20", "n_val=10", "n_test=10", "max_epochs=1", "--quiet"]
    argv = {"eval": ["eval", gru, "--max-count", "5", "--per-count", "1"], "align": ["align", gru, *small],
            "fullswap": ["fullswap", gru, "n=10"], "train": ["train", "--quiet", "--from", gru],
            "attention": ["attention", gru], "align-models": ["align-models", gru, box / pristine[1]["other"], *small]
            }[command]
    try:
        code, out, err = _run(argv, capsys, box / "w" / "d")
        check_outcome(code, out, err, box, outside, before, box_before)
        assert sorted(os.listdir(tmp_path)) == sorted([box.name, "elsewhere"])
    finally:
        shutil.rmtree(box)
        shutil.rmtree(outside)
    _count("run_files", started, code)


# --- 4. damaged results folders and the report ----------------------------------------------------------------

@pytest.fixture(scope="module")
def results_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_results") / "results"
    root.mkdir()
    write_results(root, {})
    analysis.analyze(root)
    report.render(root)
    return root


def _hostile_figures(root: Path, secret: Path, choice: int) -> None:
    figs = pd.read_parquet(root / "analysis" / "figures.parquet")
    file = [str(secret), "../secret.png", "figures/../../secret.png", "/etc/hostname", "figures/iia.png"][choice % 5]
    figs.loc[choice % len(figs), ["file", "status"]] = [file, "ok"]
    figs.to_parquet(root / "analysis" / "figures.parquet", index=False)


def _quick_draw(template: Path):
    """`analysis.draw` that copies the template's drawing of the figure instead of drawing it (matplotlib takes
    a second a figure; the figures are tested in test_report): the tables and the report run for real."""
    real = analysis.draw

    def draw(folder: Path, name: str, make, title: str | None = None) -> dict:
        png = template / "figures" / f"{name}.png"
        if not png.is_file():
            return real(folder, name, make, title)
        io.write_atomic(folder / f"{name}.png", lambda tmp: shutil.copyfile(png, tmp))
        return {"name": name, "title": title or name, "file": f"figures/{name}.png", "caption": "c", "status": "ok",
                "reason": ""}
    return draw


@fuzz("results_files")
@given(data=st.data())
def test_fuzz_damaged_results_folders_never_leak_into_the_report(results_template, tmp_path, capsys, monkeypatch,
                                                                 data):
    started = time.perf_counter()
    monkeypatch.setattr(analysis, "draw", _quick_draw(results_template))
    box = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
    root = box / "results"
    shutil.copytree(results_template, root, symlinks=True)
    secret = box / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n" + SECRET.encode())
    target = data.draw(st.sampled_from(["figures table", "figure link", "explain links", "meta.json", "tables/runs.csv",
                                        "tables/iia.csv", "analysis/headline.parquet", "analysis/oor.parquet"]))
    detail = data.draw(st.integers(0, 9))
    if target == "figures table":
        _hostile_figures(root, secret, detail)
    elif target == "figure link":
        png = root / "figures" / ["iia.png", "oor.png", "size_sweep.png"][detail % 3]
        png.unlink(missing_ok=True)
        png.symlink_to(secret)
    elif target == "explain links":
        page = ["javascript:alert(1)", "data:text/html,x", " javascript:x", "JaVaScRiPt:x", "../../secret.png",
                "/etc/passwd", "runs/x/explain.html", "http://example.invalid/x.html", "a b.html", "x.html#'><b>"]
        pd.DataFrame([{"run_name": "gru-multi_object-default-d20-s0", "arch": "gru", "task": "t", "d_model": 20, "seed": 0, "best": "<b>x</b>",
                       "verdict": "v", "page": page[detail]}]).to_csv(root / "tables" / "explain.csv", index=False)
    else:
        how, value = data.draw(DAMAGES)
        _damage(root / target, how, value, secret)
        if target.startswith("tables/") and how == "field":            # a cell of the wrong kind
            df = (pd.read_csv(root / target) if (root / target).stat().st_size else pd.DataFrame()).astype(object)
            if len(df):
                cell = value if value is None or isinstance(value, (str, int, float)) else json.dumps(value)
                df.at[0, df.columns[detail % len(df.columns)]] = cell
                df.to_csv(root / target, index=False)
    outside = box / "outside"
    outside.mkdir()
    before, root_before = _listing(outside), _listing(root)
    try:
        code, out, err = _run(["report", root], capsys, box)
        check_outcome(code, out, err, root, outside, before, root_before)
        if code == 0:
            page = (root / "report.html").read_text()
            assert SECRET not in page and base64.b64encode(secret.read_bytes()).decode()[:40] not in page
            assert "href='javascript" not in page.lower().replace(" ", "") and "href='data:" not in page.lower()
    finally:
        shutil.rmtree(box)
    _count("results_files", started, code)


# --- 5. a few real processes ----------------------------------------------------------------------------------

@fuzz("process")
@given(data=st.data())
def test_fuzz_real_processes_exit_0_or_2_with_one_line(pristine, tmp_path, data):
    started = time.perf_counter()
    argv = data.draw(command_lines(pristine[1]))
    box = _sandbox(pristine, tmp_path)
    exe = Path(sys.executable).with_name("numvars")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "numvars.cli"]
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    box_before = _listing(box)
    try:
        done = subprocess.run([*cmd, *map(str, argv)], cwd=box / "w" / "d", capture_output=True, text=True,
                              timeout=HANG_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{[str(a)[:60] for a in argv]} did not finish within {HANG_S} s")
    try:
        check_outcome(done.returncode, done.stdout, done.stderr, box, outside, {}, box_before)
        assert sorted(os.listdir(tmp_path)) == sorted([box.name, "outside"])
    finally:
        shutil.rmtree(box)
    _count("process", started, done.returncode)
