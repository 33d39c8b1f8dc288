"""Does the progress bar tell the truth? Runs a command that shows one (by default a fresh quick preset) as a
process, reads every state its bar shows on stderr with the wall time it was shown at, and reports whether
the bar's total ever changed and how the time left it said at 25 % (and 10 %, 50 %, 75 %) of the jobs compares
with the time the run really took from there.

    python benchmarks/progress_eta.py --out /tmp/quick-fresh -- numvars reproduce --preset quick --jobs 2

The results folder given with --out must not exist (a fresh run: nothing cached). Writes
benchmarks/reports/progress_eta.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

REPORTS = Path(__file__).parent / "reports"
STATE = re.compile(r"(\d+)/(\d+) jobs \[([^\]]*)\]")
LEFT = re.compile(r"(?:(\d+)h(\d+)m|(\d+)m(\d+)s) left")
MARKS = (0.10, 0.25, 0.50, 0.75)


def left_seconds(state: re.Match) -> float | None:
    m = LEFT.search(state.group(3))
    if m is None:
        return None
    h, hm, mm, ms = m.groups()
    if h is not None:
        return int(h) * 3600 + int(hm) * 60
    if mm is not None:
        return int(mm) * 60 + int(ms)
    return None


def watch(command: list[str]) -> tuple[list[tuple[float, int, int, float | None]], float, list[str]]:
    """(seconds since start, done, total, time left said) of every bar state, the whole wall time, and the phase
    lines printed above the bar."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=False)
    states, phases, buf, tail = [], [], b"", b""
    streams = {proc.stderr.fileno(): proc.stderr, proc.stdout.fileno(): proc.stdout}
    while streams:
        ready, _, _ = select.select(list(streams), [], [], 1.0)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                del streams[fd]
                continue
            now = time.perf_counter() - started
            if fd == proc.stdout.fileno():
                phases += [line for line in chunk.decode(errors="replace").splitlines() if line.strip()]
                continue
            tail = (tail + chunk)[-4000:]
            buf += chunk
            *parts, buf = re.split(rb"[\r\n]", buf)
            for part in parts:
                text = part.decode(errors="replace")
                for m in STATE.finditer(text):
                    states.append((now, int(m.group(1)), int(m.group(2)), left_seconds(m)))
    proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"the command failed (exit {proc.returncode}): {' '.join(command)}\n"
                         f"{tail.decode(errors='replace').splitlines()[-1] if tail.strip() else ''}")
    return states, time.perf_counter() - started, phases


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="the fresh results folder the command writes")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command (default: quick preset, 2 jobs)")
    args = p.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; give a folder that does not, so that nothing is cached")
    command = [c for c in args.command if c != "--"] or ["numvars", "reproduce", "--preset", "quick", "--jobs", "2"]
    command += ["--out", str(args.out)]
    states, wall, phases = watch(command)
    totals = sorted({t for _, _, t, _ in states})
    total = totals[-1]
    marks = []
    for mark in MARKS:
        at = next(((s, n, left) for s, n, t, left in states if n >= mark * t and left is not None), None)
        if at is None:
            continue
        s, n, left = at
        real = wall - s
        marks.append({"fraction": mark, "jobs_done": n, "at_s": round(s, 1), "said_left_s": left,
                      "real_left_s": round(real, 1), "ratio": round(left / real, 3) if real > 0 else None})
    doc = {"command": " ".join(command), "wall_s": round(wall, 1), "totals_shown": totals,
           "states": [[round(s, 1), n, t, left] for s, n, t, left in states],
           "total_never_changed": len(totals) == 1, "jobs": total, "marks": marks, "phases": phases,
           "machine_load_note": "measured as it ran; other work on the machine slows it the same for bar and run"}
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "progress_eta.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# Progress bar truth: `{doc['command']}`", "",
             f"Wall time {wall / 60:.1f} min; the bar's totals shown: {totals} "
             f"({'never changed' if doc['total_never_changed'] else 'CHANGED'}).", "",
             "| at | jobs done | time left said | real time left | said / real |", "|---|---|---|---|---|"]
    lines += [f"| {m['fraction']:.0%} ({m['at_s']:.0f} s in) | {m['jobs_done']}/{total} | {m['said_left_s']:.0f} s | "
              f"{m['real_left_s']:.0f} s | {m['ratio']} |" for m in marks]
    lines += ["", "Phase lines printed:", ""] + [f"    {x}" for x in phases]
    (REPORTS / "progress_eta.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
