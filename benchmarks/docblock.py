"""Generated Markdown for the benchmark write-ups: a mean with its interval as a table cell, and a block of a
page (between `<!-- NAME:begin -->` and `<!-- NAME:end -->`) replaced by new text."""
from __future__ import annotations

from pathlib import Path

from numvars.stats import mean_ci


def replace_block(page: Path, name: str, text: str) -> None:
    """Replace the block NAME of `page` with `text` (the markers stay); refuse a page without the markers."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    doc = page.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{page} has no {begin} … {end} block; add the two markers where the tables belong")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    page.write_text(f"{head}{begin}\n{text.rstrip()}\n{end}{tail}")


def cell(values) -> str:
    """Mean and interval of per-seed values as a table cell ("—" for none; no interval where too few)."""
    s = mean_ci(values)
    if not s["n"]:
        return "—"
    if s["interval"] == "none":
        return f"{s['mean']:.3f}"
    return f"{s['mean']:.3f} [{s['ci_low']:.2f}–{s['ci_high']:.2f}]"
