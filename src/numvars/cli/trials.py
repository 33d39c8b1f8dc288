"""`numvars trials ALIGN_DIR`: an alignment's saved trials in the terminal (`align.trial_text`)."""
from __future__ import annotations

import argparse
import os
import sys


def cmd_trials(args) -> None:
    from ..align.trial_text import parse_phases, show
    from ..options import check_range

    check_range("--n", args.n, 0, 1_000_000)
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    print(show(args.align_dir, n=args.n, colour=colour, failed=args.failed, nontrivial=args.nontrivial,
               distinguishing=args.distinguishing, phases=parse_phases(args.phase)))


def register(sub) -> None:
    t = sub.add_parser("trials", help="an alignment's saved test trials, token by token",
                       description="Print the trials an alignment saved (a bounded sample of its test pairs, "
                                   "failures and distinguishing pairs included): base and source with the swap "
                                   "positions in brackets, the expected continuation, the model's (teacher-forced "
                                   "and free-running) and each program's prediction, tokens that differ from the "
                                   "expected one in red (marked * when the output is not a terminal).",
                       epilog="examples:\n"
                              "  numvars trials runs/RUN/align/das-1a2b3c4d --failed --n 5\n"
                              "  numvars trials runs/RUN/align/das-1a2b3c4d --phase demo,response",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("align_dir", metavar="ALIGN_DIR", help="an alignment folder (RUN/align/das-...)")
    t.add_argument("--failed", action="store_true", help="only trials the intervened model got wrong")
    t.add_argument("--nontrivial", action="store_true", help="only trials whose swap changes the prediction")
    t.add_argument("--distinguishing", action="store_true",
                   help="only trials where the aligned program and a rival predict different continuations")
    t.add_argument("--phase", default=None, metavar="T[,U]",
                   help="only trials whose base position t (and source position u) lie in these phases: demo, T "
                        "or response")
    t.add_argument("--n", type=int, default=10, help="trials to print (default 10)")
    t.set_defaults(func=cmd_trials)
