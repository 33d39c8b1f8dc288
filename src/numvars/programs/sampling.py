"""Sampling interchange pairs: base and source sequences, positions t and u, and their counterfactuals."""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from ..errors import NumvarsError
from ..options import check_choice
from ..tasks import BOS, DEMO, EOS, PAD, RESP, TRIGGER, VOID, Batch, Task
from .base import Program, get_program
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
    check_choice("positions", positions, POSITIONS)
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
