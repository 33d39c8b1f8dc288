"""Sampling interchange pairs: base and source sequences, positions t and u, and their counterfactuals."""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from ..errors import NumvarsError
from ..options import check_choice
from ..tasks import BOS, DEMO, EOS, PAD, RESP, TRIGGER, VOID, Batch, Task
from .base import Program
from .lookup import get_program
from .counterfactual import Pairs, check_variables, from_traces, generator
from .interpret import at, responding, roles_of, trace

POSITIONS = ("all", "tokens")      # every non-BOS/EOS/PAD position (the paper's text), or demo and response tokens
MATCHES = ("phase", "role")        # source position in the program phase of t, or of the same role (T with T)


def role_class(roles: torch.Tensor) -> torch.Tensor:
    """0 demo phase (DEMO, VOID), 1 trigger, 2 response, -1 anything else."""
    out = torch.full_like(roles, -1)
    out[(roles == DEMO) | (roles == VOID)] = 0
    out[roles == TRIGGER] = 1
    out[roles == RESP] = 2
    return out


def allowed_positions(roles: torch.Tensor, positions: str) -> torch.Tensor | None:
    """Where t (or u) may be drawn: None for every position, else the demo and response tokens."""
    return None if positions == "all" else (roles == DEMO) | (roles == RESP)


def sample_positions(roles: Batch | torch.Tensor, gen: int | torch.Generator,
                     allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(N,): one position per row, uniform over positions that are not BOS, EOS or PAD (and are
    `allowed`, a (N, L) BoolTensor, when given)."""
    roles = roles_of(roles)
    ok = (roles != PAD) & (roles != BOS) & (roles != EOS)
    if allowed is not None:
        ok = ok & allowed
    empty = (~ok.any(1)).nonzero()
    if len(empty):
        raise NumvarsError(f"row {int(empty[0])} has no position to sample ({len(empty)} rows in all); "
                           "allow at least one non-BOS/EOS/PAD position per row")
    keys = torch.rand(roles.shape, generator=generator(gen)).masked_fill(~ok, -1.0)
    return keys.argmax(1)  # argmax of iid uniform keys: uniform over the allowed positions


def make_pairs(task: Task, program: Program | str, variables: Sequence[str] | str | None, n: int, seed: int = 0,
               counts=None, match: str | None = None, max_extra_demo: int = 3, positions: str = "all",
               demo_rule: str = "extra") -> Pairs:
    """n (base, source) pairs with tokens and counterfactuals. Counts are uniform over `counts` per row
    (default: every count of the task's range, held-out ones too); t and u are uniform over non-BOS/EOS/PAD
    positions (positions="tokens": demo and response tokens only), u in the program phase of t with
    match="phase" or of the same role with match="role" (the full-state swap). With named variables each
    pair swaps one of them, drawn uniformly (joint DAS); variables=None swaps all of them at once.
    demo_rule says how a base left in the demo phase continues (`counterfactual.extra_demos`)."""
    program = get_program(program)
    swapped = check_variables(program, variables)
    check_choice("positions", positions, POSITIONS)
    if match is not None:
        check_choice("match", match, MATCHES)
    if counts is None:
        counts = range(task.spec.min_count, task.spec.max_count + 1)
    rng = np.random.default_rng(seed)
    pool = np.asarray(list(counts), dtype=np.int64)
    if pool.size == 0 or pool.min() < 1:
        raise NumvarsError(f"counts must be a non-empty list of counts >= 1, e.g. range(1, 21); got {list(counts)}")
    base_seed, source_seed, torch_seed, cf_seed = (int(s) for s in rng.integers(2**31, size=4))
    base = task.sample(n, seed=base_seed, counts=rng.choice(pool, n))
    source = task.sample(n, seed=source_seed, counts=rng.choice(pool, n))
    gen = torch.Generator().manual_seed(torch_seed)
    base_states, source_states = trace(program, base), trace(program, source)
    t = sample_positions(base, gen, allowed_positions(base.roles, positions))
    allowed = allowed_positions(source.roles, positions)
    if match is not None:
        if match == "phase":
            same = responding(program, source_states) == responding(program, at(base_states, t))[:, None]
        else:
            same = role_class(source.roles) == role_class(base.roles.gather(1, t[:, None]))
        allowed = same if allowed is None else allowed & same
    u = sample_positions(source, gen, allowed)
    var_index = torch.randint(len(swapped), (n,), generator=gen) if variables is not None and swapped else None
    pairs = from_traces(program, base.roles, source.roles, base_states, source_states, swapped, t, u, cf_seed,
                        max_extra_demo, task.spec.trigger, var_index, demo_rule=demo_rule,
                        count_range=(int(pool.min()), int(pool.max())))
    cont = task.role_tokens(pairs.cont_roles, generator=torch.Generator().manual_seed(seed + 1))
    return replace(pairs, base=base.tokens, source=source.tokens, cont=cont)


def isolation_pairs(task: Task, program: Program | str, variable: str, n: int, seed: int = 0,
                    positions: str = "all", rounds: int = 64) -> Pairs:
    """n pairs whose source holds the *same* value of `variable` at u as the base at t, while some other
    part of the program's state (another variable, or the phase) differs. Swapping `variable` then changes
    nothing the program predicts (every pair is trivial), so a model whose aligned subspace holds that
    variable and nothing else continues exactly as it would have: the isolation control (RAVEL's
    "isolate"). Rows for which no such source is found in `rounds` draws are dropped (the result may be
    shorter than n, or empty)."""
    program = get_program(program)
    (name,) = check_variables(program, variable)
    check_choice("positions", positions, POSITIONS)
    rng = np.random.default_rng(seed)
    counts = np.arange(task.spec.min_count, task.spec.max_count + 1)
    base = task.sample(n, seed=int(rng.integers(2**31)), counts=rng.choice(counts, n))
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    base_states = trace(program, base)
    t = sample_positions(base, gen, allowed_positions(base.roles, positions))
    want = at(base_states, t)
    pick, where, found = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.bool)
    pool = task.sample(n * 4, seed=int(rng.integers(2**31)), counts=rng.choice(counts, n * 4))
    pool_states = trace(program, pool)
    ok = (pool.roles != PAD) & (pool.roles != BOS) & (pool.roles != EOS)
    allowed = allowed_positions(pool.roles, positions)
    ok = ok if allowed is None else ok & allowed
    for _ in range(rounds):
        rows = (~found).nonzero()[:, 0]
        if not len(rows):
            break
        j = torch.randint(len(pool), (len(rows),), generator=gen)
        same = pool_states[name][j] == want[name][rows, None]
        other = torch.zeros_like(same)
        for key, values in pool_states.items():
            if key != name:
                other |= values[j] != want[key][rows, None]
        good = ok[j] & same & other
        hit = good.any(1)
        keys = torch.rand(good.shape, generator=gen).masked_fill(~good, -1.0)
        pick[rows[hit]], where[rows[hit]], found[rows[hit]] = j[hit], keys.argmax(1)[hit], True
    keep = found.nonzero()[:, 0]
    source_roles = pool.roles[pick[keep]]
    source_states = {k: v[pick[keep]] for k, v in pool_states.items()}
    pairs = from_traces(program, base.roles[keep], source_roles, {k: v[keep] for k, v in base_states.items()},
                        source_states, (name,), t[keep], where[keep], int(rng.integers(2**31)), 3, task.spec.trigger)
    cont = task.role_tokens(pairs.cont_roles, generator=torch.Generator().manual_seed(seed + 1))
    return replace(pairs, base=base.tokens[keep], source=pool.tokens[pick[keep]], cont=cont)
