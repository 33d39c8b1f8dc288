"""Symbolic programs and the counterfactuals they imply (see each module's docstring).

`base` defines programs (a step function over named variables) and the built-in hypotheses;
`interpret` runs them over sequences; `counterfactual` swaps a variable and runs on, holding the
result in `Pairs`; `sampling` draws pairs for alignment.
"""
from .base import PROGRAMS, ContextDistributed, Program, State, UpDown, UpUp
from .counterfactual import PHASES, Pairs, check_variables, counterfactuals, rollout, swap
from .lookup import get_program
from .interpret import advance, at, predict_all, predictions, responding, same_phase_mask, trace
from .sampling import make_pairs, sample_positions

__all__ = ["PHASES", "PROGRAMS", "ContextDistributed", "Program", "State", "UpDown", "UpUp", "get_program", "Pairs",
           "check_variables", "counterfactuals", "rollout", "swap", "advance", "at", "predict_all", "predictions",
           "responding", "same_phase_mask", "trace", "make_pairs", "sample_positions"]
