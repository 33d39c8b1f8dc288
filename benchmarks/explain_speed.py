"""How long `numvars explain RUN` takes with its defaults, from nothing cached, beside a d = 20 GRU's time to
the criterion (machines of this kind differ by up to 1.5x from day to day: the ratio travels, seconds do not).

    python benchmarks/explain_speed.py --runs runs/bench --jobs 2 --repeats 2

Trains (or reuses) d = 20 GRU and Transformer models of Multi-Object (seed 0) into --runs, then, for each
repeat, copies the run to a fresh folder (no cached alignment), times the whole command as a process, and
keeps its verdict. Also times a fresh d = 20 GRU to the criterion (`criterion_s`). Writes
benchmarks/reports/explain_speed.{json,md}. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from numvars.config import from_mapping
from numvars.train import train

REPORTS = Path(__file__).parent / "reports"


def trained(runs: Path, arch: str) -> Path:
    cfg = from_mapping({"arch": arch, "task": "multi_object", "d_model": 20, "seed": 0, "out": str(runs)})
    return train(cfg, progress=False).run_dir


def criterion_seconds() -> float:
    """A fresh d = 20 GRU (Multi-Object, seed 0) trained to the criterion, in a throwaway folder."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        train(from_mapping({"arch": "gru", "task": "multi_object", "d_model": 20, "seed": 0, "out": tmp}),
              progress=False)
        return time.perf_counter() - started


def explain_once(run: Path, jobs: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / run.name
        shutil.copytree(run, fresh, ignore=shutil.ignore_patterns("align", "explain"))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "numvars.cli", "explain", str(fresh), "--jobs", str(jobs), "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        doc = json.loads((fresh / "explain" / "explain.json").read_text())
    return seconds, {"best": doc["best"], "grade": doc["grade"], "verdict": doc["verdict"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, default=Path("runs/bench"))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--archs", nargs="+", default=["gru", "transformer"])
    args = p.parse_args(argv)
    criterion = criterion_seconds()
    rows = []
    for arch in args.archs:
        run = trained(args.runs, arch)
        for r in range(args.repeats):
            seconds, verdict = explain_once(run, args.jobs)
            rows.append({"arch": arch, "repeat": r, "seconds": round(seconds, 1),
                         "x_criterion": round(seconds / criterion, 2), **verdict})
            print(f"{arch} #{r}: {seconds:.0f} s ({seconds / criterion:.1f} x criterion) -> {verdict['best']} "
                  f"({verdict['grade']})", flush=True)
    doc = {"criterion_s": round(criterion, 1), "jobs": args.jobs, "rows": rows,
           "command": f"python benchmarks/explain_speed.py --runs {args.runs} --jobs {args.jobs} "
                      f"--repeats {args.repeats}"}
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "explain_speed.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = ["# `numvars explain` with its defaults, nothing cached",
             "", f"`{doc['command']}`; {args.jobs} workers; a d = 20 GRU trained to the criterion in "
                 f"{doc['criterion_s']} s in the same sitting (`criterion_s`).", "",
             "| model | repeat | seconds | × criterion_s | verdict |", "|---|---|---|---|---|"]
    lines += [f"| d = 20 {r['arch']}, Multi-Object, seed 0 | {r['repeat']} | {r['seconds']} | {r['x_criterion']} | "
              f"{r['best']} ({r['grade']}) |" for r in rows]
    (REPORTS / "explain_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
