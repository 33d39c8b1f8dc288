"""Scoring an interchange intervention: per-pair verdicts, teacher-forced and free-running.

A pair is right when *every* scored continuation token is predicted exactly (IIA's unit is the
trial). Free-running scoring feeds the model its own tokens at scored positions; it also yields
the model's response length, so a failure can be read as "one response too many" or "too few".
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils import parametrize

from ..programs import Pairs


@dataclass
class Scores:
    correct: Tensor             # (N,) teacher-forced: every scored token right
    correct_free: Tensor        # (N,) free-running: the same, feeding the model its own tokens
    free_tokens: Tensor | None  # (N, M) the free-running predictions (None when not run)
    token_accuracy: float
    loss: float                 # mean cross-entropy over scored tokens (teacher-forced)
    logprob: Tensor | None = None   # (N,) log-probability of the whole expected continuation (its scored tokens)
    predicted: Tensor | None = None       # (N, M) teacher-forced predictions (what the verdict compares)
    token_logprob: Tensor | None = None   # (N, M) log-probability of each expected token (0 where not scored)


def loss(logits: Tensor, targets: Tensor, on: Tensor) -> Tensor:
    return F.cross_entropy(logits[on], targets[on])


def token_logprob(logits: Tensor, targets: Tensor, on: Tensor) -> Tensor:
    """(N, M) log-probability of each target where `on`, 0 elsewhere."""
    token = torch.log_softmax(logits.float(), -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(on, token, 0.0)


def sequence_logprob(logits: Tensor, targets: Tensor, on: Tensor) -> Tensor:
    """(N,) summed log-probability of the targets where `on`: the continuous counterpart of a trial's verdict
    (0 when the model is certain of every expected token, very negative when it expects something else)."""
    return token_logprob(logits, targets, on).sum(1)


@torch.no_grad()
def score(intervention, pairs: Pairs, free: bool = True, chunk: int = 1024, tokens: bool = False) -> Scores:
    """IIA verdicts per pair of an `Intervention` on pairs with cached states, teacher-forced and (optionally)
    free-running; with `tokens`, also each pair's predicted tokens and per-token log-probabilities (what a saved
    trial shows; (N, M) each, so only the test set keeps them)."""
    site = intervention.site
    correct, correct_free, gens, logprobs, tok_right, tok_total, loss_sum = [], [], [], [], 0, 0, 0.0
    predicted, token_lp = [], []
    with parametrize.cached():
        for i in range(0, len(pairs), chunk):
            c = pairs.select(slice(i, i + chunk))
            scored = c.scored
            state = intervention.state(c)
            logits = site.run(c, state)
            loss_sum += float(F.cross_entropy(logits[scored], c.cont[scored], reduction="sum"))
            per_token, guess = token_logprob(logits, c.cont, scored), logits.argmax(-1)
            logprobs.append(per_token.sum(1))
            if tokens:
                token_lp.append(per_token)
                predicted.append(guess)
            right = (guess == c.cont) | ~scored
            correct.append(right.all(1))
            tok_right += int((right & scored).sum())
            tok_total += int(scored.sum())
            if free:
                gen = site.free_run(c, state, scored)
                gens.append(gen)
                correct_free.append(((gen == c.cont) | ~scored).all(1))
    correct, logprob = torch.cat(correct).cpu(), torch.cat(logprobs).cpu()
    accuracy, mean_loss = tok_right / max(tok_total, 1), loss_sum / max(tok_total, 1)
    shown = dict(predicted=torch.cat(predicted).cpu(), token_logprob=torch.cat(token_lp).cpu()) if tokens else {}
    if free:
        return Scores(correct, torch.cat(correct_free).cpu(), _pad_cat(gens).cpu(), accuracy, mean_loss, logprob,
                      **shown)
    return Scores(correct, correct, None, accuracy, mean_loss, logprob, **shown)


def _pad_cat(xs: list[Tensor]) -> Tensor:
    width = max(x.shape[1] for x in xs)
    return torch.cat([F.pad(x, (0, width - x.shape[1]), value=-1) for x in xs])


def response_length(generated: Tensor, scored: Tensor, resp_token: int, eos_token: int) -> tuple[Tensor, Tensor]:
    """(length, ended) per pair: how many response tokens the model produced at scored positions
    before its first other token, and whether that token was the EOS."""
    at_scored = torch.where(scored, generated, resp_token)             # forced positions do not interrupt
    other = (at_scored != resp_token) & scored
    first = torch.where(other.any(1), other.float().argmax(1), torch.full_like(other[:, 0], other.shape[1],
                                                                              dtype=torch.long))
    before = torch.arange(scored.shape[1])[None, :] < first[:, None]
    length = (before & scored).sum(1)
    rows = torch.arange(len(first))
    ended = other.any(1) & (generated[rows, first.clamp(max=scored.shape[1] - 1)] == eos_token)
    return length, ended
