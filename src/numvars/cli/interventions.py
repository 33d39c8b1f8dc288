"""`numvars align | fullswap | explain | align-models | attention`: interventions on trained runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import NumvarsError
from ..options import split_words


def cmd_align(args) -> None:
    from ..align import DASOptions
    from ..jobs.cache import align_run
    from ..options import from_words

    result, path, skipped = align_run(args.run_dir, from_words(DASOptions, args.overrides, "align"),
                                      progress=not args.quiet)
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
    from ..align.search import phase_table
    from ..programs import PHASES
    from ..loaders import read_job_table

    table = phase_table(read_job_table(pairs_file.parent, "das"))
    cell = lambda r: "—" if r.pairs == 0 else f"{r.iia:.2f} ({r.pairs})"  # noqa: E731
    grid = table.assign(cell=[cell(r) for r in table.itertuples()]).pivot(index="phase_t", columns="phase_u",
                                                                         values="cell")
    grid = grid.loc[list(PHASES), list(PHASES)]
    print("  IIA by phase of t (rows) and u (columns), pairs in brackets:")
    for line in grid.rename_axis(index="t \\ u", columns=None).to_string().splitlines():
        print(f"    {line}")


def cmd_fullswap(args) -> None:
    from ..align import FullSwapOptions
    from ..jobs.cache import full_swap_run
    from ..options import from_words

    o = from_words(FullSwapOptions, args.overrides, "fullswap")
    summary, path, skipped = full_swap_run(args.run_dir, o)
    print(f"{'reused' if skipped else 'full swap'} at {summary['site']} ({summary['n']} pairs, source of the same "
          f"{o.match}, positions {o.positions}):")
    for program, value in summary["iia_by_program"].items():
        print(f"  IIA [{program}] {value:.3f}")
    by_phase = ", ".join(f"{k} {v:.3f}" for k, v in summary.get("iia_by_base_phase", {}).items())
    print(f"  IIA [{next(iter(summary['iia_by_program']))}] by the base's phase: {by_phase}")
    if summary.get("iia_by_token"):
        by_token = ", ".join(f"{k} at u {v:.3f}" for k, v in summary["iia_by_token"].items())
        print(f"  IIA [{next(iter(summary['iia_by_program']))}] by the source's token: {by_token}")
    print(f"  result: {path}")




def cmd_explain(args) -> None:
    from ..jobs.engine import default_jobs
    from ..explain import ExplainOptions
    from ..explain.runs import explain_runs
    from ..explain.verdict import title
    from ..options import from_words

    words = [*args.run_dirs, *args.overrides]            # RUN_DIR... key=value...: tell them apart by the "="
    run_dirs = [w for w in words if "=" not in w]
    o = from_words(ExplainOptions, [w for w in words if "=" in w], "explain")
    jobs = args.jobs or default_jobs()
    if args.dry_run:
        print(explain_dry_run(run_dirs, jobs, o))
        return
    x, out = explain_runs(run_dirs, out=args.out, jobs=jobs, progress=not args.quiet, options=o)
    named = x.named
    print(f"verdict: {named.headline if named else 'no program fits'}")
    for rank, v in enumerate(x.verdicts, 1):
        print(f"  {rank}. {title(v.program)} [{v.grade if v.fits or v.grade == 'also' else 'rejected'}]: {v.text}")
    print(f"explain.json and explain.html: {out}")


def explain_dry_run(run_dirs: list[str], jobs: int, o) -> str:
    from ..explain.plan import ExplainPlan, estimate
    from ..runs import load_run

    if not run_dirs:
        raise NumvarsError("give at least one run directory to explain")
    model, _, cfg, _ = load_run(run_dirs[0])
    plan = ExplainPlan(o, o.programs(), model, run_dirs)
    return (f"plan of explain for {len(run_dirs)} run(s) ({cfg.model.arch}, d = {cfg.model.d_model}), {jobs} "
            f"worker(s); nothing runs:\n" + estimate(plan, cfg.model.arch, jobs))


def cmd_align_models(args) -> None:
    from ..align.protocol import AlignModelsOptions
    from ..jobs.cache import align_models_run
    from ..options import from_words

    s, path, reused = align_models_run(args.run_a, args.run_b, from_words(AlignModelsOptions, args.overrides, "align-models"),
                                progress=not args.quiet)
    print(f"{'reused' if reused else 'aligned'}: {s['program']}.{s['variable']} between two models, k={s['k']} "
          f"map={s['map']}")
    for direction, value in s["iia"].items():
        target, source = direction.split("<-")
        print(f"  {source.upper()}'s {s['variable']} into {target.upper()}: IIA {value:.3f} "
              f"(non-trivial {s['iia_nontrivial'][direction]:.3f})")
    print(f"  A = {args.run_a}\n  B = {args.run_b}\n  result: {path}")


def cmd_attention(args) -> None:
    from ..align.protocol import AttentionOptions
    from ..jobs.cache import attention_run
    from ..options import from_words

    s, path, reused = attention_run(args.run_dir, from_words(AttentionOptions, args.overrides, "attention"))
    print(f"{'reused' if reused else 'attention test'} (layers {s['layers']}; {s['n']} trials, "
          f"{s['base_accuracy']:.3f} right without the edit):")
    print(f"  one more demo token's key/value: the EOS moves one later in {s['accuracy']['add']:.3f} of trials")
    print(f"  one demo token's key/value removed: the EOS moves one earlier in {s['accuracy']['remove']:.3f}")
    print(f"  result: {path}")


def register(sub) -> None:
    from ..align.protocol import AttentionOptions, AlignModelsOptions, DASOptions, FullSwapOptions
    from ..explain import ExplainOptions
    from ..options import help_lines

    a = sub.add_parser("align", help="DAS: align a program variable with a trained run",
                       description="Distributed Alignment Search. Results are saved under "
                                   "RUN_DIR/align/ and reused on rerun.",
                       epilog="keys (key=value):\n" + help_lines(DASOptions) + "\n\nexamples:\n"
                              "  numvars align runs/RUN program=up_down variable=count k=10\n"
                              "  numvars align runs/RUN variable=count,phase k=5 map=linear\n"
                              "  numvars align runs/RUN control=untrained   (also: random, identity)\n"
                              "  numvars align runs/RUN program=path/to/mine.py:MyProgram variable=left",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("run_dir")
    a.add_argument("overrides", nargs="*", metavar="key=value")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_align)

    f = sub.add_parser("fullswap", help="full-state swap test (Context-Distributed vs cumulative)",
                       description="Swap the whole state at a site between runs of the same phase (or role) and score "
                                   "the continuation against ctx_distributed (unchanged) and up_down.",
                       epilog="keys (key=value):\n" + help_lines(FullSwapOptions),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("run_dir")
    f.add_argument("overrides", nargs="*", metavar="key=value")
    f.set_defaults(func=cmd_fullswap)

    x = sub.add_parser("explain", help="which algorithm does this network run? every program, ranked",
                       description="Align every variable of every program (a k sweep, both maps, every site of a "
                                   "Transformer) beside its controls, run the full swap and the attention test, and "
                                   "rank the hypotheses by a written rule (docs/concepts.md). Several runs of one "
                                   "condition pool. Writes explain.json and explain.html; alignments are cached "
                                   "in each run's align/ folder.",
                       epilog="keys (key=value):\n" + help_lines(ExplainOptions) + "\n\nexamples:\n"
                              "  numvars explain runs/RUN\n"
                              "  numvars explain runs/RUN_S0 runs/RUN_S1 --jobs 2\n"
                              "  numvars explain runs/RUN program=up_down,path/to/mine.py:MyProgram ks=1,2,4",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    x.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    x.add_argument("overrides", nargs="*", metavar="key=value")
    x.add_argument("--out", default=None, help="folder for explain.json and explain.html (default RUN_DIR/explain)")
    x.add_argument("--jobs", type=int, default=None, metavar="N", help="worker processes (default: one per core)")
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    x.add_argument("--dry-run", action="store_true", help="print the jobs (certain and conditional) and an "
                                                          "estimate of the time; run nothing")
    x.set_defaults(func=cmd_explain)

    m = sub.add_parser("align-models", help="cross-model alignment: does model B hold A's variable where A does?",
                       description="Model Alignment Search: one invertible map per model, learned so that B's aligned "
                                   "subspace swapped into A's state makes A continue with B's value (and back). "
                                   "Prints IIA in every direction; saved under RUN_A/align/.",
                       epilog="keys (key=value):\n" + help_lines(AlignModelsOptions) + "\n\nexample:\n"
                              "  numvars align-models runs/GRU_S0 runs/GRU_S1 variable=count k=10",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("run_a")
    m.add_argument("run_b")
    m.add_argument("overrides", nargs="*", metavar="key=value")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(func=cmd_align_models)

    t = sub.add_parser("attention", help="attention test of the summing solution (Transformers)",
                       description="Add one demo token's key/value to every response-phase query (or remove one) and "
                                   "count the trials whose EOS moves by exactly one position.",
                       epilog="keys (key=value):\n" + help_lines(AttentionOptions),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("run_dir")
    t.add_argument("overrides", nargs="*", metavar="key=value")
    t.set_defaults(func=cmd_attention)
