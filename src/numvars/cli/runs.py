"""`numvars train | eval | reproduce | analyze | report`: runs and reproductions."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import NumvarsError
from ..options import split_words
from ..paths import inside

# numvars.reproduce.PRESETS' names, spelled here so that `--help` does not import torch (a test checks them)
PRESET_NAMES = ("quick", "paper", "paper-short")


def _train_epilog() -> str:
    from ..config import KEYS, Placement, TrainConfig
    from ..options import help_lines

    by_section: dict[str, list[str]] = {}
    for key, (section, _) in KEYS.items():
        by_section.setdefault(section, []).append(key)
    lines = [f"  {section:<10} {' '.join(keys)}" for section, keys in by_section.items() if section in ("task", "model")]
    return ("config keys (key=value), by section:\n" + "\n".join(lines) +
            "\n\ntraining keys:\n" + help_lines(TrainConfig) + "\n\nwhere and how (not part of the run id):\n" +
            help_lines(Placement) +
            "\n\nexamples:\n  numvars train task=multi_object arch=gru d_model=20 seed=0 out=runs/\n"
            "  numvars train --from runs/RUN   (train again with a run's own config.yaml)")


def _print_table(df, title: str | None = None) -> None:
    if title:
        print(title)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


def cmd_train(args) -> None:
    from ..config import from_mapping
    from ..loaders import read_config
    from ..train import train

    overrides = split_words(args.overrides)
    for flag in ("device", "threads"):
        if getattr(args, flag) is not None:
            if flag in overrides and overrides[flag] != str(getattr(args, flag)):
                raise NumvarsError(f"--{flag} {getattr(args, flag)} and {flag}={overrides[flag]} disagree; give one")
            overrides[flag] = str(getattr(args, flag))
    base = None
    if args.from_run:
        run_dir = Path(args.from_run)
        base = read_config(run_dir)
        overrides.setdefault("out", str(run_dir.parent))
    cfg = from_mapping(overrides, base)
    result = train(cfg, progress=not args.quiet)
    s = result.summary
    verb = "already trained" if result.skipped else "trained"
    print(f"{verb}: {result.run_dir}  epochs={s['epochs']} trial_accuracy={s['trial_accuracy']:.4f} "
          f"reached_criterion={s['reached_criterion']} seconds={s['seconds']}")


def cmd_eval(args) -> None:
    from .. import io
    from ..evaluate import check_count_table, count_table
    from ..runs import load_run

    run_dir = Path(args.run_dir)
    check_count_table(args.max_count, args.per_count)
    model, task, cfg, _ = load_run(run_dir, require_trained=False)   # checks directory, config and weights
    table = count_table(model, task, args.max_count, args.per_count)
    path = io.write_table(inside(run_dir) / f"eval_max{args.max_count}_per{args.per_count}.csv", table)
    _print_table(table, f"free-running trial accuracy per count ({args.per_count} trials each)")
    overall = (table["accuracy"] * table["trials"]).sum() / table["trials"].sum()
    print(f"overall {overall:.4f}; saved {path}")


def cmd_reproduce(args) -> None:
    from ..reproduce.run import get_preset, reproduce

    if args.dry_run:
        from ..jobs.engine import default_jobs
        from ..reproduce.plan import plan
        preset = get_preset(args.preset)
        out = Path(args.out or Path("results") / preset.name)
        jobs = args.jobs or default_jobs()
        print(f"plan for preset {preset.name} in {out} ({args.engine} engine, {jobs} worker(s)); nothing runs:")
        print(plan(preset, out, jobs, device="cpu", threads=args.threads or 1).render())
        return

    started = time.time()
    report = reproduce(args.preset, out=args.out, device=args.device, threads=args.threads or 1,
                       progress=not args.quiet, jobs=args.jobs, engine=args.engine, address=args.address)
    print(f"done in {time.time() - started:.0f} s; report: {report}")


def cmd_analyze(args) -> None:
    from ..analysis import analyze

    tables = analyze(args.results)
    print(f"analysed {args.results}: {', '.join(sorted(tables))} → {Path(args.results) / 'analysis'}")


def cmd_report(args) -> None:
    from ..report import render

    print(f"report: {render(args.results)}")




def register(sub) -> None:
    t = sub.add_parser("train", help="train one model to the trial-accuracy criterion",
                       description="Train a model with next-token prediction. Finished runs are skipped, "
                                   "interrupted ones resume.", epilog=_train_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("overrides", nargs="*", metavar="key=value")
    t.add_argument("--from", dest="from_run", metavar="RUN_DIR", default=None,
                   help="start from a run's config.yaml (key=value overrides still apply)")
    t.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None)
    t.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default 1)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="free-running trial accuracy per count of a trained run",
                       description="Greedy trial accuracy per count 1..MAX (beyond 20 is out of training range); "
                                   "prints a table and saves RUN_DIR/eval_maxMAX_perN.csv.")
    e.add_argument("run_dir")
    e.add_argument("--max-count", type=int, default=30)
    e.add_argument("--per-count", type=int, default=15)
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("reproduce", help="run the paper's experiment grid and write the report",
                       description="Train, evaluate and align every run of a preset (reusing finished jobs, "
                                   "resuming interrupted ones), then analyse and render RESULTS/report.html.")
    r.add_argument("--preset", choices=PRESET_NAMES, default="quick",
                   help="quick: a reduced grid for a laptop CPU (its measured time is in the README); "
                        "paper: the full grid (GPU advised); paper-short: the paper grid with the size sweep and the variants "
                        "cut to three seeds (the main grid keeps six)")
    r.add_argument("--out", default=None, help="results directory (default results/PRESET)")
    r.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    r.add_argument("--threads", type=int, default=None, help="torch threads per worker on CPU (default 1)")
    r.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes running independent jobs at once (default: one per core)")
    r.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local worker processes, or Ray (the numvars[ray] extra), on this machine or a cluster")
    r.add_argument("--address", default=None, help="with --engine ray: the cluster to join (default: start a "
                                                    "local Ray)")
    r.add_argument("--dry-run", action="store_true",
                   help="print the jobs per kind, what is done, and an estimate of the wall time; run nothing")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_reproduce)

    an = sub.add_parser("analyze", help="analyses and figures from a results directory",
                        description="Read RESULTS/tables/*.csv and write RESULTS/analysis/ and RESULTS/figures/.")
    an.add_argument("results")
    an.set_defaults(func=cmd_analyze)

    rp = sub.add_parser("report", help="render RESULTS/report.html (self-contained, opens from disk)")
    rp.add_argument("results")
    rp.set_defaults(func=cmd_report)
