"""Results computed by an older protocol: found beside a new job, ignored, and reported once."""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import one_line

_told: set[str] = set()
_held: list[str] | None = None        # while a command runs: its notes, printed once it succeeds


def current(kind: str = "align") -> int:
    """The protocol version now of trained runs ("train") or of the jobs on them ("align"); read each
    time, so that it has one source: `numvars.TRAIN_PROTOCOL` and `numvars.PROTOCOL`."""
    import numvars
    return numvars.TRAIN_PROTOCOL if kind == "train" else numvars.PROTOCOL


def note(message: str) -> None:
    """A one-line note on stderr (once per message), for things the user should know but need not fix."""
    if message not in _told:
        _told.add(message)
        if _held is not None:
            _held.append(message)
        else:
            print(f"numvars: note: {one_line(message)}", file=sys.stderr)


def hold() -> None:
    """Keep notes back until `release`: a command that fails prints its one error line and nothing else."""
    global _held
    _held = []


def release(show: bool) -> None:
    """Print the notes held back (when the command succeeded) and print notes at once again."""
    global _held
    held, _held = _held or [], None
    for message in held if show else ():
        print(f"numvars: note: {one_line(message)}", file=sys.stderr)


def report(folder: Path, pattern: str, record: str, same, kind: str = "align") -> int:
    """Note the results in `folder` matching `pattern` whose `record` file (JSON or YAML) has another
    protocol and satisfies `same(record_dict)`; returns how many."""
    old = []
    for path in sorted(Path(folder).glob(pattern)):
        try:
            data = _read(path, record)
            if isinstance(data, dict) and data.get("protocol", 1) != current(kind) and same(data):
                old.append(path)
        except Exception:          # an unreadable old record is not ours to judge here
            continue
    if old:
        note(f"ignoring {len(old)} result(s) computed by an older numvars (protocol "
             f"{', '.join(sorted({str(_protocol(p, record)) for p in old}))}; now {current(kind)}) in {folder}; "
             f"recomputing. Delete them to free space, e.g. {old[0]}")
    return len(old)


def _read(path: Path, record: str):
    """An older result's record (config.yaml or result.json), read without following a link out of its folder."""
    from . import io
    from .paths import inside
    file = inside(path, record)
    return io.read_yaml(file) if record.endswith(".yaml") else io.read_json(file)


def _protocol(path: Path, record: str):
    return _read(path, record).get("protocol", 1)
