"""Symbolic programs and their counterfactuals."""
import pytest
import torch

from numvars import programs as P
from numvars.errors import NumvarsError
from numvars.programs import Program
from numvars.programs.counterfactual import differ, retarget
from numvars.programs.sampling import isolation_pairs
from numvars.tasks import BOS, DEMO, EOS, PAD, RESP, TRIGGER, VOID, get_task

SHORT = {"BOS": BOS, "D": DEMO, "V": VOID, "T": TRIGGER, "R": RESP, "EOS": EOS}


def roles_of(*rows: str) -> torch.Tensor:
    """'BOS D D T R R EOS' rows → a PAD-filled (N, L) role tensor."""
    parsed = [[SHORT[w] for w in row.split()] for row in rows]
    out = torch.full((len(rows), max(map(len, parsed))), PAD)
    for i, r in enumerate(parsed):
        out[i, :len(r)] = torch.tensor(r)
    return out


def words(roles: torch.Tensor) -> str:
    names = {v: k for k, v in SHORT.items()}
    return " ".join(names[int(r)] for r in roles if r != PAD)


def one(program, base, source, variables, t, u, **kw):
    return P.counterfactuals(program, roles_of(base), roles_of(source), variables,
                             torch.tensor([t]), torch.tensor([u]), **kw)


TASKS = [("multi_object", {}), ("single_object", {}), ("same_object", {}),
         ("multi_object", {"void_prob": 0.2}), ("single_object", {"trigger": False}),
         ("multi_object", {"trigger": False, "bos": False, "void_prob": 0.2})]


def test_up_down_trace_counts_up_then_down_and_predicts_eos_exactly_at_eos():
    roles = roles_of("BOS D D D T R R R EOS")
    prog = P.get_program("up_down")
    assert P.trace(prog, roles)["count"][0].tolist() == [0, 1, 2, 3, 3, 2, 1, 0, 0]
    assert P.trace(prog, roles)["phase"][0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    pred = P.predictions(prog, roles)[0]
    assert pred[:4].tolist() == [DEMO] * 4      # before T nothing is determined
    assert pred[4:7].tolist() == [RESP] * 3
    assert pred[7] == EOS                        # after the third R: the EOS position


@pytest.mark.parametrize("name,opts", TASKS)
@pytest.mark.parametrize("program", list(P.PROGRAMS))
def test_programs_predict_every_task_mask_position_and_nothing_else(name, opts, program):
    task, prog = get_task(name, **opts), P.get_program(program)
    batch = task.sample(300, seed=1, counts=range(1, 21))
    first = prog.predict(prog.init(len(batch)))[:, None]
    before = torch.cat([first, P.predictions(prog, batch)[:, :-1]], 1)  # prediction for each position
    real = batch.roles != PAD
    assert torch.equal(before[batch.task_mask], batch.roles[batch.task_mask])
    assert (before[real & ~batch.task_mask] == DEMO).all()


def test_swapping_count_at_t3_with_source_count_7_yields_7_more_R_then_EOS():
    cf = one("up_down", "BOS D D T R R EOS", "BOS D D D D D D D T R R R R R R R EOS", "count", t=3, u=8)
    assert (cf.base_value.item(), cf.source_value.item()) == (2, 7)
    assert words(cf.cont_roles[0]) == "R R R R R R R EOS"
    assert cf.scored[0].all() and cf.cont_len.item() == 8


def test_demo_phase_swap_adds_0_to_3_extra_demos_then_T_then_count_R():
    n = 400
    base, source = roles_of("BOS D D D D T R R R R EOS"), roles_of("BOS D D D D D T R R R R R EOS")
    cf = P.counterfactuals("up_down", base.expand(n, -1), source.expand(n, -1), "count",
                           torch.full((n,), 2), torch.full((n,), 5), seed=0)
    extra = set()
    for roles, scored in zip(cf.cont_roles, cf.scored):
        k = words(roles).split().index("T")
        extra.add(k)
        assert words(roles) == " ".join(["D"] * k + ["T"] + ["R"] * (5 + k) + ["EOS"])
        assert not scored[:k + 1].any() and scored[k + 1:len(words(roles).split())].all()
    assert extra == {0, 1, 2, 3}


def test_no_trigger_demo_phase_swap_ends_demo_with_a_forced_unscored_R():
    cf = one("up_down", "D D D R R R EOS", "D D D D D R R R R R EOS", "count", t=0, u=4,
             max_extra_demo=0, trigger=False)
    assert words(cf.cont_roles[0]) == "R R R R R EOS"
    assert cf.scored[0].tolist() == [False, True, True, True, True, True]


def test_phase_swap_from_response_source_into_demo_base_starts_responding_now():
    cf = one("up_down", "BOS D D D T R R R EOS", "BOS D T R EOS", "phase", t=2, u=3)
    assert words(cf.cont_roles[0]) == "R R EOS" and cf.scored[0].all()


def test_phase_swap_from_demo_source_into_response_base_continues_by_the_demo_rule():
    cf = one("up_down", "BOS D D D T R R R EOS", "BOS D D T R R EOS", "phase", t=5, u=1, max_extra_demo=0)
    assert words(cf.cont_roles[0]) == "T R R EOS"  # count 2 at the first R, then T, then 2 R
    assert cf.scored[0].tolist() == [False, True, True, True]


def test_up_up_resp_count_swap_shortens_the_response():
    cf = one("up_up", "BOS D D D D T R R R R EOS", "BOS D D D D D T R R R R R EOS", "resp_count", t=6, u=9)
    assert (cf.base_value.item(), cf.source_value.item()) == (1, 3)
    assert words(cf.cont_roles[0]) == "R EOS"


def test_ctx_distributed_swap_in_response_phase_continues_as_the_base_itself():
    task, prog = get_task("multi_object", void_prob=0.2), P.get_program("ctx_distributed")
    cf = P.make_pairs(task, prog, None, 500, seed=3, match="phase")
    lengths = (cf.base_roles != PAD).sum(1)
    for i in range(500):
        if cf.base_roles[i, cf.t[i]] in (TRIGGER, RESP):
            own = cf.base_roles[i, cf.t[i] + 1:lengths[i]]
            assert torch.equal(cf.cont_roles[i, :cf.cont_len[i]], own)
    assert (cf.base_value == -1).all() and cf.trivial.all()


def test_full_swap_of_up_down_takes_the_count_from_the_same_phase_source():
    task, prog = get_task("single_object"), P.get_program("up_down")
    cf = P.make_pairs(task, prog, None, 500, seed=4, match="phase")
    assert torch.equal(cf.cf_vars["phase"], P.trace(prog, cf.source_roles)["phase"].gather(1, cf.u[:, None])[:, 0])
    in_resp = cf.cf_vars["phase"] == 1
    n_resp = (cf.cont_roles == RESP).sum(1)
    assert torch.equal(n_resp[in_resp], cf.cf_vars["count"][in_resp])


def test_per_row_variable_index_swaps_one_variable_per_pair():
    base = roles_of("BOS D D T R R EOS", "BOS D D T R R EOS")
    source = roles_of("BOS D D D D T R R R R EOS", "BOS D D D D T R R R R EOS")
    cf = P.counterfactuals("up_down", base, source, ("count", "phase"), torch.tensor([1, 1]),
                           torch.tensor([4, 5]), var_index=torch.tensor([0, 1]), max_extra_demo=0)
    assert words(cf.cont_roles[0]) == "T R R R R EOS"      # count 4 swapped in, still demo phase
    assert words(cf.cont_roles[1]) == "R EOS"              # phase swapped in, count 1 kept
    assert cf.base_value.tolist() == [1, 0] and cf.source_value.tolist() == [4, 1]


class Countdown(Program):
    """A user's program: one variable, no phase, no PAD or BOS handling."""

    name = "countdown"
    variables = ("left",)

    def init(self, batch_size):
        zero = torch.zeros(batch_size, dtype=torch.long)
        return {"left": zero, "talking": zero}

    def step(self, state, roles):
        resp = (roles == RESP) | (roles == TRIGGER)
        return {"left": state["left"] + (roles == DEMO).long() - (roles == RESP).long(),
                "talking": torch.where(resp, 1, state["talking"])}

    def predict(self, state):
        return torch.where(state["talking"] == 1, torch.where(state["left"] > 0, RESP, EOS), DEMO)


def test_a_user_written_program_gets_counterfactuals_and_pairs_for_free():
    cf = one(Countdown(), "BOS D D T R R EOS", "BOS D D D D T R R R R EOS", "left", t=3, u=5)
    assert words(cf.cont_roles[0]) == "R R R R EOS"
    cf = P.make_pairs(get_task("multi_object"), Countdown(), "left", 200, seed=0)
    assert (cf.cont_roles.gather(1, cf.cont_len[:, None] - 1) == EOS).all()


def test_a_program_that_never_stops_is_named_in_the_error():
    class Forever(Countdown):
        name = "forever"

        def predict(self, state):
            return torch.where(state["talking"] == 1, RESP, DEMO)

    with pytest.raises(NumvarsError, match="forever.*did not reach EOS"):
        one(Forever(), "BOS D T R EOS", "BOS D T R EOS", "left", t=1, u=1)


def test_the_same_seed_gives_the_same_pairs_and_another_seed_does_not():
    task = get_task("multi_object", void_prob=0.2)
    a, b, c = (P.make_pairs(task, "up_down", "count", 300, seed=s) for s in (5, 5, 6))
    assert torch.equal(a.base, b.base) and torch.equal(a.source, b.source) and torch.equal(a.cont, b.cont)
    assert torch.equal(a.t, b.t) and torch.equal(a.u, b.u)
    assert torch.equal(a.cont_roles, b.cont_roles) and torch.equal(a.scored, b.scored)
    assert not torch.equal(a.t, c.t)


def test_positions_are_never_bos_eos_or_pad_and_cover_the_rest():
    batch = get_task("single_object").sample(2000, seed=0, counts=[3])
    gen = torch.Generator().manual_seed(0)
    pos = P.sample_positions(batch, gen)
    assert not torch.isin(batch.roles.gather(1, pos[:, None]), torch.tensor([BOS, EOS, PAD])).any()
    assert set(pos.tolist()) == set(range(1, 8))  # D D D T R R R
    allowed = torch.zeros_like(batch.roles, dtype=torch.bool)
    allowed[:, 5] = True
    assert (P.sample_positions(batch, gen, allowed) == 5).all()


def test_same_phase_mask_follows_the_program_phase():
    roles = roles_of("BOS D D T R R EOS")
    mask = P.same_phase_mask(P.get_program("up_down"), roles, torch.tensor([4]), roles)
    assert mask[0].tolist() == [False, False, False, True, True, True, True]


def test_joint_variable_pairs_each_swap_one_variable():
    cf = P.make_pairs(get_task("single_object"), "up_down", ("count", "phase"), 400, seed=0)
    assert set(cf.var_index.tolist()) == {0, 1}
    assert len(cf.select(cf.var_index == 0)) + len(cf.select(cf.var_index == 1)) == 400


def test_unknown_names_and_bad_positions_are_one_line_errors():
    with pytest.raises(NumvarsError, match="unknown program 'up_sideways'; choose one of up_down, up_up, ctx_"):
        P.get_program("up_sideways")
    with pytest.raises(NumvarsError, match="counts must be"):
        P.make_pairs(get_task("multi_object"), "up_down", "count", 10, counts=[])
    with pytest.raises(NumvarsError, match="no variable 'count'; its variables: none"):
        one("ctx_distributed", "BOS D T R EOS", "BOS D T R EOS", "count", t=1, u=1)
    with pytest.raises(NumvarsError, match=r"t\[0\]=9"):
        one("up_down", "BOS D T R EOS", "BOS D T R EOS", "count", t=9, u=1)


def test_counterfactuals_on_batches_agree_with_make_pairs_where_nothing_is_sampled():
    task = get_task("same_object", void_prob=0.2)
    cf = P.make_pairs(task, "up_up", "demo_count", 300, seed=2)
    again = P.counterfactuals("up_up", cf.base_roles, cf.source_roles, "demo_count", cf.t, cf.u, seed=99)
    fixed = cf.cf_vars["phase"] == 1  # responding already: no extra demo tokens are drawn
    assert fixed.any() and (~fixed).any()
    m = min(cf.cont_roles.shape[1], again.cont_roles.shape[1])
    assert torch.equal(again.cont_len[fixed], cf.cont_len[fixed]) and m >= int(cf.cont_len[fixed].max())
    assert torch.equal(again.cont_roles[fixed, :m], cf.cont_roles[fixed, :m])
    # with a trigger every forced role is a DEMO or the T, so exactly the RESP and EOS are scored
    assert torch.equal(cf.scored, torch.isin(cf.cont_roles, torch.tensor([RESP, EOS])))


def test_a_pair_is_trivial_exactly_when_its_continuation_equals_the_bases_own():
    base, source = "BOS D D T R R EOS", "BOS D D D T R R R EOS"
    same = one("up_down", base, source, "count", t=4, u=6)      # both hold count 1 there
    other = one("up_down", base, source, "count", t=4, u=5)     # the source holds 2
    assert same.trivial.tolist() == [True] and words(same.own_roles[0]) == "R EOS"
    assert other.trivial.tolist() == [False] and words(other.cont_roles[0]) == "R R EOS"


def test_pair_info_names_roles_phases_and_the_programs_response_length():
    cf = one("up_down", "BOS D D T R R EOS", "BOS D D D T R R R EOS", "count", t=2, u=4, max_extra_demo=0)
    row = cf.info().iloc[0]
    assert (row.role_t, row.phase_t, row.role_u, row.phase_u) == ("DEMO", "demo", "TRIGGER", "T")
    assert row.base_value == 2 and row.source_value == 3
    assert row.cf_resp_len == 3 and not row.trivial


# --- rival programs on the same pairs, and isolation pairs --------------------------------------------------

def test_another_programs_counterfactual_of_the_same_pairs_is_what_its_own_sampler_draws():
    task = get_task("multi_object")
    mine = P.make_pairs(task, "up_down", "count", 500, seed=3, positions="tokens")
    again = retarget(mine, "up_down", "count", task)
    for name in ("cont_roles", "scored", "own_roles", "cont", "source_value"):
        assert torch.equal(getattr(again, name), getattr(mine, name)), name
    theirs = retarget(mine, "up_up", "demo_count", task)
    own = P.make_pairs(task, "up_up", "demo_count", 500, seed=3, positions="tokens")
    assert torch.equal(theirs.cont_roles, own.cont_roles) and torch.equal(theirs.scored, own.scored)
    split = differ(mine, theirs)
    assert 0 < int(split.sum()) < 500
    # the same forced (unpredictable) role at the same step is the same token in both continuations
    both = min(mine.cont.shape[1], theirs.cont.shape[1])
    shared = (mine.cont_roles[:, :both] == theirs.cont_roles[:, :both]) & ~mine.scored[:, :both] \
        & ~theirs.scored[:, :both]
    assert shared.any() and torch.equal(mine.cont[:, :both][shared], theirs.cont[:, :both][shared])


def test_up_down_and_up_up_agree_while_both_runs_are_in_the_demo_phase():
    task = get_task("single_object")
    mine = P.make_pairs(task, "up_down", "count", 800, seed=1)
    split = differ(mine, retarget(mine, "up_up", "demo_count", task))
    info = mine.info()
    demo_demo = torch.as_tensor(((info["phase_t"] == "demo") & (info["phase_u"] == "demo")).to_numpy().copy())
    assert demo_demo.any() and not split[demo_demo].any()
    assert split[~demo_demo].any()


@pytest.mark.parametrize("program, variable", [("up_down", "count"), ("up_up", "demo_count"), ("up_up", "resp_count")])
def test_isolation_pairs_hold_the_same_value_and_differ_elsewhere_so_nothing_should_change(program, variable):
    task = get_task("multi_object")
    pairs = isolation_pairs(task, program, variable, 300, seed=2, positions="tokens")
    assert 250 <= len(pairs) <= 300 and bool(pairs.trivial.all())
    assert torch.equal(pairs.base_value, pairs.source_value)
    prog = P.get_program(program)
    base, source = P.at(P.trace(prog, pairs.base_roles), pairs.t), P.at(P.trace(prog, pairs.source_roles), pairs.u)
    elsewhere = torch.zeros(len(pairs), dtype=torch.bool)
    for key in base:
        if key != variable:
            elsewhere |= base[key] != source[key]
    assert bool(elsewhere.all())
    if (program, variable) == ("up_down", "count"):       # the same count in the other phase
        info = pairs.info()
        assert (info["phase_t"] != info["phase_u"]).all()
