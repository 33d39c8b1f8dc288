"""Trial accuracy: greedy generation after the trigger, every response and EOS exact."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import options
from .errors import NumvarsError
from .models import step_states
from .tasks import MAX_COUNT, PAD, Batch, Task

MAX_TRIALS = 20_000  # a count table's trials, generated at once
EVAL_SEED = 10_007  # the evaluation set is fixed across epochs so accuracies are comparable


@dataclass
class TrialResult:
    counts: torch.Tensor    # (N,) target count of each trial
    correct: torch.Tensor   # (N,) bool: every response token and the EOS exactly right
    loss: float = float("nan")   # mean cross-entropy on the predictable tokens (teacher-forced; the validation loss)

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean())

    def by_count(self) -> pd.DataFrame:
        df = pd.DataFrame({"count": self.counts.numpy(), "correct": self.correct.numpy()})
        return df.groupby("count", as_index=False).agg(accuracy=("correct", "mean"), trials=("correct", "size"))


def sequence_logits(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Logits (B, L, V) predicting each next token. A model that only follows the step protocol
    (initial_state, step, readout) is run step by step."""
    if type(model).forward is not nn.Module.forward:
        return model(tokens)
    states = step_states(model, tokens)                                 # (B, L, d)
    return model.readout(states.flatten(0, 1)).unflatten(0, states.shape[:2])


@contextmanager
def _evaluating(model: nn.Module):
    """Eval mode (no dropout) for the duration, then the model's own mode again."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _trials(task: Task, counts, per_count: int, seed: int) -> Batch:
    counts = list(counts)
    return task.sample(per_count * len(counts), seed=seed, counts=np.repeat(counts, per_count))


@torch.no_grad()
def trial_accuracy(model: nn.Module, task: Task, counts=range(1, 21), per_count: int = 15,
                   seed: int = EVAL_SEED, device: str | torch.device = "cpu") -> TrialResult:
    """The same verdicts as `greedy_trials`, from one teacher-forced pass.

    A greedy trial is all right exactly when the argmax at every predictable position of the true
    sequence is right: if it is, greedy decoding reproduces the true prefix step by step, so it
    sees the same inputs and makes the same predictions; if one is wrong, the greedy run's first
    error is at or before it. (A test checks both paths agree.)
    """
    batch = _trials(task, counts, per_count, seed)
    tokens, mask = batch.tokens.to(device), batch.task_mask.to(device)
    with _evaluating(model):
        logits = sequence_logits(model, tokens[:, :-1])                 # (N, L-1, V) predicts tokens[:, 1:]
    pred, scored = logits.argmax(-1), mask[:, 1:]
    correct = ((pred == tokens[:, 1:]) | ~scored).all(dim=1)
    loss = float(torch.nn.functional.cross_entropy(logits[scored], tokens[:, 1:][scored]))
    return TrialResult(counts=batch.counts, correct=correct.cpu(), loss=loss)


@torch.no_grad()
def greedy_trials(model: nn.Module, task: Task, counts=range(1, 21), per_count: int = 15,
                  seed: int = EVAL_SEED, device: str | torch.device = "cpu") -> TrialResult:
    """Generate greedily from the first predictable position on, feeding the model its own tokens.

    All trials run at once: the generated token of row i at step j is written in place at
    position p_i + j of a PAD buffer, and the causal model is rerun on the buffer. Positions
    after p_i + j cannot influence the logits read at p_i + j - 1, so this equals step-by-step
    decoding while costing one batched forward per step.
    """
    batch = _trials(task, counts, per_count, seed)
    first = batch.task_mask.float().argmax(dim=1).to(device)            # (N,) first predictable position
    n_steps = int(batch.task_mask.sum(dim=1).max())
    # room past the longest row, so rows that finish early keep writing harmlessly into PAD
    tokens = nn.functional.pad(batch.tokens, (0, n_steps), value=PAD).to(device)
    mask = nn.functional.pad(batch.task_mask, (0, n_steps), value=False).to(device)
    buffer = torch.where(torch.arange(tokens.shape[1], device=device) < first[:, None], tokens, PAD)
    rows = torch.arange(len(tokens), device=device)
    with _evaluating(model):
        for j in range(n_steps):
            logits = sequence_logits(model, buffer)                     # (N, L, V)
            pos = first + j
            buffer[rows, pos] = logits[rows, pos - 1].argmax(-1)
    correct = ((buffer == tokens) | ~mask).all(dim=1)
    return TrialResult(counts=batch.counts, correct=correct.cpu())


def check_count_table(max_count: int, per_count: int) -> None:
    """The sizes of a count table: every trial of it is generated at once, so their number is bounded."""
    options.check_range("--max-count", max_count, 1, MAX_COUNT, "sequences are 2·count + 3 tokens long")
    options.check_range("--per-count", per_count, 1, MAX_TRIALS)
    if max_count * per_count > MAX_TRIALS:
        raise NumvarsError(f"--max-count {max_count} × --per-count {per_count} = {max_count * per_count:,} trials; at "
                           f"most {MAX_TRIALS:,} are generated at once (all in memory): lower one of them")


def count_table(model: nn.Module, task: Task, max_count: int = 30, per_count: int = 15) -> pd.DataFrame:
    """Free-running trial accuracy for each count 1..max_count, with whether the count was held out
    of training and whether it lies inside the training range."""
    check_count_table(max_count, per_count)
    table = greedy_trials(model, task, range(1, max_count + 1), per_count).by_count()
    table["held_out"] = table["count"].isin(task.spec.holdouts)
    table["in_training_range"] = table["count"] <= task.spec.max_count
    return table

