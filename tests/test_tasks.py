"""Tasks: sequences, token ids, the task mask, held-out counts, seeding."""
import pytest
import torch

from numvars import tasks
from numvars.errors import NumvarsError
from numvars.tasks import BOS, DEMO, EOS, PAD, RESP, TRIGGER, VOID, get_task

VARIANTS = ["multi_object", "single_object", "same_object"]
OPTIONS = [{}, {"void_prob": 0.2}, {"trigger": False}, {"bos": False}, {"bos": False, "trigger": False},
           {"bos": False, "trigger": False, "void_prob": 0.3}]
ALL = [(name, opts) for name in VARIANTS for opts in OPTIONS
       if not (name == "same_object" and opts.get("trigger") is False)]


def words(task, row) -> str:
    names = {i: n for n, i in task.vocab.items()}
    return " ".join(names[int(t)] for t in row if t != task.vocab["PAD"])


def test_token_ids_are_pad_0_bos_1_eos_2_then_t_v_and_the_task_tokens():
    assert get_task("multi_object").vocab == {"PAD": 0, "BOS": 1, "EOS": 2, "T": 3, "V": 4,
                                              "D0": 5, "D1": 6, "D2": 7, "R": 8}
    assert get_task("single_object").vocab == {"PAD": 0, "BOS": 1, "EOS": 2, "T": 3, "V": 4, "D": 5, "R": 6}
    assert get_task("same_object").vocab == {"PAD": 0, "BOS": 1, "EOS": 2, "T": 3, "V": 4, "C": 5}


def test_options_do_not_change_the_vocabulary():
    base = get_task("multi_object").vocab
    assert get_task("multi_object", void_prob=0.2, bos=False, trigger=False, max_count=30).vocab == base


@pytest.mark.parametrize("name, example", [("multi_object", "BOS D? D? T R R EOS"),
                                           ("single_object", "BOS D D T R R EOS"),
                                           ("same_object", "BOS C C T C C EOS")])
def test_a_count_2_sequence_reads_like_the_spec_table(name, example):
    task = get_task(name)
    batch = task.sample(50, seed=0, counts=[2])
    for row in batch.tokens:
        got = words(task, row).split()
        assert len(got) == len(example.split())
        for g, e in zip(got, example.split()):
            assert g in ("D0", "D1", "D2") if e == "D?" else g == e


def test_multi_object_draws_all_three_demo_types():
    task = get_task("multi_object")
    batch = task.sample(200, seed=0)
    demo = batch.tokens[batch.roles == DEMO]
    assert set(demo.unique().tolist()) == {task.vocab[n] for n in ("D0", "D1", "D2")}


def test_same_object_demo_and_response_use_one_token():
    task = get_task("same_object")
    batch = task.sample(100, seed=1)
    demo = batch.tokens[batch.roles == DEMO]
    resp = batch.tokens[batch.roles == RESP]
    assert set(demo.tolist()) == set(resp.tolist()) == {task.vocab["C"]}


def test_the_minimal_variant_has_neither_bos_nor_trigger():
    task = get_task("single_object", bos=False, trigger=False)
    batch = task.sample(10, seed=0, counts=[3])
    assert words(task, batch.tokens[0]) == "D D D R R R EOS"


@pytest.mark.parametrize("name, opts", ALL)
def test_every_sequence_has_n_demo_tokens_a_trigger_n_responses_eos_then_pad(name, opts):
    task = get_task(name, **opts)
    batch = task.sample(400, seed=3)
    roles, n = batch.roles, batch.counts
    assert ((roles == DEMO).sum(1) == n).all()
    assert ((roles == RESP).sum(1) == n).all()
    assert ((roles == TRIGGER).sum(1) == int(task.spec.trigger)).all()
    assert ((roles == BOS).sum(1) == int(task.spec.bos)).all()
    first = roles[:, 0]
    assert ((first == BOS) if task.spec.bos else (first == DEMO) | (first == VOID)).all()
    rows = torch.arange(len(batch))
    assert (roles[rows, batch.lengths - 1] == EOS).all()
    after = torch.arange(roles.shape[1])[None, :] >= batch.lengths[:, None]
    assert (roles[after] == PAD).all() and (batch.tokens[after] == task.vocab["PAD"]).all()
    assert ((batch.tokens == task.vocab["PAD"]) == after).all()
    assert batch.lengths.max() == roles.shape[1]
    # phases in order: every demo position comes before every response position
    pos = torch.arange(roles.shape[1]).expand_as(roles)
    last_demo = torch.where((roles == DEMO) | (roles == VOID), pos, -1).max(1).values
    first_resp = torch.where(roles == RESP, pos, 10**6).min(1).values
    assert (last_demo < first_resp).all()


@pytest.mark.parametrize("name, opts", ALL)
def test_tokens_follow_from_roles(name, opts):
    task = get_task(name, **opts)
    batch = task.sample(300, seed=5)
    v = task.vocab
    demo_ids = {v[n] for n in tasks.VARIANTS[name][0]}
    for role, allowed in [(BOS, {v["BOS"]}), (EOS, {v["EOS"]}), (TRIGGER, {v["T"]}), (VOID, {v["V"]}),
                          (RESP, {v[tasks.VARIANTS[name][1]]}), (DEMO, demo_ids), (PAD, {v["PAD"]})]:
        assert set(batch.tokens[batch.roles == role].tolist()) <= allowed


def test_held_out_counts_4_9_14_17_never_appear_in_training_samples():
    batch = get_task("multi_object").sample(5000, seed=0)
    seen = set(batch.counts.tolist())
    assert seen.isdisjoint({4, 9, 14, 17})
    assert seen == set(range(1, 21)) - {4, 9, 14, 17}


def test_explicit_counts_include_held_out_ones_and_go_beyond_the_training_range():
    batch = get_task("multi_object").sample(300, seed=0, counts=range(1, 31))
    assert batch.counts.tolist() == list(range(1, 31)) * 10
    assert ((batch.roles == DEMO).sum(1) == batch.counts).all()


def test_300_trials_over_counts_1_to_20_give_15_of_each():
    counts = get_task("multi_object").sample(300, seed=0, counts=range(1, 21)).counts
    assert torch.bincount(counts, minlength=21)[1:].tolist() == [15] * 20


def test_custom_count_range_and_holdouts():
    task = get_task("single_object", min_count=3, max_count=7, holdouts=[5])
    seen = set(task.sample(2000, seed=0).counts.tolist())
    assert seen == {3, 4, 6, 7}


@pytest.mark.parametrize("name, opts", [(n, o) for n, o in ALL if o.get("trigger", True)])
def test_task_mask_marks_every_response_token_and_the_eos(name, opts):
    batch = get_task(name, **opts).sample(300, seed=2)
    assert (batch.task_mask == ((batch.roles == RESP) | (batch.roles == EOS))).all()


@pytest.mark.parametrize("name, opts", [(n, o) for n, o in ALL if not o.get("trigger", True)])
def test_no_trigger_variant_first_response_is_not_in_the_mask(name, opts):
    batch = get_task(name, **opts).sample(300, seed=2)
    roles, mask = batch.roles, batch.task_mask
    pos = torch.arange(roles.shape[1]).expand_as(roles)
    first_resp = torch.where(roles == RESP, pos, 10**6).min(1).values
    rows = torch.arange(len(batch))
    assert not mask[rows, first_resp].any()
    expected = (roles == RESP) | (roles == EOS)
    expected[rows, first_resp] = False
    assert (mask == expected).all()
    assert (mask.sum(1) == batch.counts).all()       # n - 1 later responses and the EOS


def test_void_tokens_dont_count():
    task = get_task("multi_object", void_prob=0.2)
    batch = task.sample(2000, seed=4)
    is_void = batch.tokens == task.vocab["V"]
    assert (is_void == (batch.roles == VOID)).all()
    non_void_demo = ((batch.roles == DEMO)).sum(1)
    assert (non_void_demo == batch.counts).all()
    assert (batch.task_mask.sum(1) == batch.counts + 1).all()
    share = is_void.sum() / (is_void.sum() + non_void_demo.sum())
    assert 0.15 < float(share) < 0.25                # about void_prob of demo positions are void


def test_the_demo_phase_ends_on_a_counted_token_never_a_void():
    batch = get_task("single_object", void_prob=0.5).sample(1000, seed=0)
    trig = (batch.roles == TRIGGER).float().argmax(1)
    assert (batch.roles[torch.arange(len(batch)), trig - 1] == DEMO).all()


def test_voids_break_the_link_between_position_and_count():
    batch = get_task("single_object", void_prob=0.2).sample(1000, seed=0, counts=[5])
    assert len(set(batch.lengths.tolist())) > 3


def test_same_seed_gives_the_same_batch():
    task = get_task("multi_object", void_prob=0.2)
    a, b = task.sample(256, seed=7), task.sample(256, seed=7)
    for f in ("tokens", "task_mask", "counts", "roles", "lengths"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert not torch.equal(a.counts, task.sample(256, seed=8).counts)


def test_dtypes_and_shapes_follow_the_public_api():
    batch = get_task("multi_object").sample(512, seed=0)
    assert batch.tokens.dtype == torch.long and batch.counts.dtype == torch.long
    assert batch.task_mask.dtype == torch.bool
    assert batch.tokens.shape == batch.task_mask.shape == batch.roles.shape
    assert batch.counts.shape == (512,) and len(batch) == 512
    sub = batch.select(slice(0, 10))
    assert len(sub) == 10 and torch.equal(sub.tokens, batch.tokens[:10])


@pytest.mark.parametrize("name", ["multi_object", "single_object", "same_object"])
def test_role_tokens_inverts_roles(name):
    task = get_task(name, void_prob=0.2)
    batch = task.sample(200, seed=0)
    demo = batch.roles == DEMO
    plain = task.role_tokens(batch.roles)                    # no generator: the first demo token
    assert torch.equal(plain[~demo], batch.tokens[~demo])
    assert (plain[demo] == int(task.demo_ids[0])).all()
    drawn = task.role_tokens(batch.roles, generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawn[~demo], batch.tokens[~demo])
    assert set(drawn[demo].tolist()) == set(task.demo_ids.tolist())      # D0, D1 and D2 all drawn


@pytest.mark.parametrize("call, message", [
    (lambda: get_task("two_object"), "unknown task"),
    (lambda: get_task("multi_object", colour="red"), "unknown task option"),
    (lambda: get_task("multi_object", void_prob=1.0), "void_prob"),
    (lambda: get_task("multi_object", min_count=5, max_count=3), "min_count"),
    (lambda: get_task("same_object", trigger=False), "trigger"),
    (lambda: get_task("multi_object", max_count=2, holdouts=[1, 2]), "held out"),
    (lambda: get_task("multi_object").sample(0), "at least 1"),
    (lambda: get_task("multi_object").sample(3, counts=[0, 1]), ">= 1"),
    (lambda: get_task("multi_object").sample(3, counts=[]), "empty"),
])
def test_bad_task_options_are_one_line_errors(call, message):
    with pytest.raises(NumvarsError, match=message) as e:
        call()
    assert "\n" not in str(e.value)
