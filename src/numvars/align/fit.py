"""The one optimisation loop every alignment is fitted with (DAS, its batched form aside, and cross-model
alignment): Adam over the map's parameters, each epoch a fresh permutation of the training items in
batches, an optional learning-rate schedule, then a check after each epoch that keeps the best map so far
and says when to stop (each caller brings its own: `search.BestMap`, `align_models.IIAPlateau`)."""
from __future__ import annotations

import torch
from torch.nn.utils import parametrize
from tqdm.auto import tqdm


def optimise(params, n: int, batch_size: int, lr: float, seed: int, epochs: int, loss_of, check,
             lr_factor=None, max_steps: int | None = None, progress: bool = False, desc: str = "DAS") \
        -> tuple[int, int]:
    """Fit `params`: `loss_of(indices)` gives a batch's loss (inside `parametrize.cached`, so an orthogonal
    matrix is computed once per step); `check(epoch, losses, steps)` runs after each epoch and returns True to
    stop; `lr_factor(step)` scales the learning rate per step. Returns (epochs run, optimiser steps)."""
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor) if lr_factor is not None else None
    gen = torch.Generator().manual_seed(seed)
    steps, epoch = 0, 0
    for epoch in tqdm(range(1, epochs + 1), disable=not progress, desc=desc, unit="ep", leave=False):
        losses = []
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            if max_steps is not None and steps >= max_steps:
                break
            with parametrize.cached():
                value = loss_of(idx)
                opt.zero_grad(set_to_none=True)
                value.backward()
            opt.step()
            if sched is not None:
                sched.step()
            losses.append(value.detach())
            steps += 1
        if check(epoch, losses, steps):
            break
    return epoch, steps
