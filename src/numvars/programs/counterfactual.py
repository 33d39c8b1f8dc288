"""Counterfactuals: what a program says follows when a variable is swapped between two runs.

`Pairs` is the one container for interchange data: the base and source sequences paired row by
row, the positions t and u, the program's counterfactual continuation after t, and (once a site
has cached them) the model states an intervention needs. `counterfactuals` builds it for given
sequences and positions; `sampling.make_pairs` samples them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import NumvarsError
from ..tasks import DEMO, EOS, PAD, RESP, ROLE_NAMES, TRIGGER, VOID, Batch
from .base import Program, State
from .lookup import get_program
from .interpret import advance, at, roles_of, trace

PHASE_OF_ROLE = {DEMO: "demo", VOID: "demo", TRIGGER: "T", RESP: "response"}
PHASES = ("demo", "T", "response")      # the phase of a position, in order: what pair tables and figures show
DEMO_RULES = ("extra", "target", "random")


@dataclass
class Pairs:
    """n interchange pairs and the program's counterfactual continuation (all tensors row-aligned)."""

    base_roles: torch.Tensor      # (N, L) roles of the base sequences
    source_roles: torch.Tensor    # (N, L') roles of the source sequences
    t: torch.Tensor               # (N,) base positions
    u: torch.Tensor               # (N,) source positions
    variables: tuple[str, ...]    # the swapped variables; () when nothing is swapped
    var_index: torch.Tensor       # (N,) which of `variables` each row swaps (0 for a swap of all)
    cont_roles: torch.Tensor      # (N, M) roles after base position t, PAD-filled, ending in EOS
    scored: torch.Tensor          # (N, M) True where the role is the program's prediction (IIA scores it)
    own_roles: torch.Tensor       # (N, M') the base's own continuation under the same rule, no swap
    base_vars: State              # the program's state after base position t, before the swap
    cf_vars: State                # the same after the swap
    base_value: torch.Tensor      # (N,) the row's swapped variable at t; -1 if nothing is swapped
    source_value: torch.Tensor    # (N,) its value after the swap (the source's at u)
    base: torch.Tensor | None = None      # (N, L) base tokens, when a task made the sequences
    source: torch.Tensor | None = None    # (N, L') source tokens
    cont: torch.Tensor | None = None      # (N, M) continuation tokens
    states: dict[str, torch.Tensor] = field(default_factory=dict)   # what an intervention site cached

    def __len__(self) -> int:
        return self.t.shape[0]

    @property
    def cont_len(self) -> torch.Tensor:
        """(N,) non-PAD length of the continuation, EOS included."""
        return (self.cont_roles != PAD).sum(1)

    @property
    def trivial(self) -> torch.Tensor:
        """(N,) True where the swap changes nothing the program predicts: the counterfactual
        continuation equals the base's own."""
        width = max(self.cont_roles.shape[1], self.own_roles.shape[1])
        pad = lambda x: torch.nn.functional.pad(x, (0, width - x.shape[1]), value=PAD)  # noqa: E731
        return (pad(self.cont_roles) == pad(self.own_roles)).all(1)

    def select(self, idx) -> "Pairs":
        def pick(v):
            if isinstance(v, torch.Tensor):
                return v[idx]
            if isinstance(v, dict):
                return {k: pick(x) for k, x in v.items()}
            return v
        return Pairs(**{f.name: pick(getattr(self, f.name)) for f in fields(self)})

    def to(self, device) -> "Pairs":
        def move(v):
            if isinstance(v, torch.Tensor):
                return v.to(device)
            if isinstance(v, dict):
                return {k: move(x) for k, x in v.items()}
            return v
        return Pairs(**{f.name: move(getattr(self, f.name)) for f in fields(self)})

    def with_states(self, states: dict[str, torch.Tensor]) -> "Pairs":
        return replace(self, states=states)

    def info(self) -> pd.DataFrame:
        """One row per pair: what was swapped where, and what the program predicts."""
        names = np.asarray(self.variables or ("(all)",))
        role_t = self.base_roles.gather(1, self.t[:, None])[:, 0].numpy()
        role_u = self.source_roles.gather(1, self.u[:, None])[:, 0].numpy()
        role_names = np.asarray(ROLE_NAMES)
        extra = {}
        if self.base is not None and self.source is not None:      # tokens known: does u hold t's input token?
            extra["same_token"] = (self.base.gather(1, self.t[:, None]) ==
                                   self.source.gather(1, self.u[:, None]))[:, 0].cpu().numpy()
        return pd.DataFrame({
            "variable": names[self.var_index.numpy()],
            "base_count": (self.base_roles == DEMO).sum(1).numpy(),
            "source_count": (self.source_roles == DEMO).sum(1).numpy(),
            "base_value": self.base_value.numpy(), "source_value": self.source_value.numpy(),
            "t": self.t.numpy(), "u": self.u.numpy(),
            "role_t": role_names[role_t], "role_u": role_names[role_u],
            "phase_t": [PHASE_OF_ROLE.get(int(r), "other") for r in role_t],
            "phase_u": [PHASE_OF_ROLE.get(int(r), "other") for r in role_u],
            "cf_resp_len": ((self.cont_roles == RESP) & self.scored).sum(1).numpy(),
            "trivial": self.trivial.numpy(), **extra})


def check_variables(program: Program, variables: Sequence[str] | str | None) -> tuple[str, ...]:
    """The variables as a tuple; None means all of them (the full-state swap)."""
    if variables is None:
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
        at_pos = roles.gather(1, pos.clamp(0, roles.shape[1] - 1)[:, None]).squeeze(1)
        bad = (~((pos >= 0) & (pos < roles.shape[1]) & (at_pos != PAD))).nonzero()
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


def rollout(program: Program, state: State, n_extra: torch.Tensor, end_role: int = TRIGGER,
            max_steps: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the program on from `state` until it emits EOS: (roles (N, M), scored (N, M)).
    Rows in the demo phase first get n_extra[i] DEMO roles and then `end_role` (TRIGGER, or RESP
    without a trigger), all forced and unscored; then the program's own predictions, scored."""
    n = n_extra.shape[0]
    n_forced = torch.where(program.predict(state) == DEMO, n_extra + 1, 0)
    done = torch.zeros(n, dtype=torch.bool)
    roles, scored = [], []
    for s in range(max_steps):
        forced, pred = s < n_forced, program.predict(state)
        free = ~forced & ~done
        bad = (free & (pred != RESP) & (pred != EOS)).nonzero()
        if len(bad):
            raise NumvarsError(f"{program.name}.predict() gave {ROLE_NAMES[int(pred[bad[0]])]} after the demo "
                               "phase ended; it must give RESP or EOS once TRIGGER (or a RESP) is read")
        role = torch.where(forced, torch.where(s < n_extra, DEMO, end_role), pred).masked_fill(done, PAD)
        roles.append(role)
        scored.append(free)
        state = advance(program, state, role)
        done = done | (role == EOS)
        if done.all():
            return torch.stack(roles, 1), torch.stack(scored, 1)
    raise NumvarsError(f"{program.name}: {int((~done).sum())} of {n} continuations did not reach EOS in "
                       f"{max_steps} steps; make predict() reach EOS or raise max_steps")


def _value(state: State, variables: tuple[str, ...], var_index: torch.Tensor, n: int) -> torch.Tensor:
    if not variables:
        return torch.full((n,), -1, dtype=torch.long)
    return torch.stack([state[v] for v in variables]).gather(0, var_index[None]).squeeze(0)


def generator(seed: int | torch.Generator) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))


def extra_demos(program: Program, rule: str, cf_state: State, base_roles: torch.Tensor, gen: torch.Generator,
                max_extra_demo: int = 3, count_range: tuple[int, int] = (1, 20)) -> torch.Tensor:
    """(N,) how many more demo tokens a base still in the demo phase sees before the trigger:
    extra  — k ~ U{0..max_extra_demo} (the paper's text);
    target — until the program's demo counter reaches the base's own count n;
    random — until it reaches a target drawn uniformly from count_range (the authors' code)."""
    if rule not in DEMO_RULES:
        raise NumvarsError(f"unknown demo_rule {rule!r}; choose one of {', '.join(DEMO_RULES)}")
    if max_extra_demo < 0:
        raise NumvarsError(f"max_extra_demo={max_extra_demo} must be >= 0; the paper uses 3")
    n = base_roles.shape[0]
    if rule == "extra":
        return torch.randint(max_extra_demo + 1, (n,), generator=gen)
    if program.counter is None:
        raise NumvarsError(f"demo_rule={rule} needs a demo counter, and program {program.name!r} names none; "
                           "set its `counter` attribute or use demo_rule=extra")
    if rule == "target":
        target = (base_roles == DEMO).sum(1)
    else:
        target = torch.randint(count_range[0], count_range[1] + 1, (n,), generator=gen)
    return (target - cf_state[program.counter]).clamp(min=0)


def counterfactuals(program: Program | str, base: Batch | torch.Tensor, source: Batch | torch.Tensor,
                    variables: Sequence[str] | str | None, t: torch.Tensor, u: torch.Tensor, seed: int = 0,
                    max_extra_demo: int = 3, trigger: bool = True, var_index: torch.Tensor | None = None,
                    max_steps: int | None = None, demo_rule: str = "extra",
                    count_range: tuple[int, int] = (1, 20)) -> Pairs:
    """Set `variables` in the base state after position t to the source's values after u and let
    the program run on. variables=None swaps all of them (the full-state swap). count_range: the
    targets demo_rule="random" draws from (the task's min_count..max_count)."""
    program = get_program(program)
    variables = check_variables(program, variables)
    b_roles, s_roles = roles_of(base), roles_of(source)
    _check_pairs(b_roles, s_roles, t, u, var_index, len(variables))
    pairs = from_traces(program, b_roles, s_roles, trace(program, b_roles), trace(program, s_roles), variables,
                        t, u, seed, max_extra_demo, trigger, var_index, max_steps, demo_rule, count_range)
    if isinstance(base, Batch) and isinstance(source, Batch):
        pairs = replace(pairs, base=base.tokens, source=source.tokens)
    return pairs


def from_traces(program, base_roles, source_roles, base_states, source_states, variables, t, u, seed,
                max_extra_demo, trigger, var_index=None, max_steps=None, demo_rule="extra",
                count_range=(1, 20)) -> Pairs:
    """`counterfactuals` from traced states (B, L), so `make_pairs` traces each batch once."""
    n = len(t)
    base_state = at(base_states, t)
    cf_state = swap(base_state, at(source_states, u), variables, var_index)   # None: every variable
    var_index = torch.zeros(n, dtype=torch.long) if var_index is None else var_index
    n_extra = extra_demos(program, demo_rule, cf_state, base_roles, generator(seed), max_extra_demo, count_range)
    # a generous bound: no built-in program can count past both sequences' lengths and the extra demos
    steps = max_steps or base_roles.shape[1] + source_roles.shape[1] + int(n_extra.max()) + 2
    end = TRIGGER if trigger else RESP
    roles, scored = rollout(program, cf_state, n_extra, end, steps)
    own, _ = rollout(program, base_state, n_extra, end, steps)
    return Pairs(base_roles=base_roles, source_roles=source_roles, t=t, u=u, variables=variables,
                 var_index=var_index, cont_roles=roles, scored=scored, own_roles=own, base_vars=base_state,
                 cf_vars=cf_state, base_value=_value(base_state, variables, var_index, n),
                 source_value=_value(cf_state, variables, var_index, n))


def leading_demos(pairs: Pairs) -> torch.Tensor:
    """(N,) how many extra demo tokens each continuation starts with (what `extra_demos` drew for it)."""
    forced_demo = (pairs.cont_roles == DEMO) & ~pairs.scored
    return forced_demo.long().cumprod(1).sum(1)


def retarget(pairs: Pairs, program: Program | str, variables: Sequence[str] | str | None, task=None) -> Pairs:
    """The same base and source sequences, positions t and u and extra demo tokens as `pairs`, under another
    program (or another variable): what *it* says follows the swap. Where both continuations hold the same
    unpredictable (forced) role at the same step, they hold the same token too, so two programs'
    continuations differ only where their predictions do (the pairs on which they can be told apart)."""
    program = get_program(program)
    variables = check_variables(program, variables)
    n = len(pairs)
    base_state = at(trace(program, pairs.base_roles), pairs.t)
    cf_state = swap(base_state, at(trace(program, pairs.source_roles), pairs.u), variables)
    end = TRIGGER if (pairs.cont_roles == TRIGGER).any() else RESP      # how the task ends its demo phase
    n_extra = leading_demos(pairs)
    steps = pairs.base_roles.shape[1] + pairs.source_roles.shape[1] + (int(n_extra.max()) if n else 0) + 2
    roles, scored = rollout(program, cf_state, n_extra, end, steps)
    own, _ = rollout(program, base_state, n_extra, end, steps)
    var_index = torch.zeros(n, dtype=torch.long)
    out = Pairs(base_roles=pairs.base_roles, source_roles=pairs.source_roles, t=pairs.t, u=pairs.u,
                variables=variables, var_index=var_index, cont_roles=roles, scored=scored, own_roles=own,
                base_vars=base_state, cf_vars=cf_state, base_value=_value(base_state, variables, var_index, n),
                source_value=_value(cf_state, variables, var_index, n), base=pairs.base, source=pairs.source)
    if pairs.cont is not None and task is not None:
        out = replace(out, cont=_shared_tokens(task, roles, scored, pairs))
    return out


def _shared_tokens(task, roles: torch.Tensor, scored: torch.Tensor, old: Pairs) -> torch.Tensor:
    """Tokens for `roles`, copying `old`'s token wherever both hold the same forced role at the same step."""
    tokens = task.role_tokens(roles)
    width = min(roles.shape[1], old.cont_roles.shape[1])
    same = (roles[:, :width] == old.cont_roles[:, :width]) & ~scored[:, :width] & ~old.scored[:, :width]
    tokens[:, :width] = torch.where(same, old.cont[:, :width], tokens[:, :width])
    return tokens


def differ(a: Pairs, b: Pairs) -> torch.Tensor:
    """(N,) True where two programs' continuations of the same pairs differ (the distinguishing pairs)."""
    width = max(a.cont_roles.shape[1], b.cont_roles.shape[1])
    pad = lambda x: torch.nn.functional.pad(x, (0, width - x.shape[1]), value=PAD)  # noqa: E731
    return ~(pad(a.cont_roles) == pad(b.cont_roles)).all(1)
