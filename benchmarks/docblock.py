"""Write a generated block into a Markdown page between `<!-- NAME:begin -->` and `<!-- NAME:end -->`."""
from __future__ import annotations

from pathlib import Path


def replace_block(page: Path, name: str, text: str) -> None:
    """Replace the block NAME of `page` with `text` (the markers stay); refuse a page without the markers."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    doc = page.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{page} has no {begin} … {end} block; add the two markers where the tables belong")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    page.write_text(f"{head}{begin}\n{text.rstrip()}\n{end}{tail}")
