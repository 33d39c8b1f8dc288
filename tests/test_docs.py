"""The documentation is tested: the tutorial's code runs, and the pages link only to files that exist."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import extra

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
# Internal references that user-facing pages must never carry.
FORBIDDEN = ("SPEC.md", "shared folder", "project machines")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def python_blocks(text: str) -> list[str]:
    """The body of every ```python block, in order."""
    return re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.S | re.M)


def test_the_tutorial_has_python_blocks():
    assert len(python_blocks((DOCS / "tutorial.md").read_text())) >= 10


def test_every_python_block_of_the_tutorial_runs_in_order_in_one_namespace(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)                 # anything the tutorial writes lands here
    namespace: dict = {"__name__": "tutorial"}
    for i, block in enumerate(python_blocks((DOCS / "tutorial.md").read_text()), start=1):
        if "arch=\"hf\"" in block or "numvars.adapters" in block:     # part 6: the hf and nnsight extras
            extra("transformers"), extra("nnsight")
        try:
            exec(compile(block, f"docs/tutorial.md, python block {i}", "exec"), namespace)
        except Exception as e:
            pytest.fail(f"python block {i} of docs/tutorial.md failed: {type(e).__name__}: {e}\n{block}")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_never_mention_internal_references(page):
    text = " ".join(page.read_text().lower().split())     # a phrase may break across lines
    for word in FORBIDDEN:
        assert word.lower() not in text, f"{page.name} mentions {word!r}"


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are code, not links."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)     # no headings in code
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_points_to_a_file_that_exists(page):
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue                            # a web address or mailto:
        path, _, anchor = target.partition("#")
        file = page.parent / path if path else page
        assert file.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name} links to {target}, but {file.name} has no such heading"


def test_the_link_checker_sees_links_and_anchors():
    assert LINK.findall("see [the guide](docs/guide.md#errors) and [x](https://example.org)") == \
        ["docs/guide.md#errors", "https://example.org"]
    assert {"errors", "numvars-train", "the-step-protocol--site-state"} <= \
        anchors(DOCS / "guide.md") | anchors(DOCS / "concepts.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_python_block_of_every_page_is_valid_python(page):
    for i, block in enumerate(python_blocks(page.read_text()), start=1):
        compile(block, f"{page.name}, python block {i}", "exec")
