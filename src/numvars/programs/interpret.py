"""Running a program over sequences of roles: its state after every position, and its predictions."""
from __future__ import annotations

import torch

from ..tasks import DEMO, PAD, Batch
from .base import Program, State


def roles_of(x: Batch | torch.Tensor) -> torch.Tensor:
    return x.roles if isinstance(x, Batch) else x


def advance(program: Program, state: State, roles: torch.Tensor) -> State:
    """`program.step` with PAD as a no-op, so padded and finished rows keep their state whatever
    the program does with PAD."""
    new = program.step(state, roles)
    keep = roles == PAD
    return {k: torch.where(keep, state[k], v) for k, v in new.items()}


def trace(program: Program, roles: Batch | torch.Tensor) -> State:
    """The state after each position: a dict of (B, L) tensors."""
    roles = roles_of(roles)
    state, states = program.init(roles.shape[0]), []
    for j in range(roles.shape[1]):
        state = advance(program, state, roles[:, j])
        states.append(state)
    return {k: torch.stack([s[k] for s in states], 1) for k in state}


def predict_all(program: Program, states: State) -> torch.Tensor:
    """`predict` over traced states of any shape (predict itself takes (B,))."""
    shape = next(iter(states.values())).shape
    return program.predict({k: v.reshape(-1) for k, v in states.items()}).reshape(shape)


def predictions(program: Program, roles: Batch | torch.Tensor) -> torch.Tensor:
    """(B, L): the role predicted after reading each position (DEMO: not determined, demo phase)."""
    return predict_all(program, trace(program, roles))


def at(states: State, t: torch.Tensor) -> State:
    """The traced state of each row at its own position t: (B, L) values → (B,)."""
    return {k: v.gather(1, t[:, None]).squeeze(1) for k, v in states.items()}


def responding(program: Program, states: State) -> torch.Tensor:
    """True where the program has left the demo phase (read off `predict`, so any program works)."""
    return predict_all(program, states) != DEMO


def same_phase_mask(program: Program, base: Batch | torch.Tensor, t: torch.Tensor,
                    source: Batch | torch.Tensor) -> torch.Tensor:
    """(N, L): source positions where the program is in the same phase as the base at t."""
    base_resp = responding(program, at(trace(program, base), t))             # (N,)
    return responding(program, trace(program, source)) == base_resp[:, None]
