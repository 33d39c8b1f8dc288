"""Paths inside run and results folders: nothing read or written leaves the folder it belongs to.

Run and results folders travel between people. A folder from someone else may hold symbolic
links (`RUN/align -> ~/.ssh`, `figures/iia.png -> ~/notes.txt`) or name files by path in its
tables. `inside(root, ...)` is the one check every reader and writer of such a folder uses: the
path, with every link on it followed, must stay under the folder (a link that stays inside is
harmless and allowed). `component` turns a name that becomes part of a path (a user program
given as `path/to/mine.py:Cls`) into one safe file name; `check_length` refuses names the file
system cannot hold, before any work starts.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .errors import NumvarsError

NAME_MAX = 255          # bytes in one file name on the file systems numvars runs on
PATH_MAX = 4000         # bytes in a whole path (Linux allows 4096; leave room for the names numvars adds)
_SAFE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,79}$")


def inside(root, *parts) -> Path:
    """root/parts, after checking that it resolves (symbolic links followed, `..` applied) to a path
    under root; otherwise a one-line error naming the link to remove."""
    root = Path(root)
    path = root.joinpath(*parts)
    try:
        real_root, real = root.resolve(), path.resolve()
    except (OSError, RuntimeError) as e:        # a loop of links, a name too long
        raise NumvarsError(f"cannot follow {path} ({type(e).__name__}); remove the link or rename it") from None
    if real != real_root and real_root not in real.parents:
        raise NumvarsError(f"{path} leads out of {root} (to {real}), through a symbolic link or '..'; numvars never "
                           f"reads or writes outside the folder: remove the link")
    return path


def component(name: str, limit: int = 60) -> str:
    """A name that is safe as (part of) one file name: a plain name (`up_down`, `count+phase`) is kept as
    it is, so built-in names keep the folders they always had; anything else (`../x/mine.py:Cls`) becomes
    its readable part, e.g. `mine-Cls`, plus a short hash of the whole so different names stay apart."""
    name = str(name)
    if _SAFE.match(name):
        return name
    stem = re.sub(r"\.py(?=:|$)", "", name.replace("\\", "/").rsplit("/", 1)[-1])
    readable = re.sub(r"[^A-Za-z0-9_+]+", "-", stem).strip("-")[:limit] or "x"
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def check_length(path, key: str) -> None:
    """A one-line error when `path` cannot be a file name on disk (too long, or a NUL byte in it)."""
    text = str(path)
    if "\0" in text:
        raise NumvarsError(f"{key}={text!r} holds a NUL character; no file system allows it in a path")
    try:
        raw = os.fsencode(text)
    except UnicodeError:
        raise NumvarsError(f"{key}={text!r} is not a name this file system can encode; choose another") from None
    if len(raw) > PATH_MAX:
        raise NumvarsError(f"{key}= is {len(raw)} bytes long; paths must be shorter than {PATH_MAX} bytes")
    longest = max((os.fsencode(p) for p in Path(text).parts), key=len, default=b"")
    if len(longest) > NAME_MAX:
        raise NumvarsError(f"{key}={text!r} has a folder name of {len(longest)} bytes; the file system allows at "
                           f"most {NAME_MAX} per name")


def run_folder(run_dir) -> Path:
    """The run directory, which must exist and be a folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file, not a run directory" if run_dir.exists() else "does not exist"
        raise NumvarsError(f"run directory {run_dir} {what}; give a folder that `numvars train` wrote")
    return run_dir
