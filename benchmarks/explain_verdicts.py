"""`explain`'s verdicts on trained runs, under each alignment map alone and both, and on untrained copies.

    python benchmarks/explain_verdicts.py --runs results/paper/runs --seeds 0 1 2 3 4 5 --jobs 2

For every run of the given architectures, tasks and seeds (d = 20, default variant, trained to the criterion):
`numvars explain` with the paper preset's explain options (swaps at demo and response tokens) and maps
`orthogonal`, `linear`, and both; then the same explain on an untrained model of the run's config (in
memory, nothing cached). Alignments are cached in each run's align/ folder, so the three map settings share
their fits, and a `numvars reproduce --preset paper` finds them done. Pages go to a scratch folder, not the
runs' own explain/. Writes benchmarks/reports/explain_verdicts.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from numvars import io, models
from numvars.analysis import RAW
from numvars.explain import explain
from numvars.explain.runs import explain_runs
from numvars.loaders import read_raw_tables, read_summary
from numvars.reproduce.presets import PRESETS
from numvars.runs import load_run

REPORTS = Path(__file__).parent / "reports"
MAPS = {"orthogonal": "orthogonal", "linear": "linear", "both": "orthogonal,linear"}


def runs_of(folder: Path, archs, tasks, seeds) -> list[Path]:
    """The main grid's runs (d = 20, default variant: the results folder's tables/runs.csv says which) that
    reached the criterion."""
    runs = read_raw_tables(folder.parent, {"runs": RAW["runs"]}, {})["runs"]
    main = runs[(runs["variant"] == "default") & (runs["d_model"] == 20) & runs["arch"].isin(archs)
                & runs["task"].isin(tasks) & runs["seed"].isin(seeds)]
    out = []
    for name in sorted(main["run_name"]):
        summary = read_summary(folder / name) if (folder / name / "summary.json").is_file() else None
        if summary and summary.get("reached_criterion"):
            out.append(folder / name)
    return out


def row(x, **labels) -> dict:
    named = x.named
    count = next((e for v in x.verdicts for e in v.evidence if (v.program, e.variable) == ("up_down", "count")), None)
    duels = [d for d in x.duels if {d.program, d.rival} == {"up_down", "up_up"}]
    return {**labels, "best": x.best, "grade": x.grade, "headline": named.headline if named else "no program fits",
            "count_iia": None if count is None else round(count.iia, 3),
            "count_map": None if count is None else count.map,
            "up_down_wins": sum(d.winner == ("program" if d.program == "up_down" else "rival") for d in duels),
            "up_up_wins": sum(d.winner == ("rival" if d.program == "up_down" else "program") for d in duels)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--archs", nargs="+", default=["gru", "lstm", "transformer"])
    p.add_argument("--tasks", nargs="+", default=["multi_object", "single_object", "same_object"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--no-untrained", action="store_true")
    args = p.parse_args(argv)
    opts = dict(PRESETS["paper"].explain)
    rows = earlier(opts)                   # rows of an earlier, interrupted sitting with the same options are kept
    have = {key(r) for r in rows}
    with tempfile.TemporaryDirectory() as scratch:
        for run in runs_of(args.runs, args.archs, args.tasks, args.seeds):
            model, task, cfg, _ = load_run(run)
            labels = {"arch": cfg.model.arch, "task": cfg.task.name, "seed": cfg.train.seed, "run": run.name}
            for name, maps in MAPS.items():
                if key({**labels, "model": "trained", "maps": name}) in have:
                    continue
                start = time.perf_counter()
                x, _ = explain_runs([run], out=Path(scratch) / run.name / name, jobs=args.jobs, progress=False,
                                    **{**opts, "maps": maps})
                rows.append(row(x, **labels, model="trained", maps=name, seconds=round(time.perf_counter() - start)))
                save(rows, opts)
            if not args.no_untrained and key({**labels, "model": "untrained", "maps": "both"}) not in have:
                fresh = models.build(cfg.model, seed=cfg.train.seed)
                start = time.perf_counter()
                x = explain(fresh, task, progress=False, jobs=args.jobs, **opts)
                rows.append(row(x, **labels, model="untrained", maps="both", seconds=round(time.perf_counter() - start)))
                save(rows, opts)


def key(r: dict) -> tuple:
    return r["run"], r["model"], r["maps"]


def earlier(opts: dict) -> list[dict]:
    path = REPORTS / "explain_verdicts.json"
    if not path.is_file():
        return []
    doc = json.loads(path.read_text())
    return doc["rows"] if doc.get("options") == json.loads(json.dumps(opts)) else []


def save(rows: list[dict], opts: dict) -> None:
    """The reports after each verdict (sorted, so that a resumed sitting writes the same files)."""
    print(json.dumps(rows[-1]), flush=True)
    rows = sorted(rows, key=lambda r: (r["arch"], r["task"], r["seed"], r["model"] != "trained", list(MAPS).index(r["maps"])))
    io.write_text(REPORTS / "explain_verdicts.json", json.dumps({"options": opts, "rows": rows}, indent=1) + "\n")
    io.write_text(REPORTS / "explain_verdicts.md", markdown(rows, opts))


def coverage(rows: list[dict]) -> str:
    """Which seeds of which conditions the rows cover (a sitting may stop before it covers everything)."""
    seeds: dict = {}
    for r in rows:
        if r["model"] == "trained":
            seeds.setdefault((r["arch"], r["task"]), set()).add(r["seed"])
    parts = [f"{arch} {task.replace('_', '-')} seeds {', '.join(map(str, sorted(s)))}" for (arch, task), s in
             sorted(seeds.items())]
    return f"Covered: {'; '.join(parts)} ({sum(map(len, seeds.values()))} runs)." if parts else "No run covered yet."


def markdown(rows: list[dict], opts: dict) -> str:
    lines = ["# `explain`'s verdicts on the paper preset's runs", "",
             f"`python benchmarks/explain_verdicts.py` with the paper preset's explain options {opts} (2 workers), "
             f"on the runs of `numvars reproduce --preset paper-short` (the paper protocol). {coverage(rows)} "
             "For each run: the verdict with the rotation alone, the general linear map alone, and both; then "
             "an untrained model of the same config. \"UD/UU wins\": comparisons of Up-Down's count with Up-Up's "
             "two counts, on the pairs where they differ, won by each (of 2). \"s\": wall seconds of that explain "
             "(alignments already cached by an earlier map setting or by the preset are reused; — where not timed).",
             "", "| arch | task | seed | model | maps | verdict | grade | count IIA (map) | UD wins | UU wins | s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        iia = "—" if r["count_iia"] is None else f"{r['count_iia']:.2f} ({r['count_map']})"
        lines.append(f"| {r['arch']} | {r['task']} | {r['seed']} | {r['model']} | {r['maps']} | {r['best']} | "
                     f"{r['grade']} | {iia} | {r['up_down_wins']} | {r['up_up_wins']} | {r.get('seconds', '—')} |")
    summary: dict = {}
    for r in rows:
        key = (r["arch"], r["task"], r["model"], r["maps"])
        summary.setdefault(key, []).append(r["best"])
    lines += ["", "## Verdicts per condition", "", "| arch | task | model | maps | verdicts (runs) |", "|---|---|---|---|---|"]
    for (arch, task, model, maps), bests in summary.items():
        counts = ", ".join(f"{b} × {bests.count(b)}" for b in dict.fromkeys(bests))
        lines.append(f"| {arch} | {task} | {model} | {maps} | {counts} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
