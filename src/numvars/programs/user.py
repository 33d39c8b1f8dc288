"""A user's own program, from `path/to/file.py:ClassName`: imported (its code runs, by design, because the
user named it on the command line), then tried on two short sequences before anything relies on it.

Whatever the file does wrong while being imported, built or tried (a syntax error, a missing method, a
wrong return type, `sys.exit()`), the user gets one line naming the file and the problem, never a
traceback; Ctrl-C still interrupts.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ..errors import NumvarsError
from ..tasks import BOS, DEMO, EOS, PAD, RESP, TRIGGER
from .base import Program

# Two sequences (n = 2 and n = 1, the second padded): enough to run init, step and predict once each way.
TRIAL = torch.tensor([[BOS, DEMO, DEMO, TRIGGER, RESP, RESP, EOS], [BOS, DEMO, TRIGGER, RESP, EOS, PAD, PAD]])


def _guarded(file: Path, what: str, call):
    """call(), with anything it raises or exits with turned into one line about the user's file."""
    try:
        return call()
    except NumvarsError:
        raise
    except (Exception, SystemExit) as e:            # the user's code: it may even call sys.exit()
        detail = " ".join(str(e).split())[:200]
        raise NumvarsError(f"program file {file}: {what} failed ({type(e).__name__}{': ' + detail if detail else ''})"
                           f"; fix the file (docs/tutorial.md shows a working program)") from None


def _import(file: Path):
    module_spec = importlib.util.spec_from_file_location(f"numvars_user_{file.stem}", file)
    if module_spec is None or module_spec.loader is None:
        raise NumvarsError(f"program file {file} cannot be imported as Python; give path/to/file.py:ClassName")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _try(program: Program) -> None:
    """Run the program over TRIAL; a TypeError or ValueError says what does not fit."""
    from .interpret import predictions, trace

    names = program.variables
    if not isinstance(program.name, str) or not program.name:
        raise ValueError("`name` must be a non-empty string")
    if not isinstance(names, (tuple, list)) or not all(isinstance(v, str) and v.isidentifier() for v in names):
        raise ValueError("`variables` must be a tuple of names (identifiers)")
    states = trace(program, TRIAL)
    if not isinstance(states, dict) or any(v not in states for v in names):
        raise ValueError(f"init/step must return a dict holding every variable ({', '.join(names)})")
    predicted = predictions(program, TRIAL)
    if not isinstance(predicted, torch.Tensor) or predicted.shape != TRIAL.shape:
        raise ValueError("predict must return one role per row, a (B,) tensor")


def load_program(spec: str) -> Program:
    """Import a user's Program subclass from "path/to/file.py:ClassName" (this runs that file's code) and
    try it; one-line errors for whatever goes wrong."""
    path, _, cls_name = spec.rpartition(":")
    file = Path(path)
    if not file.is_file():
        raise NumvarsError(f"program file {file} does not exist; give program=path/to/file.py:ClassName")
    module = _guarded(file, "importing it", lambda: _import(file))
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Program)):
        raise NumvarsError(f"{file} has no Program subclass {cls_name!r}; subclass numvars.programs.Program")
    missing = [m for m in ("init", "step", "predict") if getattr(cls, m) is getattr(Program, m)]
    if missing:
        raise NumvarsError(f"{cls_name} in {file} does not define {' and '.join(missing)}; a program defines init, "
                           "step and predict (see docs/tutorial.md)")
    program = _guarded(file, f"creating {cls_name}()", cls)
    program._spec = spec                        # how jobs name it, so that worker processes can load it too
    _guarded(file, f"trying {cls_name} on two sequences", lambda: _try(program))
    return program
