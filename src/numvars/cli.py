"""The `numvars` command line: a thin layer over the Python API.

Every command takes `key=value` overrides; mistakes end in one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import NumvarsError
from .options import split_words


def _train_epilog() -> str:
    from .config import KEYS, Placement, TrainConfig
    from .options import help_lines

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
    from . import io
    from .config import RunConfig, from_mapping
    from .train import train

    overrides = split_words(args.overrides)
    for flag in ("device", "threads"):
        if getattr(args, flag) is not None:
            if flag in overrides and overrides[flag] != str(getattr(args, flag)):
                raise NumvarsError(f"--{flag} {getattr(args, flag)} and {flag}={overrides[flag]} disagree; give one")
            overrides[flag] = str(getattr(args, flag))
    base = None
    if args.from_run:
        run_dir = Path(args.from_run)
        base = RunConfig.from_sections(io.read_yaml(run_dir / "config.yaml"))
        overrides.setdefault("out", str(run_dir.parent))
    cfg = from_mapping(overrides, base)
    result = train(cfg, progress=not args.quiet)
    s = result.summary
    verb = "already trained" if result.skipped else "trained"
    print(f"{verb}: {result.run_dir}  epochs={s['epochs']} trial_accuracy={s['trial_accuracy']:.4f} "
          f"reached_criterion={s['reached_criterion']} seconds={s['seconds']}")


def cmd_eval(args) -> None:
    from . import io
    from .evaluate import count_table
    from .jobs import load_run

    run_dir = Path(args.run_dir)
    model, task, cfg, _ = load_run(run_dir, require_trained=False)   # checks directory, config and weights
    if args.max_count < 1 or args.per_count < 1:
        raise NumvarsError("--max-count and --per-count must be >= 1")
    table = count_table(model, task, args.max_count, args.per_count)
    path = io.write_table(run_dir / f"eval_max{args.max_count}_per{args.per_count}.csv", table)
    _print_table(table, f"free-running trial accuracy per count ({args.per_count} trials each)")
    overall = (table["accuracy"] * table["trials"]).sum() / table["trials"].sum()
    print(f"overall {overall:.4f}; saved {path}")


def cmd_align(args) -> None:
    from .align import DASOptions
    from .jobs import align_run
    from .options import parse, schema_of

    opts = parse(split_words(args.overrides), schema_of(DASOptions), "align")
    result, path, skipped = align_run(args.run_dir, progress=not args.quiet, **opts)
    s = result
    print(f"{'reused' if skipped else 'aligned'}: program={s['program']} variables={','.join(s['variables'])} "
          f"k={s['k']} map={s['map']} site={s['site']} control={s['control'] or 'none'}")
    rows = [("IIA (teacher-forced)", s["iia"]), ("IIA (free-running)", s["iia_free"]),
            ("IIA, non-trivial pairs", s["iia_nontrivial"]), ("trivial pairs", s["trivial_fraction"]),
            ("token accuracy", s["token_accuracy"]), ("validation IIA", s["val_iia"])]
    rows += [(f"IIA [{v}]", x) for v, x in s["iia_per_variable"].items()] if len(s["variables"]) > 1 else []
    for name, value in rows:
        print(f"  {name:<24}{value:.3f}")
    print_phase_table(path / "pairs.parquet")
    print(f"  epochs {s['epochs']} ({s['steps']} steps), {s['seconds']:.1f} s; result: {path}")


def print_phase_table(pairs_file: Path) -> None:
    """IIA by the phase of the base position (rows) and of the source position (columns), with the pairs."""
    import pandas as pd

    from .align.search import phase_table

    table = phase_table(pd.read_parquet(pairs_file))
    cell = lambda r: "—" if r.pairs == 0 else f"{r.iia:.2f} ({r.pairs})"  # noqa: E731
    grid = table.assign(cell=[cell(r) for r in table.itertuples()]).pivot(index="phase_t", columns="phase_u",
                                                                         values="cell")
    grid = grid.loc[["demo", "T", "response"], ["demo", "T", "response"]]
    print("  IIA by phase of t (rows) and u (columns), pairs in brackets:")
    for line in grid.rename_axis(index="t \\ u", columns=None).to_string().splitlines():
        print(f"    {line}")


def cmd_fullswap(args) -> None:
    from .align import FullSwapOptions
    from .jobs import full_swap_run
    from .options import parse, schema_of

    opts = parse(split_words(args.overrides), schema_of(FullSwapOptions), "fullswap")
    summary, path, skipped = full_swap_run(args.run_dir, **opts)
    o = FullSwapOptions(**opts)
    print(f"{'reused' if skipped else 'full swap'} at {summary['site']} ({summary['n']} pairs, source of the same "
          f"{o.match}, positions {o.positions}):")
    for program, value in summary["iia_by_program"].items():
        print(f"  IIA [{program}] {value:.3f}")
    by_phase = ", ".join(f"{k} {v:.3f}" for k, v in summary.get("iia_by_base_phase", {}).items())
    print(f"  IIA [{next(iter(summary['iia_by_program']))}] by the base's phase: {by_phase}")
    print(f"  result: {path}")


def cmd_reproduce(args) -> None:
    from .reproduce import get_preset, reproduce

    if args.dry_run:
        from .engine import default_jobs
        from .plan import plan
        preset = get_preset(args.preset)
        out = Path(args.out or Path("results") / preset.name)
        jobs = args.jobs or default_jobs()
        print(f"plan for preset {preset.name} in {out} ({args.engine} engine, {jobs} worker(s)); nothing runs:")
        print(plan(preset, out, jobs, device="cpu", threads=args.threads or 1).render())
        return

    started = __import__("time").time()
    report = reproduce(args.preset, out=args.out, device=args.device, threads=args.threads or 1,
                       progress=not args.quiet, jobs=args.jobs, engine=args.engine, address=args.address)
    print(f"done in {__import__('time').time() - started:.0f} s; report: {report}")


def cmd_analyze(args) -> None:
    from .analysis import analyze

    tables = analyze(args.results)
    print(f"analysed {args.results}: {', '.join(sorted(tables))} → {Path(args.results) / 'analysis'}")


def cmd_report(args) -> None:
    from .report import render

    print(f"report: {render(args.results)}")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit 2), like every other mistake."""

    def error(self, message: str):
        self.exit(2, f"numvars: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from .align.protocol import DASOptions, FullSwapOptions
    from .options import help_lines

    p = Parser(prog="numvars", description="Find symbol-like number variables in neural networks.")
    sub = p.add_subparsers(dest="command", required=True)

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

    a = sub.add_parser("align", help="DAS: align a program variable with a trained run",
                       description="Distributed Alignment Search. Results are saved under "
                                   "RUN_DIR/align/ and reused on rerun.",
                       epilog="keys (key=value):\n" + help_lines(DASOptions) + "\n\nexamples:\n"
                              "  numvars align runs/RUN program=up_down variable=count k=10\n"
                              "  numvars align runs/RUN variable=count,phase k=5 map=linear\n"
                              "  numvars align runs/RUN control=untrained   (also: random, identity)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("run_dir")
    a.add_argument("overrides", nargs="*", metavar="key=value")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_align)

    f = sub.add_parser("fullswap", help="full-state swap test (Context-Distributed vs cumulative)",
                       description="Swap the whole state at a site between runs of the same phase and score the "
                                   "continuation against ctx_distributed (unchanged) and up_down.",
                       epilog="keys (key=value):\n" + help_lines(FullSwapOptions),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("run_dir")
    f.add_argument("overrides", nargs="*", metavar="key=value")
    f.set_defaults(func=cmd_fullswap)

    r = sub.add_parser("reproduce", help="run the paper's experiment grid and write the report",
                       description="Train, evaluate and align every run of a preset (reusing finished jobs, "
                                   "resuming interrupted ones), then analyse and render RESULTS/report.html.")
    r.add_argument("--preset", choices=("quick", "paper"), default="quick",
                   help="quick: a reduced grid for a laptop CPU (its measured time is in the README); "
                        "paper: the full grid (GPU advised)")
    r.add_argument("--out", default=None, help="results directory (default results/PRESET)")
    r.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    r.add_argument("--threads", type=int, default=None, help="torch threads per worker on CPU (default 1)")
    r.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes running independent jobs at once (default: one per core)")
    r.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local worker processes, or Ray (pip install 'numvars[ray]'), on this machine or a cluster")
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
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from .runtime import setup_threads

        threads = getattr(args, "threads", None)
        if threads is not None and threads < 1:
            raise NumvarsError(f"--threads {threads} must be >= 1")
        setup_threads(threads or 1)
        args.func(args)
    except NumvarsError as e:
        print(f"numvars: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("numvars: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:                      # e.g. `numvars align RUN | head`: the reader left; say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
