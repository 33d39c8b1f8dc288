"""The `numvars` command line: a thin layer over the Python API.

Every command takes `key=value` overrides; mistakes end in one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import NumvarsError, one_line
from . import adapt, export, interventions, runs, trials


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit 2), like every other mistake."""

    def error(self, message: str):
        self.exit(2, f"numvars: error: {one_line(message)} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="numvars", description="Find symbol-like number variables in neural networks.")
    sub = p.add_subparsers(dest="command", required=True)
    runs.register(sub)
    interventions.register(sub)
    trials.register(sub)
    export.register(sub)
    adapt.register(sub)
    return p


PATHS = ("run_dir", "run_dirs", "run_a", "run_b", "results", "out", "from_run", "align_dir", "model")


def check_paths(args) -> None:
    """Every folder named on the command line can be a path at all (length, NUL), before anything reads it."""
    from ..paths import check_length

    for name in PATHS:
        value = getattr(args, name, None)
        for path in (value if isinstance(value, list) else [value] if value is not None else []):
            if name != "run_dirs" or "=" not in path:          # explain's words mix folders and key=value
                check_length(path, name)


def main(argv: list[str] | None = None) -> int:
    from .. import versions

    parser = build_parser()
    args = parser.parse_args(argv)
    versions.hold()
    ok = False
    try:
        from ..config import MAX_THREADS
        from ..jobs.engine import check_jobs
        from ..options import check_range
        from ..device import setup_threads

        if getattr(args, "threads", None) is not None:
            check_range("--threads", args.threads, 1, MAX_THREADS)
        check_jobs(getattr(args, "jobs", None))          # a dry run too: it plans for that many workers
        check_paths(args)
        setup_threads(getattr(args, "threads", None) or 1)
        args.func(args)
        ok = True
    except NumvarsError as e:
        print(f"numvars: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("numvars: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:                      # e.g. `numvars align RUN | head`: the reader left; say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        versions.release(ok)
    return 0


if __name__ == "__main__":
    sys.exit(main())
