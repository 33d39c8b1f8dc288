"""Symbolic programs (SPEC §4) and the counterfactual continuations they imply.

A program reads the *roles* of a sequence (`tasks.BOS`, `DEMO`, `VOID`, `TRIGGER`, `RESP`, `EOS`,
`PAD`), never token ids, so one program serves every task variant (Same-Object's C is a DEMO in one
phase and a RESP in the other). Its state is a dict of (B,) LongTensors: the keys in `variables`
are the named variables an interchange intervention may swap; any other key is context the
program re-reads and is never swapped.

Everything below `Program` — traces, positions, counterfactuals, pairs — is derived from
`init`, `step` and `predict` alone, so a user's own subclass gets all of it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch

from .errors import NumvarsError
from .tasks import BOS, DEMO, EOS, PAD, RESP, ROLE_NAMES, TRIGGER, Batch, Task

State = dict[str, torch.Tensor]


class Program:
    """Subclass it: set `name` and `variables`, write `init`, `step` and `predict`."""

    name: str = "program"
    variables: tuple[str, ...] = ()

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

    def init(self, batch_size):
        return _zeros(batch_size, *self.variables)

    def step(self, state, roles):
        return _tally(state, roles, "demo_count", "resp_count")

    def predict(self, state):
        return _respond(state["phase"], state["resp_count"] >= state["demo_count"])


class ContextDistributed(Program):
    """No stored variable: each step re-reads the context (demo tokens minus responses, stop at 0).
    Its keys are that context, not variables, so a swap changes nothing: under the full-state swap
    (SPEC §5.4) it predicts the base's own continuation."""

    name = "ctx_distributed"
    variables = ()

    def init(self, batch_size):
        return _zeros(batch_size, "n_demo", "n_resp", "phase")

    def step(self, state, roles):
        return _tally(state, roles, "n_demo", "n_resp")

    def predict(self, state):
        return _respond(state["phase"], state["n_demo"] - state["n_resp"] <= 0)


PROGRAMS: dict[str, type[Program]] = {p.name: p for p in (UpDown, UpUp, ContextDistributed)}


def get_program(name: str | Program) -> Program:
    """A program by name ("up_down", "up_up", "ctx_distributed"); a Program instance passes through."""
    if isinstance(name, Program):
        return name
    if name not in PROGRAMS:
        raise NumvarsError(f"unknown program {name!r}; choose one of {', '.join(PROGRAMS)}")
    return PROGRAMS[name]()


# ---------------------------------------------------------------------------------------------
# Running a program over sequences


def _roles(x: Batch | torch.Tensor) -> torch.Tensor:
    return x.roles if isinstance(x, Batch) else x


def _generator(seed: int | torch.Generator) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))


def advance(program: Program, state: State, roles: torch.Tensor) -> State:
    """`program.step` with PAD as a no-op, so padded and finished rows keep their state whatever
    the program does with PAD."""
    new = program.step(state, roles)
    keep = roles == PAD
    return {k: torch.where(keep, state[k], v) for k, v in new.items()}


def trace(program: Program, roles: Batch | torch.Tensor) -> State:
    """The state after each position: a dict of (B, L) tensors."""
    roles = _roles(roles)
    state, states = program.init(roles.shape[0]), []
    for j in range(roles.shape[1]):
        state = advance(program, state, roles[:, j])
        states.append(state)
    return {k: torch.stack([s[k] for s in states], 1) for k in state}


def predictions(program: Program, roles: Batch | torch.Tensor) -> torch.Tensor:
    """(B, L): the role predicted after reading each position (DEMO: not determined, demo phase)."""
    return _predict_all(program, trace(program, roles))


def _predict_all(program: Program, states: State) -> torch.Tensor:
    shape = next(iter(states.values())).shape  # (B, L), flattened since predict takes (B,)
    return program.predict({k: v.reshape(-1) for k, v in states.items()}).reshape(shape)


def _at(states: State, t: torch.Tensor) -> State:
    return {k: v.gather(1, t[:, None]).squeeze(1) for k, v in states.items()}


def sample_positions(roles: Batch | torch.Tensor, generator: int | torch.Generator,
                     allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(N,): one position per row, uniform over positions that are not BOS, EOS or PAD (and are
    `allowed`, a (N, L) BoolTensor, when given)."""
    roles = _roles(roles)
    ok = (roles != PAD) & (roles != BOS) & (roles != EOS)
    if allowed is not None:
        ok = ok & allowed
    empty = (~ok.any(1)).nonzero()
    if len(empty):
        raise NumvarsError(f"row {int(empty[0])} has no position to sample ({len(empty)} rows in all); "
                           "allow at least one non-BOS/EOS/PAD position per row")
    keys = torch.rand(roles.shape, generator=_generator(generator)).masked_fill(~ok, -1.0)
    return keys.argmax(1)  # argmax of iid uniform keys: uniform over the allowed positions


def same_phase_mask(program: Program, base: Batch | torch.Tensor, t: torch.Tensor,
                    source: Batch | torch.Tensor) -> torch.Tensor:
    """(N, L): source positions where the program is in the same phase as the base at t, read
    off `predict` (DEMO means demo phase) so it works for any program. For full-state swaps."""
    return _same_phase(program, trace(program, base), t, trace(program, source))


def _same_phase(program: Program, base_states: State, t: torch.Tensor, source_states: State) -> torch.Tensor:
    base_in_resp = program.predict(_at(base_states, t)) != DEMO  # (N,)
    return (_predict_all(program, source_states) != DEMO) == base_in_resp[:, None]


# ---------------------------------------------------------------------------------------------
# Counterfactuals


@dataclass
class Counterfactuals:
    """What the program says the base run should do after an interchange at (t, u)."""

    cont_roles: torch.Tensor      # (N, M) roles after base position t, PAD-filled
    cont_scored: torch.Tensor     # (N, M) True where the role is the program's prediction (IIA scores it)
    cont_len: torch.Tensor        # (N,) non-PAD length of the continuation, EOS included
    base_value: torch.Tensor      # (N,) the row's (first) swapped variable at t; -1 if nothing is swapped
    source_value: torch.Tensor    # (N,) its value after the swap (the source's at u)
    base_state: State             # state after base position t, before the swap
    cf_state: State               # the same after the swap
    t: torch.Tensor               # (N,) base positions
    u: torch.Tensor               # (N,) source positions
    variables: tuple[str, ...] = ()
    var_index: torch.Tensor | None = None  # (N,) which of `variables` each row swaps; None: all

    def __len__(self) -> int:
        return self.cont_roles.shape[0]

    def select(self, idx) -> "Counterfactuals":
        def pick(v):
            if isinstance(v, torch.Tensor):
                return v[idx]
            return {k: x[idx] for k, x in v.items()} if isinstance(v, dict) else v
        return Counterfactuals(**{f.name: pick(getattr(self, f.name)) for f in fields(self)})


def _check_variables(program: Program, variables: Sequence[str] | str | None) -> tuple[str, ...]:
    if variables is None:  # the full-state swap
        return tuple(program.variables)
    variables = (variables,) if isinstance(variables, str) else tuple(variables)
    for v in variables:
        if v not in program.variables:
            raise NumvarsError(f"program {program.name!r} has no variable {v!r}; "
                               f"its variables: {', '.join(program.variables) or 'none'}")
    return variables


def _check_pairs(b_roles: torch.Tensor, s_roles: torch.Tensor, t: torch.Tensor, u: torch.Tensor,
                 var_index: torch.Tensor | None, n_vars: int) -> None:
    n = b_roles.shape[0]
    if s_roles.shape[0] != n:
        raise NumvarsError(f"base has {n} rows but source has {s_roles.shape[0]}; pair them row by row")
    for name, roles, pos in (("t", b_roles, t), ("u", s_roles, u)):
        if pos.shape != (n,):
            raise NumvarsError(f"{name} must hold one position per row, shape ({n},); got {tuple(pos.shape)}")
        at = roles.gather(1, pos.clamp(0, roles.shape[1] - 1)[:, None]).squeeze(1)
        bad = (~((pos >= 0) & (pos < roles.shape[1]) & (at != PAD))).nonzero()
        if len(bad):
            i = int(bad[0])
            raise NumvarsError(f"{name}[{i}]={int(pos[i])} is not a position of that sequence; "
                               "keep it before the PAD")
    if var_index is not None and (var_index.shape != (n,) or not ((var_index >= 0) & (var_index < n_vars)).all()):
        raise NumvarsError(f"var_index must have shape ({n},) and entries in 0..{n_vars - 1}")


def swap(base_state: State, source_state: State, variables: Sequence[str],
         var_index: torch.Tensor | None = None) -> State:
    """The base state with `variables` taken from the source (row i only variables[var_index[i]])."""
    out = dict(base_state)
    for i, name in enumerate(variables):
        take = source_state[name]
        out[name] = take if var_index is None else torch.where(var_index == i, take, out[name])
    return out


def rollout(program: Program, state: State, generator: torch.Generator, max_extra_demo: int = 3,
            end_role: int = TRIGGER, max_steps: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the program on from `state` until it emits EOS: (roles (N, M), scored (N, M)).
    Rows in the demo phase first get k ~ U{0..max_extra_demo} DEMO roles and then `end_role`
    (TRIGGER, or RESP without a trigger), all forced and unscored — the paper's rule."""
    if max_extra_demo < 0:
        raise NumvarsError(f"max_extra_demo={max_extra_demo} must be >= 0; the paper uses 3")
    n = next(iter(state.values())).shape[0]
    k = torch.randint(max_extra_demo + 1, (n,), generator=generator)
    n_forced = torch.where(program.predict(state) == DEMO, k + 1, 0)
    done = torch.zeros(n, dtype=torch.bool)
    roles, scored = [], []
    for s in range(max_steps):
        forced, pred = s < n_forced, program.predict(state)
        free = ~forced & ~done
        bad = (free & (pred != RESP) & (pred != EOS)).nonzero()
        if len(bad):
            raise NumvarsError(f"{program.name}.predict() gave {ROLE_NAMES[int(pred[bad[0]])]} after the demo "
                               "phase ended; it must give RESP or EOS once TRIGGER (or a RESP) is read")
        role = torch.where(forced, torch.where(s < k, DEMO, end_role), pred).masked_fill(done, PAD)
        roles.append(role)
        scored.append(free)
        state = advance(program, state, role)
        done = done | (role == EOS)
        if done.all():
            return torch.stack(roles, 1), torch.stack(scored, 1)
    raise NumvarsError(f"{program.name}: {int((~done).sum())} of {n} continuations did not reach EOS in "
                       f"{max_steps} steps; make predict() reach EOS or raise max_steps")


def _value(state: State, variables: tuple[str, ...], var_index: torch.Tensor | None, n: int) -> torch.Tensor:
    if not variables:
        return torch.full((n,), -1, dtype=torch.long)
    idx = torch.zeros(n, dtype=torch.long) if var_index is None else var_index
    return torch.stack([state[v] for v in variables]).gather(0, idx[None]).squeeze(0)


def counterfactuals(program: Program | str, base: Batch | torch.Tensor, source: Batch | torch.Tensor,
                    variables: Sequence[str] | str | None, t: torch.Tensor, u: torch.Tensor, seed: int = 0,
                    max_extra_demo: int = 3, trigger: bool = True, var_index: torch.Tensor | None = None,
                    max_steps: int | None = None) -> Counterfactuals:
    """Set `variables` in the base state after position t to the source's values after u (SPEC §4)
    and let the program run on. variables=None swaps all of them (the full-state swap)."""
    program = get_program(program)
    variables = _check_variables(program, variables)
    b_roles, s_roles = _roles(base), _roles(source)
    _check_pairs(b_roles, s_roles, t, u, var_index, len(variables))
    return _counterfactuals(program, trace(program, b_roles), trace(program, s_roles), variables, t, u,
                            seed, max_extra_demo, trigger, var_index, max_steps)


def _counterfactuals(program, base_states, source_states, variables, t, u, seed, max_extra_demo, trigger,
                     var_index=None, max_steps=None) -> Counterfactuals:
    """`counterfactuals` from traced states (B, L), so make_pairs traces each batch once."""
    n = len(t)
    base_state = _at(base_states, t)
    cf_state = swap(base_state, _at(source_states, u), variables, var_index)
    # a generous bound: no built-in program can count past both sequences' lengths
    length = sum(next(iter(states.values())).shape[1] for states in (base_states, source_states))
    roles, scored = rollout(program, cf_state, _generator(seed), max_extra_demo, TRIGGER if trigger else RESP,
                            max_steps or length + max_extra_demo + 2)
    return Counterfactuals(cont_roles=roles, cont_scored=scored, cont_len=(roles != PAD).sum(1),
                           base_value=_value(base_state, variables, var_index, n),
                           source_value=_value(cf_state, variables, var_index, n),
                           base_state=base_state, cf_state=cf_state, t=t, u=u,
                           variables=variables, var_index=var_index)


def make_pairs(task: Task, program: Program | str, variables: Sequence[str] | str | None, n: int, seed: int = 0,
               counts=range(1, 21), same_phase: bool = False, one_per_row: bool = False,
               max_extra_demo: int = 3):
    """n (base, source) pairs for DAS (SPEC §5.2) → (base, source, t, u, Counterfactuals).
    Counts are uniform over `counts` per row; t and u are uniform over non-BOS/EOS/PAD positions,
    u in the program phase of t if same_phase (full-state swaps, SPEC §5.4). one_per_row: each
    pair swaps one of `variables`, drawn uniformly (joint multi-variable DAS)."""
    program = get_program(program)
    variables = _check_variables(program, variables)
    rng = np.random.default_rng(seed)
    pool = np.asarray(list(counts), dtype=np.int64)
    if pool.size == 0 or pool.min() < 1:
        raise NumvarsError(f"counts must be a non-empty list of counts >= 1, e.g. range(1, 21); got {list(counts)}")
    base_seed, source_seed, torch_seed, cf_seed = (int(s) for s in rng.integers(2**31, size=4))
    base = task.sample(n, seed=base_seed, counts=rng.choice(pool, n))
    source = task.sample(n, seed=source_seed, counts=rng.choice(pool, n))
    gen = torch.Generator().manual_seed(torch_seed)
    base_states, source_states = trace(program, base), trace(program, source)
    t = sample_positions(base, gen)
    u = sample_positions(source, gen, _same_phase(program, base_states, t, source_states) if same_phase else None)
    var_index = None
    if one_per_row and variables:
        var_index = torch.randint(len(variables), (n,), generator=gen)
    cf = _counterfactuals(program, base_states, source_states, variables, t, u, cf_seed, max_extra_demo,
                          task.spec.trigger, var_index)
    return base, source, t, u, cf
