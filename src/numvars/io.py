"""Atomic file writes and careful reads: a result is either whole on disk or absent."""
from __future__ import annotations

import errno
import filecmp
import json
import os
import re
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


def _os_error(e: Exception, path, doing: str) -> NumvarsError:
    code = getattr(e, "errno", None)
    if code is None:                       # safetensors reports "... (os error 28)" in a SafetensorError
        found = re.search(r"os error (\d+)", str(e))
        code = int(found.group(1)) if found else None
    why = {errno.EFBIG: "the file is larger than this process may write (a file-size limit)",errno.ENOSPC: "the disk is full; free some space", errno.EDQUOT: "the disk quota is exceeded",
           errno.EROFS: "the file system is read-only; choose another folder",
           errno.EACCES: "permission denied; choose a folder you can write to",
           errno.EPERM: "permission denied; choose a folder you can write to",
           errno.ENOTDIR: "a file stands where a folder should be; choose another path",
           errno.EEXIST: "a file stands where a folder should be; choose another path"}
    detail = getattr(e, "strerror", None) or " ".join(str(e).split())[:100] or type(e).__name__
    return NumvarsError(f"cannot {doing} {path}: {why.get(code, detail)}")


def ensure_writable_dir(path) -> Path:
    """Create the folder if needed and check that files can be written in it (before long work)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _os_error(e, path, "create the folder") from None
    if not path.is_dir():
        raise NumvarsError(f"{path} is a file, not a folder; choose another path")
    if not os.access(path, os.W_OK | os.X_OK):
        raise NumvarsError(f"cannot write in {path}: permission denied; choose a folder you can write to")
    return path


def write_atomic(path: Path, write) -> Path:
    """Call write(tmp_path) and move the result into place: the file is whole or absent. An OS
    failure (a full disk, a read-only folder) is a one-line error, and no partial file is left.
    A file whose new bytes equal its old ones is left untouched (a rerun changes no mtime)."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        if path.is_file() and not path.is_symlink() and filecmp.cmp(tmp, path, shallow=False):
            return path                    # (a link is replaced, never followed: os.replace renames over it)
        os.chmod(tmp, 0o666 & ~_UMASK)     # mkstemp makes files private (0600); give results normal permissions
        os.replace(tmp, path)
    except (OSError, SafetensorError) as e:
        raise _os_error(e, path, "write") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
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


MAX_JSON = 64_000_000      # numvars's own JSON files are kilobytes; refuse to parse anything huge
MAX_YAML = 1_000_000       # config.yaml is a few hundred bytes


class _NoAliases(yaml.SafeLoader):
    """Safe YAML without anchors and aliases: numvars never writes them, and a kilobyte of nested aliases
    expands into billions of nodes (the "billion laughs")."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.YAMLError("anchors and aliases")
        return super().compose_node(parent, index)


def _read_text(path, limit: int, what: str) -> str:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise NumvarsError(f"{path} is {size:,} bytes, more than any {what} numvars writes ({limit:,}); "
                               f"delete it and rerun")
        return path.read_text()
    except FileNotFoundError:
        raise NumvarsError(f"{path} is missing") from None
    except UnicodeDecodeError:
        raise NumvarsError(f"{path} is not text (UTF-8); delete it and rerun") from None
    except OSError as e:
        raise NumvarsError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None


def read_json(path):
    """Parsed JSON (of any type: the loaders in `numvars.loaders` check what it holds)."""
    text = _read_text(path, MAX_JSON, "JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise NumvarsError(f"{path} is not valid JSON ({e.msg}); delete it and rerun") from None
    except (ValueError, RecursionError) as e:        # an integer of 5,000 digits; nesting thousands deep
        raise NumvarsError(f"{path} is not JSON numvars can read ({type(e).__name__}); delete it and rerun") \
            from None


def read_yaml(path) -> dict:
    """A YAML mapping, read with a size limit and without anchors or aliases."""
    text = _read_text(path, MAX_YAML, "YAML file")
    try:
        data = yaml.load(text, Loader=_NoAliases)
    except yaml.YAMLError as e:
        why = "it uses anchors or aliases (& or *), which numvars never writes" if "aliases" in str(e) else \
            "it is not valid YAML"
        raise NumvarsError(f"{path} cannot be read: {why}; delete it and rerun") from None
    except (RecursionError, ValueError):
        raise NumvarsError(f"{path} cannot be read: it nests too deep or holds values YAML cannot convert; "
                           f"delete it and rerun") from None
    if not isinstance(data, dict):
        raise NumvarsError(f"{path} does not hold a mapping; delete it and rerun")
    return data


def _retrain(weights: Path) -> str:
    """The command that recovers a run whose weights are missing or bad."""
    run_dir = weights.parent.parent if weights.parent.name == "checkpoints" else weights.parent
    if (run_dir / "config.yaml").is_file():
        return f"retrain it with `numvars train --from {run_dir}`"
    return "train the run first"


def load_tensors(path, what: str = "weights file", fix: str | None = None) -> dict[str, torch.Tensor]:
    """A safetensors file; `fix` says how to recover a missing or corrupt one (default: retrain its run)."""
    path = Path(path)
    if not path.is_file():
        raise NumvarsError(f"{what} {path} is missing; {fix or _retrain(path)}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise NumvarsError(f"{what} {path} is corrupt ({str(e).splitlines()[0]}); {fix or _retrain(path)}") from None


def read_table(path) -> pd.DataFrame:
    """A Parquet or CSV table as it is on disk; one-line errors for a missing or unreadable file
    (`numvars.loaders` checks its columns)."""
    path = Path(path)
    if not path.is_file():
        raise NumvarsError(f"table {path} is missing")
    try:
        return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except Exception as e:        # pyarrow and pandas raise many kinds for a damaged file; the file is the cause
        raise NumvarsError(f"table {path} is unreadable ({type(e).__name__}); delete it and rerun") from None


def save_result(folder, summary: dict, tables: dict | None = None, tensors: dict | None = None) -> Path:
    """A result folder, whole or absent: its tables (Parquet) and tensors (safetensors) first, result.json
    last, so that result.json's presence means the result is complete."""
    folder = Path(folder)
    for name, table in (tables or {}).items():
        write_table(folder / name, table)
    if tensors:
        save_tensors(folder / "alignment.safetensors", tensors)
    write_json(folder / "result.json", summary)
    return folder
