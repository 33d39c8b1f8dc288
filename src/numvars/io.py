"""Atomic file writes and careful reads: a result is either whole on disk or absent."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import NumvarsError

_UMASK = os.umask(0o022)   # read the process umask (there is no getter) and put it back
os.umask(_UMASK)


def write_atomic(path: Path, write) -> Path:
    """Call write(tmp_path) and move the result into place: the file is whole or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)     # mkstemp makes files private (0600); give results normal permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path, text: str) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_yaml(path, obj) -> Path:
    return write_text(path, yaml.safe_dump(obj, sort_keys=False))


def write_table(path, df: pd.DataFrame) -> Path:
    """Parquet (or CSV when the name ends in .csv)."""
    if str(path).endswith(".csv"):
        return write_atomic(path, lambda tmp: df.to_csv(tmp, index=False))
    return write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False))


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_torch(path, obj) -> Path:
    return write_atomic(path, lambda tmp: torch.save(obj, tmp))


def read_json(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NumvarsError(f"{path} is missing") from None
    except json.JSONDecodeError as e:
        raise NumvarsError(f"{path} is not valid JSON ({e.msg}); delete it and rerun") from None


def read_yaml(path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise NumvarsError(f"{path} is missing") from None
    except yaml.YAMLError:
        raise NumvarsError(f"{path} is not valid YAML; delete it and rerun") from None
    if not isinstance(data, dict):
        raise NumvarsError(f"{path} does not hold a mapping; delete it and rerun")
    return data


def load_tensors(path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise NumvarsError(f"weights file {path} is missing; train the run first")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise NumvarsError(f"weights file {path} is corrupt ({str(e).splitlines()[0]}); delete it and retrain") from None


def read_table(path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise NumvarsError(f"table {path} is missing")
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
