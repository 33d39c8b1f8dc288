"""The `numvars` command line: a thin layer over the Python API.

Every command takes `key=value` overrides; mistakes end in one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import NumvarsError
from . import interventions, runs


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit 2), like every other mistake."""

    def error(self, message: str):
        self.exit(2, f"numvars: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="numvars", description="Find symbol-like number variables in neural networks.")
    sub = p.add_subparsers(dest="command", required=True)
    runs.register(sub)
    interventions.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from ..runtime import setup_threads

        threads = getattr(args, "threads", None)
        if threads is not None and threads < 1:
            raise NumvarsError(f"--threads {threads} must be >= 1")
        setup_threads(threads or 1)
        args.func(args)
    except NumvarsError as e:
        print(f"numvars: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("numvars: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:                      # e.g. `numvars align RUN | head`: the reader left; say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
