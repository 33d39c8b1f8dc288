"""Shared test setup: one torch thread, and small trained runs made once per session.

The machines running the suite have two cores and bursts of slowness, so every model here is
tiny and every run is trained once and shared. No test asserts a time.
"""
from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager

import pytest
import torch

from numvars.config import from_mapping
from numvars.train import train

torch.set_num_threads(1)

# The smallest run that exercises every part of training: 3 epochs of 2 steps, 2 trials per count.
TINY = dict(d_model=8, max_epochs=3, steps_per_epoch=2, eval_per_count=2)

# Runs that learn counts 1..6 part of the way: evaluated on 1..10 they get some trials right
# (small counts) and some wrong (counts they never saw), so their accuracy lies strictly
# between 0 and 1. Training is seeded and single-threaded, hence the same on every run.
PARTLY = {
    "gru": dict(arch="gru", d_model=16, max_count=6, holdouts="", max_epochs=40, eval_per_count=2, seed=1),
    "lstm": dict(arch="lstm", d_model=16, max_count=6, holdouts="", max_epochs=40, eval_per_count=2, seed=1),
    "transformer": dict(arch="transformer", d_model=16, max_count=6, holdouts="", max_epochs=18,
                        eval_per_count=2, seed=1),
    # the minimal variant with voids: no BOS, no trigger, the first R is given
    "gru_minimal": dict(arch="gru", task="single_object", bos=False, trigger=False, void_prob=0.2, d_model=16,
                        max_count=6, holdouts="", max_epochs=40, eval_per_count=2, seed=1),
}


def extra(module: str):
    """An optional extra's module (transformers, nnsight, pyvene): skipped without it, unless
    NUMVARS_REQUIRE_EXTRAS is set (CI installs the extras, so a missing one fails there)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("NUMVARS_REQUIRE_EXTRAS"):
            pytest.fail(f"NUMVARS_REQUIRE_EXTRAS is set but {module} is not installed", pytrace=False)
        pytest.skip(f"{module} is not installed (the hf, nnsight and pyvene extras; make test installs them)", allow_module_level=True)


@contextmanager
def in_float32():
    """Shared runs are trained in float32 whatever the calling test computes in (see test_grouped's float64)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def claim_trained(run_dir):
    """Make a copied tiny run pass for one trained to the criterion (its summary and metrics agree), for
    tests of what comes after training; returns the run directory."""
    import json

    import pandas as pd

    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    metrics.loc[metrics.index[-1], "trial_accuracy"] = 1.0
    metrics.to_parquet(run_dir / "metrics.parquet", index=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.update(reached_criterion=True, criterion_epoch=int(metrics["epoch"].iloc[-1]), trial_accuracy=1.0)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def tiny_config(out, **overrides):
    """A RunConfig with the TINY sizes, writing under `out`; overrides are key=value strings or values."""
    return from_mapping({**TINY, "out": str(out), **overrides})


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished tiny GRU run (RunResult); treat its directory as read-only (copy it to damage it)."""
    return train(tiny_config(tmp_path_factory.mktemp("tiny_runs")), progress=False)


# A tiny Hugging Face GPT-2 (arch=hf: d = 20, 2 layers, 2 heads) trained by numvars on counts 1..4: it reaches
# the criterion in a few epochs (about a second), with no download.
HF_TINY = dict(arch="hf", task="single_object", d_model=20, n_layers=2, n_heads=2, max_count=4, holdouts="",
               max_epochs=40, seed=0)


@pytest.fixture(scope="session")
def hf_run(tmp_path_factory):
    """A finished tiny arch=hf run directory (read-only: copy it to damage it); skipped without transformers."""
    extra("transformers")
    with in_float32():
        result = train(from_mapping({**HF_TINY, "out": str(tmp_path_factory.mktemp("hf_runs"))}), progress=False)
    assert result.summary["reached_criterion"]
    return result.run_dir


@pytest.fixture(scope="session")
def partly_trained(tmp_path_factory):
    """name in PARTLY -> run directory of a partly trained model, each trained at most once."""
    out, made = tmp_path_factory.mktemp("partly_trained"), {}

    def get(name: str):
        if name not in made:
            with in_float32():
                made[name] = train(from_mapping({**PARTLY[name], "out": str(out)}), progress=False).run_dir
        return made[name]

    return get


def pytest_terminal_summary(terminalreporter):
    """The fuzz suite's size and time, as run (tests/test_fuzz.py states the numbers it asks for)."""
    fuzz = sys.modules.get("test_fuzz")
    if fuzz is not None and fuzz.RUNS:
        parts = [f"{name} {n} examples ({ok} exit 0) in {s:.0f} s" for name, (n, s, ok) in fuzz.RUNS.items()]
        total = sum(n for n, _, _ in fuzz.RUNS.values())
        terminalreporter.write_line(f"fuzz suite: {'; '.join(parts)}; {total} in all, "
                                    f"{sum(s for _, s, _ in fuzz.RUNS.values()):.0f} s")
