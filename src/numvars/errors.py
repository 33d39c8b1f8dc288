"""One error type for user mistakes; its message names the problem and the fix, on one bounded line.

Messages quote what the user (or a file from someone else) gave, and that can be anything: a
100,000-character value, a path with a newline, terminal escape codes. `one_line` is the one
place that makes such text safe to print: control characters are shown escaped (so a message is
always one line and cannot drive the terminal) and long values are cut with an ellipsis. Every
`NumvarsError` passes its message through it, and so does everything else the CLI prints on stderr.
"""
from __future__ import annotations

import re
import unicodedata

MAX_WORD = 160          # a longer run of non-blank characters (a value, a path) is cut to its ends
MAX_MESSAGE = 1000      # a longer message keeps its start and its end (where the fix is)
_LONG_WORD = re.compile(r"\S{%d,}" % (MAX_WORD + 1))


def _escape(ch: str) -> str:
    if ch == " " or unicodedata.category(ch)[0] not in "CZ":
        return ch
    if ch in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}"


def one_line(text) -> str:
    """`text` as one printable line of bounded length: control and separator characters escaped
    (a newline becomes \\n), words longer than MAX_WORD and messages longer than MAX_MESSAGE cut in
    the middle with an ellipsis."""
    text = "".join(_escape(ch) for ch in str(text))
    text = _LONG_WORD.sub(lambda m: f"{m[0][:MAX_WORD - 40]}…{m[0][-30:]}", text)
    if len(text) > MAX_MESSAGE:
        text = f"{text[:MAX_MESSAGE - 300]} … {text[-250:]}"
    return text


class NumvarsError(ValueError):
    """A mistake in user input (a name, a size, a file). The CLI prints it on one line."""

    def __init__(self, message: str = ""):
        super().__init__(one_line(message))
