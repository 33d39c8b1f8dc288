"""Results computed by an older protocol: found beside a new job, ignored, and reported once."""
from __future__ import annotations

import sys
from pathlib import Path

_told: set[str] = set()


def current(kind: str = "align") -> int:
    """The protocol version now of trained runs ("train") or of the jobs on them ("align"); read each
    time, so that it has one source: `numvars.TRAIN_PROTOCOL` and `numvars.PROTOCOL`."""
    import numvars
    return numvars.TRAIN_PROTOCOL if kind == "train" else numvars.PROTOCOL


def note(message: str) -> None:
    """A one-line note on stderr (once per message), for things the user should know but need not fix."""
    if message not in _told:
        _told.add(message)
        print(f"numvars: note: {message}", file=sys.stderr)


def report(folder: Path, pattern: str, record: str, same, kind: str = "align") -> int:
    """Note the results in `folder` matching `pattern` whose `record` file (JSON or YAML) has another
    protocol and satisfies `same(record_dict)`; returns how many."""
    from . import io

    old = []
    for path in sorted(Path(folder).glob(pattern)):
        file = path / record
        if not file.is_file():
            continue
        try:
            data = io.read_yaml(file) if record.endswith(".yaml") else io.read_json(file)
        except Exception:          # an unreadable old record is not ours to judge here
            continue
        if data.get("protocol", 1) != current(kind) and same(data):
            old.append(path)
    if old:
        note(f"ignoring {len(old)} result(s) computed by an older numvars (protocol "
             f"{', '.join(sorted({str(_protocol(p, record)) for p in old}))}; now {current(kind)}) in {folder}; "
             f"recomputing. Delete them to free space, e.g. {old[0]}")
    return len(old)


def _protocol(path: Path, record: str):
    from . import io
    data = io.read_yaml(path / record) if record.endswith(".yaml") else io.read_json(path / record)
    return data.get("protocol", 1)
