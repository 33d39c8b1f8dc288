"""The general linear map's fit: the earlier slow schedule against today's default, paired, on trained runs.

    python benchmarks/linear_fit.py --runs /work/results/paper/runs --seeds 0 1 2 3
    python benchmarks/linear_fit.py --runs RUNS --archs transformer --tasks multi_object --seeds 0 --repeats 1
    python benchmarks/linear_fit.py --runs RUNS --fits slow new orthogonal b128 --resume

For each finished d = 20 run of the preset (`--preset`, its exact run folder; `--runs` is only read)
it times `numvars.align.das` (Up-Down count, k = d/2, positions=tokens, 10k/1k/1k pairs, seed 0)
under each fit in `--fits` and records the test IIA. "slow" is the linear fit as it was (lr 3e-3
constant, batch 512, up to 50 epochs, patience 8, from the probe's start); "new" is the map's
defaults now (protocol.FITTING["linear"]); "orthogonal" is the rotation, for scale; the other names
are candidates that were measured on the way. A time is `time.perf_counter` around the whole `das`
call with one torch thread, the median of `--repeats` calls for fits whose first call took under
`--cheap` seconds (the fit is seeded, so the repeats agree on IIA). The fits of one model run one
after the other, so a slow period of the machine touches both sides of a pair.

Writes benchmarks/reports/linear_fit.{json,md}: per model, per task and architecture, and the
targets' sums over the GRUs and LSTMs of Multi- and Single-Object: mean IIA difference (new − slow)
with a paired interval, total seconds and their ratio. `--resume` keeps the rows already in the JSON
(runs still training can be added as they finish).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from numvars.align import das
from numvars.align.protocol import FITTING
from numvars.analysis.stats import mean_ci
from numvars.config import from_mapping
from numvars.runs import load_run
from numvars.reproduce.presets import PRESETS, train_overrides
from numvars.train import is_finished

REPORTS = Path(__file__).parent / "reports"
COMMON = {"program": "up_down", "variable": "count", "positions": "tokens", "seed": 0}
SLOW = {"lr": 3e-3, "schedule": "constant", "max_epochs": 50, "patience": 8, "batch_size": 512, "init": "probe"}
FITS = {
    "slow": {"map": "linear", **SLOW},
    "new": {"map": "linear"},
    "orthogonal": {"map": "orthogonal"},
    # candidates measured on the way (cosine decay, from the probe's start)
    "b512-e10": {"map": "linear", "lr": 5e-2, "schedule": "cosine", "max_epochs": 10, "batch_size": 512},
    "b128-e6": {"map": "linear", "lr": 5e-2, "schedule": "cosine", "max_epochs": 6, "batch_size": 128},
    "b64-e3": {"map": "linear", "lr": 5e-2, "schedule": "cosine", "max_epochs": 3, "batch_size": 64},
}
TARGET_ARCHS, TARGET_TASKS = ("gru", "lstm"), ("multi_object", "single_object")


def run_dir(runs: Path, preset: str, arch: str, task: str, seed: int) -> Path:
    """The preset's main run of (arch, task, seed), as `numvars reproduce` names it (not a variant)."""
    cfg = from_mapping({"arch": arch, "task": task, "d_model": 20, "seed": seed,
                        **train_overrides(PRESETS[preset], arch), "out": str(runs)})
    return runs / cfg.run_name()


def timed_das(model, task, options: dict, repeats: int, cheap: float) -> dict:
    """IIA and wall seconds of `das` under `options` (median of `repeats` calls if the first is cheap)."""
    seconds, cpu, result = [], [], None
    while len(seconds) < (repeats if not seconds or seconds[0] < cheap else 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        r = das(model, task, **COMMON, **options)
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        if result is not None and r.iia != result.iia:
            raise SystemExit(f"a repeat of {options} gave IIA {r.iia}, the first {result.iia}: not deterministic")
        result = r
    return {"iia": result.iia, "val_iia": result.val_iia, "epochs": result.epochs, "steps": result.steps,
            "seconds": statistics.median(seconds), "all_seconds": [round(s, 2) for s in seconds],
            "cpu_seconds": statistics.median(cpu)}


def paired(diffs) -> dict:
    """Mean of paired differences with a 95% t interval and the project's bootstrap interval."""
    x = np.asarray(diffs, dtype=float)
    out = {"n": len(x), "mean": float(x.mean()) if len(x) else float("nan")}
    if len(x) > 1:
        half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
        boot = mean_ci(x)
        out.update(t_low=out["mean"] - half, t_high=out["mean"] + half, boot_low=boot["ci_low"],
                   boot_high=boot["ci_high"])
    return out


def compare(rows: list[dict], fit: str, base: str = "slow") -> dict:
    """`fit` against `base` over the models that have both: IIA means, paired difference, seconds."""
    by = {(r["model"], r["fit"]): r for r in rows}
    models = [m for m in dict.fromkeys(r["model"] for r in rows) if (m, fit) in by and (m, base) in by]
    new, old = [by[m, fit] for m in models], [by[m, base] for m in models]
    s_new, s_old = sum(r["seconds"] for r in new), sum(r["seconds"] for r in old)
    c_new, c_old = sum(r["cpu_seconds"] for r in new), sum(r["cpu_seconds"] for r in old)
    return {"models": len(models), "iia_" + base: float(np.mean([r["iia"] for r in old])) if old else float("nan"),
            "iia_" + fit: float(np.mean([r["iia"] for r in new])) if new else float("nan"),
            "diff": paired([a["iia"] - b["iia"] for a, b in zip(new, old)]),
            "seconds_" + base: s_old, "seconds_" + fit: s_new, "ratio": s_new / s_old if s_old else float("nan"),
            "cpu_ratio": c_new / c_old if c_old else float("nan")}


def _fmt_diff(d: dict) -> str:
    if d["n"] < 2:
        return f"{d['mean']:+.4f}"
    return (f"{d['mean']:+.4f} (95% t [{d['t_low']:+.4f}, {d['t_high']:+.4f}]; "
            f"bootstrap [{d['boot_low']:+.4f}, {d['boot_high']:+.4f}])")


def _order(row: dict) -> tuple:
    """Tasks and architectures in the paper's order, then seed."""
    tasks, archs = ("multi_object", "single_object", "same_object"), ("gru", "lstm", "transformer")
    return (tasks.index(row["task"]) if row["task"] in tasks else 9,
            archs.index(row["arch"]) if row["arch"] in archs else 9, row["task"], row["arch"], row["seed"])


def _setup(fits: list[str], commands: list[str], notes: list[str]) -> list[str]:
    """How the report was made: commands, machine, the options of each fit."""
    options = {f: {**FITS[f], **(FITTING["linear"] if f == "new" else {})} for f in fits}
    return ["# The linear map's fit: slow schedule against the new default", "",
            "Made by (rows of later commands added to those of earlier ones):", "",
            *[f"    {c}" for c in commands], "", *[f"{n}\n" for n in notes],
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, one torch thread; a niced background job (model "
            "training) used the idle CPU throughout, and other jobs came and went, so seconds are wall times "
            "under that load (each model's fits ran back to back); CPU seconds (`time.process_time`) are "
            "less sensitive to it. Up-Down `count`, k = d/2, `positions=tokens`, 10k/1k/1k pairs, seed 0.", "",
            "| fit | options |", "|---|---|",
            *[f"| {f} | {', '.join(f'{k}={v}' for k, v in options[f].items())} |" for f in fits]]


def _targets(rows: list[dict], others: list[str]) -> list[str]:
    """The targets' models (GRUs and LSTMs of Multi- and Single-Object): sums, paired IIA difference."""
    target = [r for r in rows if r["arch"] in TARGET_ARCHS and r["task"] in TARGET_TASKS]
    lines = ["", "## Targets: GRUs and LSTMs of Multi- and Single-Object", "",
             "| fit | models | mean IIA slow | mean IIA fit | IIA fit − slow (paired) | seconds slow | seconds fit | "
             "ratio | CPU-time ratio |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [_row([f], compare(target, f), f, 4, _fmt_diff, [f"{compare(target, f).get('cpu_ratio', 0):.3f}"])
              for f in others if compare(target, f)["models"]]
    c = compare(target, "new")
    if c["models"]:
        time_ok, iia_ok = c["ratio"] <= 0.25, abs(c["diff"]["mean"]) <= 0.01
        lines += ["", f"Targets for `new` over these {c['models']} models: at most a quarter of the slow fit's "
                  f"wall time (ratio {c['ratio']:.3f}: {'met' if time_ok else 'missed'}) and a mean test IIA within "
                  f"0.01 of it ({c['diff']['mean']:+.4f}: {'met' if iia_ok else 'missed'})."]
    return lines


def _groups(rows: list[dict], others: list[str]) -> list[str]:
    """Each task and architecture: mean IIA and summed seconds of each fit against the slow one."""
    lines = ["", "## By task and architecture", "",
             "| task | arch | fit | models | mean IIA slow | mean IIA fit | mean diff | seconds slow | seconds fit | "
             "ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for task, arch in dict.fromkeys((r["task"], r["arch"]) for r in sorted(rows, key=_order)):
        group = [r for r in rows if (r["task"], r["arch"]) == (task, arch)]
        lines += [_row([task, arch, f], compare(group, f), f, 3, lambda d: f"{d['mean']:+.3f}")
                  for f in others if compare(group, f)["models"]]
    return lines


def _row(first: list[str], c: dict, f: str, digits: int, diff, last: list[str] = ()) -> str:
    """One markdown row: the leading cells, models, mean IIAs, their difference, seconds, ratio."""
    cells = [*first, c["models"], f"{c['iia_slow']:.{digits}f}", f"{c['iia_' + f]:.{digits}f}", diff(c["diff"]),
             f"{c['seconds_slow']:.1f}", f"{c['seconds_' + f]:.1f}", f"{c['ratio']:.3f}", *last]
    return "| " + " | ".join(str(x) for x in cells) + " |"


def _models(rows: list[dict]) -> list[str]:
    lines = ["", "## Per model", "",
             "| model | fit | test IIA | val IIA | epochs | steps | seconds (median) | all | CPU seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    return lines + [f"| {r['model']} | {r['fit']} | {r['iia']:.3f} | {r['val_iia']:.3f} | {r['epochs']} | "
                    f"{r['steps']} | {r['seconds']:.2f} | {' '.join(str(s) for s in r['all_seconds'])} | "
                    f"{r['cpu_seconds']:.2f} |" for r in sorted(rows, key=_order)]


def markdown(rows: list[dict], fits: list[str], commands: list[str], notes: list[str] = ()) -> str:
    """The write-up: setup, the targets' summary, per-group sums and the per-model table."""
    others = [f for f in fits if f != "slow"]
    lines = _setup(fits, commands, notes) + _targets(rows, others) + _groups(rows, others) + _models(rows)
    return "\n".join(lines) + "\n"


def measure(args, rows: list[dict], save) -> None:
    """Time every fit of every finished model not yet in `rows`, saving after each."""
    done = {(r["model"], r["fit"]) for r in rows}
    for task in args.tasks:
        for arch in args.archs:
            for seed in args.seeds:
                rdir, name = run_dir(args.runs, args.preset, arch, task, seed), f"{task}/{arch}/s{seed}"
                if not is_finished(rdir):
                    print(f"skip {name}: {rdir.name} has not finished training", flush=True)
                    continue
                model, task_obj, _, _ = load_run(rdir)
                for fit in [f for f in args.fits if (name, f) not in done]:
                    rows.append({"model": name, "task": task, "arch": arch, "seed": seed, "run": rdir.name,
                                 "fit": fit, **timed_das(model, task_obj, FITS[fit], args.repeats, args.cheap)})
                    print(json.dumps(rows[-1]), flush=True)
                    save()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, required=True, help="the preset's runs folder (only read)")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--archs", nargs="+", default=["gru", "lstm"])
    p.add_argument("--tasks", nargs="+", default=["multi_object", "single_object"])
    p.add_argument("--fits", nargs="+", default=["slow", "new"], choices=list(FITS))
    p.add_argument("--repeats", type=int, default=3, help="calls per cheap fit (median seconds)")
    p.add_argument("--cheap", type=float, default=15.0, help="a fit whose first call took under this is repeated")
    p.add_argument("--resume", action="store_true", help="keep the rows already in the JSON report")
    p.add_argument("--name", default="linear_fit", help="report file name (without extension)")
    p.add_argument("--note", help="a line for the report (kept with the rows), e.g. where --runs came from")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    REPORTS.mkdir(exist_ok=True)
    out_json, out_md = REPORTS / f"{args.name}.json", REPORTS / f"{args.name}.md"
    earlier = json.loads(out_json.read_text()) if args.resume and out_json.is_file() else {}
    rows = earlier.get("rows", [])
    notes = [*earlier.get("notes", []), *([args.note] if args.note else [])]
    commands = [*earlier.get("commands", []),
                "python benchmarks/linear_fit.py " + shlex.join(argv if argv is not None else sys.argv[1:])]
    record = {"commands": commands, "notes": notes, "fits": FITS, "new_defaults": FITTING["linear"], "rows": rows}
    measure(args, rows, lambda: out_json.write_text(json.dumps(record, indent=1)))
    out_json.write_text(json.dumps(record, indent=1))
    out_md.write_text(markdown(rows, list(dict.fromkeys(["slow", *args.fits, *(r["fit"] for r in rows)])),
                               commands, notes))
    print(out_md.read_text())


if __name__ == "__main__":
    main()
