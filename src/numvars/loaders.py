"""One validating loader for each kind of file a run or results folder holds.

A folder may come from someone else, or be damaged (a full disk, an editor, a hostile hand), so
nothing read from it is trusted: each loader reads its kind of file through `paths.inside` (no
link out of the folder), checks its structure and types, and either returns clean values or says
in one line which file is wrong and how to recover. Per kind, what a bad file means:

| file | when it is bad |
|---|---|
| `config.yaml` | error: the run cannot be used; retrain it |
| `summary.json`, `metrics.parquet` | the run is not finished: `train` trains it again, other commands name `numvars train --from RUN` |
| `*.safetensors` (weights) | the same as a missing file: retrain (NaN or infinite weights included) |
| `align/*/result.json` and its tables | a cache: ignored with a note and computed again |
| `eval_*.csv` | a cache: computed again |
| `tables/*.csv`, `meta.json` (results) | error: rerun `numvars reproduce` (or delete meta.json) |
| `analysis/*.parquet`, the figures table | a cache: the analyses run again |
| `tables/timings.csv` | only an estimate's input: the shipped costs are used instead |
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import torch

from . import io, versions
from .errors import NumvarsError
from .models import read_weights  # noqa: F401  (a loader of weights: with the models)
from .paths import inside, run_folder

# The kind of every column numvars writes in a table, by name (a column means the same in every table);
# any other column is text.
INT = ("d_model", "seed", "k", "n", "count", "epoch", "epochs", "pc", "pairs", "fullswap_n", "n_after",
       "base_value", "source_value", "abs_diff", "trials", "step", "pair", "run", "t", "u", "base_count",
       "source_count")
INT_OR_NONE = ("criterion_epoch", "signed_error")
BOOL = ("reached_criterion", "correct", "trivial", "is_default_site", "checkpoint", "held_out",
        "in_training_range", "ok", "a_ok", "b_ok", "a_on_b", "b_on_a", "correct_free", "same_token",
        "distinguishing")
NUMBER = ("iia", "iia_free", "iia_nontrivial", "token_accuracy", "val_iia", "accuracy", "trial_accuracy", "mean",
          "ci_low", "ci_high", "nontrivial_mean", "untrained_mean", "random_mean", "identity_mean", "fullswap_mean",
          "fullswap_ci_low", "fullswap_ci_high", "r", "p", "iia_at_criterion", "iia_last", "r_after", "fraction",
          "explained_variance", "loss", "lr", "val_loss", "seconds", "logprob", "val_iia")
_TRUE, _FALSE = {"true", "1", "1.0", "yes"}, {"false", "0", "0.0", "no"}


def _column(values: pd.Series, name: str) -> pd.Series:
    """One column as its kind; ValueError (with the reason) when a value does not fit."""
    if name in BOOL:
        text = values.map(lambda v: str(v).strip().lower())
        if not text.isin(_TRUE | _FALSE).all():
            raise ValueError(f"column {name} holds values that are not true/false")
        return text.isin(_TRUE)
    if name not in (*INT, *INT_OR_NONE, *NUMBER):
        return values.map(lambda v: v if isinstance(v, str) or pd.isna(v) else str(v)).astype(object)
    numbers = pd.to_numeric(values.map(lambda v: None if isinstance(v, bool) else v), errors="coerce").astype(float)
    if (numbers.isna() & values.notna()).any():
        raise ValueError(f"column {name} holds values that are not numbers")
    if numbers.abs().eq(math.inf).any():
        raise ValueError(f"column {name} holds an infinite number")
    if name in NUMBER:
        return numbers
    fractional = ((numbers % 1).fillna(0) != 0).any() or (numbers.abs() > 2 ** 53).any()
    if fractional or (name in INT and numbers.isna().any()):
        raise ValueError(f"column {name} holds values that are not integers")
    return numbers if numbers.isna().any() else numbers.astype("int64")


def checked_frame(df: pd.DataFrame, columns, path, fix: str) -> pd.DataFrame:
    """`df` with `columns` present and every column of a known kind converted to it; a one-line error
    naming the file and `fix` otherwise."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise NumvarsError(f"table {path} lacks column(s) {', '.join(map(str, missing[:8]))}; {fix}")
    out = df.copy()
    try:
        for name in out.columns:
            out[name] = _column(out[name], str(name))
    except ValueError as e:
        raise NumvarsError(f"table {path} is corrupt ({e}); {fix}") from None
    return out


def read_frame(path, columns, fix: str) -> pd.DataFrame:
    """A table file (Parquet, or CSV by its name) read and checked by `checked_frame`."""
    try:
        df = io.read_table(path)
    except NumvarsError as e:
        raise NumvarsError(f"{e}; {fix}" if "missing" in str(e) else str(e).replace("delete it and rerun", fix)) \
            from None
    return checked_frame(df, columns, path, fix)


# --- values inside JSON ----------------------------------------------------------------------------

def _number(value, name: str, nan: bool = False, low=None, high=None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} is not a number")
    if math.isnan(value) and nan:
        return float(value)
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name}={value} is out of range")
    return value


def _integer(value, name: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} is not an integer >= {low}")
    return value


def _kind(value, kind: type, name: str):
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{name} has the wrong type ({type(value).__name__})")
    return value


def _retrain(run_dir) -> str:
    return f"retrain it with `numvars train --from {run_dir}`"


# --- a run folder ----------------------------------------------------------------------------------

def read_config(run_dir):
    """RUN/config.yaml as a RunConfig (every key typed and checked as on the command line)."""
    from .config import RunConfig

    run_dir = run_folder(run_dir)
    sections = io.read_yaml(inside(run_dir, "config.yaml"))
    if not all(isinstance(sections.get(k), dict) for k in ("task", "model", "train")):
        raise NumvarsError(f"{run_dir}/config.yaml needs mappings under task, model and train (it has no valid model "
                           f"section); the run cannot be used: train it again with its keys (`numvars train "
                           f"key=value ...`)")
    try:
        return RunConfig.from_sections(sections)
    except NumvarsError as e:
        raise NumvarsError(f"{run_dir}/config.yaml is not a valid config ({e})") from None


METRICS = ("epoch", "trial_accuracy", "checkpoint")


def read_metrics(run_dir) -> pd.DataFrame:
    """RUN/metrics.parquet: one row per epoch, epochs rising."""
    path = inside(run_dir, "metrics.parquet")
    metrics = read_frame(path, METRICS, _retrain(run_dir))
    if metrics.empty or not metrics["epoch"].is_monotonic_increasing:
        raise NumvarsError(f"table {path} has no rows or its epochs are out of order; {_retrain(run_dir)}")
    return metrics


def read_summary(run_dir) -> dict | None:
    """RUN/summary.json (None while the run is unfinished), checked against the run's metrics: the final
    epoch, the final trial accuracy, whether and when the criterion was reached. A summary that is not
    what numvars writes, or that the metrics contradict, is an error naming the command that retrains."""
    from .config import CRITERION

    path = inside(run_dir, "summary.json")
    if not path.is_file():
        return None
    data = io.read_json(path)
    try:
        _kind(data, dict, "summary.json")
        reached = _kind(data.get("reached_criterion"), bool, "reached_criterion")
        epochs = _integer(data.get("epochs"), "epochs", 1)
        accuracy = _number(data.get("trial_accuracy"), "trial_accuracy", low=0, high=1)
        first = data.get("criterion_epoch")
        first = None if first is None else _integer(first, "criterion_epoch", 1)
        for key in ("steps", "seconds"):
            if key in data:
                _number(data[key], key, low=0)
    except ValueError as e:
        raise NumvarsError(f"{path} is corrupt ({e}); {_retrain(run_dir)}") from None
    metrics = read_metrics(run_dir)
    last, hits = metrics.iloc[-1], metrics.loc[metrics["trial_accuracy"] >= CRITERION, "epoch"]
    claims = {"epochs": (epochs, int(last["epoch"])), "reached_criterion": (reached, not hits.empty),
              "criterion_epoch": (first, int(hits.iloc[0]) if len(hits) else None)}
    if "criterion_epoch" not in data:                  # written by every numvars that checks this
        claims.pop("criterion_epoch")
    wrong = [k for k, (said, found) in claims.items() if said != found]
    if abs(accuracy - float(last["trial_accuracy"])) > 1e-6:
        wrong.append("trial_accuracy")
    if wrong:
        raise NumvarsError(f"{path} contradicts metrics.parquet ({', '.join(wrong)}); {_retrain(run_dir)}")
    return data


# --- a job's result folder (RUN/align/<job>/) --------------------------------------------------------

_FRACTION = dict(low=0, high=1)
# result.json of each job kind: {key: check}; a table it needs beside it, with the columns read from it
RESULTS = {
    "das": ({"iia": _FRACTION, "iia_free": _FRACTION, "token_accuracy": _FRACTION, "val_iia": dict(low=-1, high=1),
             "iia_nontrivial": dict(_FRACTION, nan=True), "trivial_fraction": _FRACTION, "k": int, "epochs": int,
             "steps": int, "seconds": dict(low=0), "seed": int, "program": str, "map": str, "site": str,
             "variables": list, "iia_per_variable": dict},
            "pairs.parquet", ("base_value", "source_value", "abs_diff", "correct", "phase_t", "phase_u", "trivial")),
    "fullswap": ({"iia": _FRACTION, "iia_by_program": dict, "site": str, "n": int, "seed": int},
                 "pairs.parquet", ("correct",)),
    "attention": ({"accuracy": dict, "layers": list, "n": int, "base_accuracy": _FRACTION},
                  "trials.parquet", ("edit", "count", "shift")),
    "align_models": ({"iia": dict, "iia_nontrivial": dict, "k": int, "map": str, "program": str, "variable": str,
               "epochs": int, "seconds": dict(low=0)}, "pairs.parquet", ("direction", "correct", "trivial")),
}


def _check_result(data, kind: str, key: dict) -> None:
    """ValueError unless `data` is a result.json of this kind and of exactly this job (its options)."""
    _kind(data, dict, "result.json")
    for name, check in RESULTS[kind][0].items():
        value = data.get(name)
        if check in (int, str, list, dict):
            _integer(value, name) if check is int else _kind(value, check, name)
        else:
            _number(value, name, **check)
    for name in ("iia_per_variable", "iia_by_program", "accuracy", "iia", "iia_nontrivial"):
        for v in (data.get(name).values() if isinstance(data.get(name), dict) else ()):
            _number(v, name, nan=True, low=0, high=1)
    if data.get("protocol") != versions.current() or data.get("options") != json.loads(json.dumps(key, default=str)):
        raise ValueError("it belongs to another job (its protocol or options differ)")


def read_result(folder: Path, kind: str, key: dict) -> dict | None:
    """The finished result of a job (its result.json, checked, and its table readable), or None when it must
    be computed: absent, or corrupt (then noted once on stderr and computed again, over the bad files)."""
    path = folder / "result.json"
    if not path.is_file():
        return None
    try:
        data = io.read_json(path)
        _check_result(data, kind, key)
        read_job_table(folder, kind)
        if kind == "das":
            read_alignment_matrix(folder)
    except (NumvarsError, ValueError) as e:
        versions.note(f"ignoring the damaged result in {folder} ({e}); computing it again")
        return None
    return data


def read_job_table(folder: Path, kind: str) -> pd.DataFrame:
    """A job's per-pair (or per-trial) table, with the columns that numvars reads from it."""
    _, name, columns = RESULTS[kind]
    return read_frame(inside(folder, name), columns, f"delete {folder} and rerun the command")


# trials.parquet of an alignment (`align.trials`): token sequences as space-separated token names, `scored` a
# 0/1 string per continuation token, `token_logprob` per token ("-" where not scored), `predictions` JSON
TRIALS = ("pair", "variable", "base", "source", "t", "u", "base_count", "source_count", "base_value",
          "source_value", "phase_t", "phase_u", "trivial", "distinguishing", "correct", "correct_free", "logprob",
          "expected", "scored", "model", "model_free", "token_logprob", "predictions")


def read_trials(folder: Path) -> pd.DataFrame | None:
    """An alignment's saved trial sample (trials.parquet, `align.trials`), or None when it has none (a folder
    written before numvars saved trials); a damaged file is a one-line error."""
    path = inside(folder, "trials.parquet")
    if not path.is_file():
        return None
    return read_frame(path, TRIALS, f"delete {path} and rerun the alignment to sample its trials again")


EVIDENCE = {"best": ("program", "variable", "site", "map", "k", "val_iia", "iia"),
            "checks": ("program", "variable", "check", "seed", "pair", "ok", "logprob"),
            "duels": ("program", "variable", "rival", "rival_variable", "source", "pair", "a_ok", "b_ok", "a_on_b",
                      "b_on_a"),
            "sizes": ("program", "variable", "rival", "rival_variable", "source", "pairs")}


def read_alignment_matrix(folder) -> torch.Tensor:
    """An alignment folder's map (alignment.safetensors): a finite, square floating-point matrix."""
    folder = Path(folder)
    fix = f"delete {folder} and rerun the command that made it"
    tensors = io.load_tensors(inside(folder, "alignment.safetensors"), "alignment map", fix)
    matrix = tensors.get("matrix")
    if matrix is None or matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or not matrix.is_floating_point():
        raise NumvarsError(f"{folder}/alignment.safetensors holds no square matrix; {fix}")
    if not bool(torch.isfinite(matrix).all()):
        raise NumvarsError(f"{folder}/alignment.safetensors holds NaN or infinite values; {fix}")
    return matrix


def read_evidence(folder: Path, names) -> tuple[dict, dict[str, pd.DataFrame]]:
    """An explain evidence folder (RUN/align/evidence-*/): its evidence.json and per-pair tables."""
    fix = f"delete {folder} and rerun `numvars explain`"
    meta = io.read_json(inside(folder, "evidence.json"))
    if not isinstance(meta, dict):
        raise NumvarsError(f"{folder}/evidence.json does not hold a mapping; {fix}")
    return meta, {name: read_frame(inside(folder, f"{name}.parquet"), EVIDENCE[name], fix) for name in names}


def read_eval(run_dir, name: str) -> pd.DataFrame | None:
    """RUN/eval_maxN_perM.csv (a cache of `numvars eval`), or None when absent or damaged."""
    path = inside(run_dir, name)
    if not path.is_file():
        return None
    try:
        table = read_frame(path, ("count", "accuracy", "trials"), "delete it")
    except NumvarsError:
        return None
    return table if table["accuracy"].between(0, 1).all() else None


# --- a results folder (written by `numvars reproduce` and `numvars analyze`) ----------------------------

def read_raw_tables(root: Path, raw: dict, optional: dict) -> dict[str, pd.DataFrame]:
    """RESULTS/tables/<name>.csv for each table in `raw` (required) and `optional` ({name: columns})."""
    tables = {}
    for name, columns in {**raw, **optional}.items():
        path = inside(root, "tables", f"{name}.csv")
        if not path.is_file():
            if name in optional:
                tables[name] = pd.DataFrame(columns=columns)
                continue
            raise NumvarsError(f"table {path} is missing; rerun `numvars reproduce` to write {root}/tables/")
        df = read_frame(path, (), "rerun `numvars reproduce` to rewrite it")
        tables[name] = checked_frame(df if len(df.columns) else pd.DataFrame(columns=columns), columns, path,
                                     "rerun `numvars reproduce` to rewrite it")
    return tables


_META_MAPPINGS = ("train", "arch_train", "das", "fullswap", "explain", "align_models_options", "dynamics_das")


def read_meta(root: Path) -> dict:
    """RESULTS/meta.json ({} when absent): a mapping whose `config` holds the preset as numvars writes it."""
    path = inside(root, "meta.json")
    if not path.is_file():
        return {}
    data = io.read_json(path)
    try:
        _kind(data, dict, "meta.json")
        config = _kind(data.get("config", {}), dict, "config")
        for name in _META_MAPPINGS:
            _kind(config.get(name) or {}, dict, f"config.{name}")
        for name in ("versions", "hardware"):
            _kind(data.get(name, {}), dict, name)
        if "d_model" in config:
            _integer(config["d_model"], "config.d_model", 1)
        if "max_count" in (config.get("train") or {}):
            _integer(config["train"]["max_count"], "config.train.max_count", 1)
    except ValueError as e:
        raise NumvarsError(f"{path} is not what numvars writes ({e}); delete it (the report then says what is not "
                           f"recorded) or rerun `numvars reproduce`") from None
    return data


def read_analysis(root: Path, outputs: dict, figures: tuple) -> dict[str, pd.DataFrame] | None:
    """The tables `numvars analyze` wrote to RESULTS/analysis/ ({name: columns}), or None when one is
    missing or damaged (the caller runs the analyses again). The figures table may only name the figures
    the analyses draw, at the paths they draw them."""
    try:
        tables = {name: read_frame(inside(root, "analysis", f"{name}.parquet"), columns, "rerun `numvars analyze`")
                  for name, columns in outputs.items()}
        figs = tables["figures"]
        named = figs["name"].isin(figures) & figs["status"].isin(("ok", "skipped"))
        placed = (figs["file"] == "figures/" + figs["name"].astype(str) + ".png") | (figs["status"] != "ok")
        if not (named & placed).all():
            raise NumvarsError("the figures table names figures the analyses do not draw")
    except NumvarsError as e:
        versions.note(f"analysing {root} again: {e}")
        return None
    return tables


def read_timings(root: Path) -> pd.DataFrame | None:
    """RESULTS/tables/timings.csv (the seconds of earlier jobs), or None when absent or damaged."""
    path = inside(root, "tables", "timings.csv")
    if not path.is_file():
        return None
    try:
        table = read_frame(path, ("job", "arch", "task", "seconds"), "delete it")
    except NumvarsError:
        return None
    return table if table["seconds"].ge(0).all() else None
