"""Symbolic programs: a step function over named variables, and the three built-in hypotheses.

A program reads the *roles* of a sequence (`tasks.BOS`, `DEMO`, `VOID`, `TRIGGER`, `RESP`, `EOS`,
`PAD`), never token ids, so one program serves every task variant (Same-Object's C is a DEMO in one
phase and a RESP in the other). Its state is a dict of (B,) LongTensors: the keys in `variables`
are the named variables an interchange intervention may swap; any other key is context the
program re-reads and is never swapped.

Everything else — traces (`interpret`), counterfactuals (`counterfactual`), pairs (`sampling`) —
is derived from `init`, `step` and `predict` alone, so a user's own subclass gets all of it.
"""
from __future__ import annotations

import torch

from ..errors import NumvarsError
from ..tasks import BOS, DEMO, EOS, RESP, TRIGGER

State = dict[str, torch.Tensor]


class Program:
    """Subclass it: set `name` and `variables`, write `init`, `step` and `predict`."""

    name: str = "program"
    variables: tuple[str, ...] = ()
    # the state key that counts demo tokens, if any: the "target" demo-phase rules continue a
    # demo-phase base until it reaches a target count (see `counterfactual.extra_demos`)
    counter: str | None = None
    # the variables a network must hold for the program to explain it (default: all; `explain`)
    core: tuple[str, ...] | None = None

    def init(self, batch_size: int) -> State:
        """The state before the first token (BOS, or the first demo token when there is no BOS)."""
        raise NotImplementedError

    def step(self, state: State, roles: torch.Tensor) -> State:
        """Consume one role per row, roles (B,); return a new dict. PAD needs no care (see `advance`)."""
        raise NotImplementedError

    def predict(self, state: State) -> torch.Tensor:
        """The next role (B,): RESP or EOS where it is determined, DEMO while still in the demo phase."""
        raise NotImplementedError


def _zeros(batch_size: int, *keys: str) -> State:
    return {k: torch.zeros(batch_size, dtype=torch.long) for k in keys}


def _respond(phase: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
    return torch.where(phase > 0, torch.where(done, EOS, RESP), DEMO)


def _ends_demo(roles: torch.Tensor) -> torch.Tensor:
    # without a trigger the first response token is what ends the demo phase
    return (roles == TRIGGER) | (roles == RESP)


class UpDown(Program):
    """One counter: +1 per demo token, −1 per response; EOS when it is back at 0."""

    name = "up_down"
    variables = ("count", "phase")
    counter = "count"
    core = ("count",)

    def init(self, batch_size):
        return _zeros(batch_size, "count", "phase")

    def step(self, state, roles):
        count = state["count"] + (roles == DEMO).long() - (roles == RESP).long()
        phase = torch.where(_ends_demo(roles), 1, state["phase"])
        bos = roles == BOS
        return {"count": count.masked_fill(bos, 0), "phase": phase.masked_fill(bos, 0)}

    def predict(self, state):
        return _respond(state["phase"], state["count"] <= 0)


def _tally(state: State, roles: torch.Tensor, demo_key: str, resp_key: str) -> State:
    """Count demo and response tokens separately; BOS resets everything."""
    new = {demo_key: state[demo_key] + (roles == DEMO).long(),
           resp_key: state[resp_key] + (roles == RESP).long(),
           "phase": torch.where(_ends_demo(roles), 1, state["phase"])}
    return {k: v.masked_fill(roles == BOS, 0) for k, v in new.items()}


class UpUp(Program):
    """Two counters, demo and response; EOS once the responses have caught up (≥, so every swap ends)."""

    name = "up_up"
    variables = ("demo_count", "resp_count", "phase")
    counter = "demo_count"
    core = ("demo_count", "resp_count")

    def init(self, batch_size):
        return _zeros(batch_size, *self.variables)

    def step(self, state, roles):
        return _tally(state, roles, "demo_count", "resp_count")

    def predict(self, state):
        return _respond(state["phase"], state["resp_count"] >= state["demo_count"])


class ContextDistributed(Program):
    """No stored variable: each step re-reads the context (demo tokens minus responses, stop at 0).
    Its keys are that context, not variables, so a swap changes nothing: under the full-state swap
    it predicts the base's own continuation."""

    name = "ctx_distributed"
    variables = ()
    counter = "n_demo"

    def init(self, batch_size):
        return _zeros(batch_size, "n_demo", "n_resp", "phase")

    def step(self, state, roles):
        return _tally(state, roles, "n_demo", "n_resp")

    def predict(self, state):
        return _respond(state["phase"], state["n_demo"] - state["n_resp"] <= 0)


PROGRAMS: dict[str, type[Program]] = {p.name: p for p in (UpDown, UpUp, ContextDistributed)}
