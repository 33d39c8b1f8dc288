"""Self-contained HTML pages (the report, explain pages): escaping, numbers, tables, embedded figures.

Figures are embedded as base64 PNG data URIs and the CSS is inline, so a page opens from disk with
nothing to fetch. All text is escaped. A small inline script marks `<body data-figures-loaded="N/M">`
once the page has loaded (N of the M images decoded), for headless-browser checks.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

from .errors import NumvarsError
from .paths import inside


def e(x) -> str:
    return html.escape(str(x), quote=True)


def num(x, digits: int = 2) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(x) else f"{x:.{digits}f}"


def na(x, digits: int = 2) -> str:
    """A statistic that may be undefined (NaN → "n/a", not "—", which means "not run")."""
    text = num(x, digits)
    return "n/a" if text == "—" else text


def p_value(x) -> str:
    text = na(x, 3)
    return "<0.001" if text == "0.000" else text


def mean_ci(mean, low, high) -> str:
    if num(mean) == "—":
        return "—"
    ci = "n/a" if num(low) == "—" else f"{num(low)}–{num(high)}"
    return f"{num(mean)} <span class='ci'>[{ci}]</span>"


def table(rows: list[list[str]], headers: list[str] | None = None, raw: bool = False, head: str = "") -> str:
    """An HTML table; cells are escaped unless raw (when they were built from escaped pieces).
    `head` replaces the one-row header built from `headers` (for grouped headers)."""
    if not rows:
        return "<p class='empty'>(no rows)</p>"
    cell = (lambda c: str(c)) if raw else e
    if headers:
        head = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{f'<thead>{head}</thead>' if head else ''}<tbody>{body}</tbody></table>"


def kv(mapping: dict) -> str:
    if not mapping:
        return "<p class='empty'>(not recorded)</p>"
    rows = [[k, v if isinstance(v, (str, int, float)) else json.dumps(v, default=str)] for k, v in mapping.items()]
    return table(rows, ["key", "value"])


def duration(seconds) -> str:
    try:
        s = int(round(float(seconds)))
    except (TypeError, ValueError):
        return "not recorded"
    h, m = divmod(s // 60, 60)
    return (f"{h} h " if h else "") + (f"{m} min " if h or m else "") + f"{s % 60} s"


# ---------------------------------------------------------------------------------------------
# Sections


PNG = b"\x89PNG\r\n\x1a\n"
MAX_FIGURE = 20_000_000        # bytes; numvars's figures are about 100 kB
_PAGE = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9_.+/-]*\.html$")


def figure_png(root: Path, fig, names) -> bytes | str:
    """The PNG of a figure the analyses drew, or why it is not embedded. Only ROOT/figures/<name>.png of a
    figure numvars draws is read (wherever the figures table points; `names`: the figures numvars draws),
    without following a link out of ROOT, and only if it is a PNG: a results folder from someone else cannot
    put another file in a page."""
    name, file = str(fig.get("name", "")), str(fig.get("file", ""))
    if name not in names or file != f"figures/{name}.png":
        return f"{file} is not a figure numvars draws"
    try:
        path = inside(root, "figures", f"{name}.png")
    except NumvarsError:
        return f"{file} leads out of the folder"
    if not path.is_file():
        return f"{file} is missing"
    if path.stat().st_size > MAX_FIGURE:
        return f"{file} is larger than any figure numvars draws"
    data = path.read_bytes()
    return data if data.startswith(PNG) else f"{file} is not a PNG image"


def img(root: Path, fig, names) -> str:
    """A figure embedded as a data URI (or the reason it is not); `names`: the figures numvars draws."""
    data = figure_png(root, fig, names) if fig["status"] == "ok" else fig["reason"] or "not drawn"
    if isinstance(data, str):
        return f"<p class='skipped'>Figure skipped: {e(data)}.</p>"
    encoded = base64.b64encode(data).decode("ascii")
    return (f"<figure><img src='data:image/png;base64,{encoded}' alt='{e(fig['title'])}'>"
            f"<figcaption>{e(fig['caption'])}</figcaption></figure>")


def link(root: Path, target, text: str) -> str:
    """A link to a page inside ROOT (a relative path to an .html file, as numvars records it), else the text
    alone: a table value such as `javascript:...`, `data:...`, `/etc/...` or `../x.html` never becomes a link."""
    target = str(target)
    if not _PAGE.match(target) or ".." in target.split("/"):
        return e(text)
    try:
        inside(root, target)
    except NumvarsError:
        return e(text)
    return f"<a href='{e(target)}'>{e(text)}</a>"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:1em 2em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
nav a{margin-right:1.2em}.sub{color:#555;font-size:.92em}code{background:#f3f3f3;padding:0 .25em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.86em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}th{background:#f0f0f0}
th.group{text-align:center}
tbody tr:nth-child(even){background:#fafafa}.ci,.n{color:#666;font-size:.9em}
.match{color:#186a1f;font-weight:600}.mismatch{color:#b00020;font-weight:600}.missing{color:#888}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #e3e3e3}
figcaption{color:#444;font-size:.92em;margin-top:.3em}.skipped{color:#8a5a00;background:#fff6e0;padding:.5em}
.empty{color:#888}
"""
SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-figures-loaded", ok + "/" + imgs.length);
});
"""
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body>
{body}
<script>{script}</script>
</body></html>
"""


def page(title: str, body: str) -> str:
    return PAGE.format(title=e(title), css=CSS, body=body, script=SCRIPT)
