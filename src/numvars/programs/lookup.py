"""Programs by name: a built-in one, or a user's own class from path/to/file.py:ClassName (`user`)."""
from __future__ import annotations

from ..errors import NumvarsError
from .base import PROGRAMS, Program
from .user import load_program


def get_program(name: str | Program) -> Program:
    """A program by name ("up_down", "up_up", "ctx_distributed"), or a user's class given as
    "path/to/file.py:ClassName"; a Program instance passes through."""
    if isinstance(name, Program):
        return name
    if isinstance(name, str) and ":" in name and name.split(":", 1)[0].endswith(".py"):
        return load_program(name)
    if name not in PROGRAMS:
        raise NumvarsError(f"unknown program {name!r}; choose one of {', '.join(PROGRAMS)}, or give your own as "
                           "path/to/file.py:ClassName")
    return PROGRAMS[name]()
