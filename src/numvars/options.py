"""The one key=value parser: command-line words and config files become typed, checked values.

Every command and config section states its keys as a schema {key: type} — for dataclasses,
`schema_of(cls)` reads it off the fields — and `parse` turns strings (or already-typed values
from YAML and Python) into those types, refusing unknown keys, duplicates, non-finite numbers
and values of the wrong kind with one line that names the key and the fix.
"""
from __future__ import annotations

import math
import typing
from dataclasses import field, fields

from .errors import NumvarsError

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
MAX_SEED = 2 ** 63 - 1     # torch's generators take at most 2**64 - 1, and seeds derived from a seed add to it


def opt(default, help: str):
    """A dataclass field with a default and the help text that `--help` shows for it."""
    return field(default=default, metadata={"help": help})


def help_lines(cls, exclude: tuple[str, ...] = (), width: int = 15) -> str:
    """`key  help (default …)` for each field of an options dataclass, wrapped, for a command's --help; a help
    text that already names its default (`(default d/2)`) is not given the field's value (often None) too."""
    import textwrap

    lines = []
    for f in fields(cls):
        if f.name not in exclude:
            text = f.metadata.get("help", "")
            if "(default" not in text:         # a help that states its own default (e.g. "d/2") says it once
                text += f" (default {f.default})"
            lines += textwrap.wrap(text, 100, initial_indent=f"  {f.name:<{width}} ", subsequent_indent=" " * (width + 3))
    return "\n".join(lines)


def split_words(words: list[str]) -> dict[str, str]:
    """['a=1', 'b=x'] → {'a': '1', 'b': 'x'}; anything else, or a key given twice, is an error."""
    out: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        key = key.strip()
        if not sep or not key:
            raise NumvarsError(f"expected key=value, got {word!r}")
        if key in out:
            raise NumvarsError(f"{key} is given twice ({key}={out[key]} and {key}={value.strip()}); give it once")
        out[key] = value.strip()
    return out


def schema_of(cls, exclude: tuple[str, ...] = ()) -> dict[str, type]:
    """{field: type} of a dataclass, in field order (string annotations resolved)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls) if f.name not in exclude}


def _is_tuple(kind) -> bool:
    return typing.get_origin(kind) is tuple or kind is tuple


def _number(kind, key: str, value):
    if isinstance(value, bool):
        raise ValueError
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    value = float(value)
    if not math.isfinite(value):
        raise NumvarsError(f"{key}={value} is not a finite number; give a finite value")
    return value


def coerce(kind, key: str, raw):
    """raw (a command-line string, or a value from YAML/Python) as `kind`; one-line errors.
    An optional type (`int | None`) takes None, or "" and "none" on the command line."""
    args = typing.get_args(kind)
    if type(None) in args and len(args) == 2:
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none")):
            return None
        kind = next(a for a in args if a is not type(None))
    name = getattr(kind, "__name__", str(kind))
    try:
        if kind in (int, float):
            if isinstance(raw, str):
                raw = raw.strip()
                if kind is int and raw.lstrip("+-").isdigit() is False:
                    raise ValueError
            elif not isinstance(raw, (int, float)):
                raise ValueError
            return _number(kind, key, raw)
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in TRUE:
                return True
            if text in FALSE:
                return False
            raise ValueError
        if _is_tuple(kind):
            if isinstance(raw, str):
                raw = raw.strip("[]() ").replace(",", " ").split()      # 4,9 or [4, 9] or ""
            if not isinstance(raw, (list, tuple)):
                raise ValueError
            return tuple(coerce(int, key, x) for x in raw)
        if kind is str:
            if not isinstance(raw, str):
                raise ValueError
            return raw
    except NumvarsError:
        raise
    except (ValueError, TypeError, OverflowError):
        raise NumvarsError(f"cannot read {key}={raw!r} as {'a list of int' if _is_tuple(kind) else name}") from None
    raise TypeError(f"no parser for {key}: {kind}")


def parse(values: dict, schema: dict[str, type], what: str) -> dict:
    """Check keys against a schema and convert their values; unknown keys are errors."""
    out = {}
    for key, raw in values.items():
        if key not in schema:
            raise NumvarsError(f"unknown {what} key {key!r}; known keys: {', '.join(schema)}")
        out[key] = coerce(schema[key], key, raw)
    return out


def check_range(key: str, value, low=None, high=None, why: str = "") -> None:
    """A one-line error unless low <= value <= high (either bound may be None)."""
    if (low is not None and value < low) or (high is not None and value > high):
        span = f">= {low}" if high is None else f"<= {high}" if low is None else f"in {low}..{high}"
        raise NumvarsError(f"{key}={value} must be {span}" + (f" ({why})" if why else ""))


def check_seed(key: str, value: int) -> None:
    """Seeds every generator numvars uses (torch, numpy) accepts, with room for the seeds derived from them."""
    check_range(key, value, 0, MAX_SEED, "a seed must fit in 63 bits")


def check_choice(key: str, value, choices: tuple) -> None:
    """A one-line error unless value is one of choices."""
    if value not in choices:
        raise NumvarsError(f"unknown {key} {value!r}; choose one of {', '.join(choices)}")


def canonicalize(obj) -> None:
    """Coerce every field of a frozen dataclass to its declared type, in place (so 0 and 0.0, or
    [9, 4] and (4, 9), make equal configs); a wrong type is a one-line error."""
    for key, kind in schema_of(type(obj)).items():
        object.__setattr__(obj, key, coerce(kind, key, getattr(obj, key)))


def from_words(cls, words: list[str], what: str, **fixed):
    """An options object from a command's key=value words: parsed against the class's own schema, then
    constructed (which checks and defaults every field). `fixed`: values the command sets itself."""
    return cls(**parse(split_words(words), schema_of(cls), what), **fixed)
