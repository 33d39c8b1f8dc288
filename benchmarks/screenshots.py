"""PNG screenshots of numvars pages, for people: the whole page, and its trial explorer with a trial open.

    python benchmarks/screenshots.py results/quick/report.html runs/RUN/explain/explain.html --out shots/

For each PAGE.html it writes PAGE.png (the page, 1280 px wide, blank space below it cut off) and, where the
page has a trial explorer, PAGE-trials.png (the explorer alone: the first alignment, its heatmaps, its list
and its first trial). It needs Chromium on PATH (Debian's `chromium` package); nothing is fetched, and the
pages themselves are never changed (the explorer view is taken from a copy).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, TALLEST = 1280, 16_000
# keep only the explorer's section on the copy that the second screenshot is taken of
ONLY_TRIALS = ("<script>window.addEventListener('load', function () { Array.prototype.forEach.call("
               "document.body.children, function (n) { if (n.id !== 'trials' && n.tagName !== 'SCRIPT') "
               "{ n.style.display = 'none'; } }); });</script></body>")


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        sys.exit("screenshots.py: chromium is not on PATH (install Debian's chromium package)")
    return path


def shoot(page: Path, png: Path, profile: Path) -> Path:
    """A screenshot of the page as tall as TALLEST, then cropped to the last row that is not blank."""
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", "--hide-scrollbars", "--virtual-time-budget=10000",
                    f"--window-size={WIDTH},{TALLEST}", f"--screenshot={png}", page.resolve().as_uri()],
                   capture_output=True, timeout=300, check=True)
    image = Image.open(png).convert("RGB")
    pixels = np.asarray(image)
    used = np.flatnonzero((pixels < 245).any(axis=(1, 2)))
    bottom = int(used.max()) + 24 if len(used) else image.height
    image.crop((0, 0, WIDTH, min(bottom, image.height))).save(png)
    return png


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pages", nargs="+", type=Path, help="HTML pages numvars wrote (report.html, explain.html)")
    p.add_argument("--out", type=Path, default=Path("screenshots"), help="folder for the PNGs (default screenshots)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, page in enumerate(args.pages):
            stem = f"{page.parent.name}-{page.stem}" if len(args.pages) > 1 else page.stem
            print(shoot(page, args.out / f"{stem}.png", Path(tmp) / "profile"))
            text = page.read_text()
            if "id='trials'" in text:
                copy = Path(tmp) / f"trials-{i}.html"
                copy.write_text(text.replace("</body>", ONLY_TRIALS))
                print(shoot(copy, args.out / f"{stem}-trials.png", Path(tmp) / "profile"))


if __name__ == "__main__":
    main()
