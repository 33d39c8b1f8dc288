"""Grouped models: a group's member computes, trains and aligns exactly as it would alone."""
import pandas as pd
import pytest
import torch

from numvars import io, models
from numvars.align import DASOptions, DASRequest, das, das_many
from numvars.config import from_mapping
from numvars.errors import NumvarsError
from numvars.models import GroupedRNN
from numvars.reproduce.presets import Preset
from numvars.tasks import get_task
from numvars.train import train
from numvars.train_group import train_group

from conftest import tiny_config

# Learns counts 1..2 within tens of epochs, seeds 0, 1, 2 at different epochs (29, 44, 13 for the GRU in float64),
# so the group shrinks as its members finish.
QUICK = dict(task="single_object", max_count=2, holdouts="", d_model=8, max_epochs=60, eval_per_count=2, lr=1e-2,
             warmup_steps=5)
TASK = get_task("multi_object")
SMALL_DAS = dict(n_train=300, n_val=100, n_test=100, batch_size=64, max_epochs=4, patience=2)


def build(arch: str, seeds=(0, 1, 2), d_model: int = 8):
    cfg = from_mapping({"arch": arch, "d_model": d_model}).model
    return [models.build(cfg, seed=s) for s in seeds]


def assert_same_tensors(a: dict, b: dict, atol: float = 0.0):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m, k=k: f"{k}: {m}")


@pytest.fixture
def float64():
    """Compute in double precision. A grouped path sums in another order than the solo path (other matmul
    shapes), and how each order rounds in float32 depends on the CPU's kernels; Adam magnifies such
    rounding wherever a gradient is near zero (its step is m/(sqrt(v)+eps) whatever the gradient's size), so
    float32 weights drift apart by up to lr per step. In float64 that rounding is ~1e-16 and cannot grow to
    a visible size, so the paths must agree to a tolerance no CPU comes near."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


# --- the grouped model ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_each_members_logits_are_its_solo_models_logits(arch):
    solo = build(arch)
    group = GroupedRNN.from_models(solo).eval()
    tokens = torch.randint(0, 9, (3, 5, 7))                                # each member its own batch
    state, cont = torch.randn(3, 5, 8), torch.randint(0, 9, (3, 5, 4))
    logits, continued = group(tokens), group.run_from(state, cont)
    for i, m in enumerate(solo):
        m.eval()
        torch.testing.assert_close(logits[i], m(tokens[i]), atol=1e-6, rtol=0)
        torch.testing.assert_close(continued[i], m.run_from(state[i], cont[i]), atol=1e-6, rtol=0)


def test_each_members_dropout_is_the_draw_its_solo_run_makes_from_the_global_stream():
    solo = build("gru")
    group = GroupedRNN.from_models(solo).train()
    tokens, widths = torch.randint(0, 9, (3, 4, 7)), [7, 5, 6]                # members' own batch widths
    logits = group(tokens, widths=widths, generators=[torch.Generator().manual_seed(10 + i) for i in range(3)])
    for i, (m, width) in enumerate(zip(solo, widths)):
        torch.manual_seed(10 + i)                                          # as train() seeds its run
        torch.testing.assert_close(logits[i, :, :width], m.train()(tokens[i, :, :width]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_extracted_members_round_trip(arch):
    solo = build(arch)
    group = GroupedRNN.from_models(solo)
    for i, m in enumerate(solo):
        member = group.member(i)
        assert type(member) is type(m)
        assert_same_tensors(member.state_dict(), m.state_dict())
    smaller = group.select([2, 0])
    assert_same_tensors(smaller.member(0).state_dict(), solo[2].state_dict())
    assert_same_tensors(smaller.member(1).state_dict(), solo[0].state_dict())


def test_weights_between_members_get_no_gradient():
    group = GroupedRNN.from_models(build("gru")).train()
    group(torch.randint(0, 9, (3, 4, 6))).sum().backward()
    for name, mask in (("weight_ih_l0", group.mask_ih), ("weight_hh_l0", group.mask_hh)):
        grad = getattr(group.rnn, name).grad
        assert grad[mask == 0].abs().max() == 0 and grad[mask == 1].abs().max() > 0


def test_a_group_holds_one_recurrent_config():
    with pytest.raises(NumvarsError, match="one config"):
        GroupedRNN.from_models([*build("gru", (0,)), *build("gru", (1,), d_model=12)])
    with pytest.raises(NumvarsError, match="GRUs or LSTMs"):
        GroupedRNN(from_mapping({"arch": "transformer", "d_model": 8}).model, 2)


# --- training ------------------------------------------------------------------------------------

def run_files(run_dir) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*")}


@pytest.mark.parametrize("arch, extra", [("gru", {}), ("lstm", {"inputs": "model", "train_set": 50})])
def test_a_grouped_member_trains_exactly_as_it_would_alone(tmp_path, arch, extra, float64):
    options = {**QUICK, "arch": arch, **extra}
    grouped = train_group([tiny_config(tmp_path / "group", seed=s, **options) for s in (0, 1, 2)], progress=False)
    epochs = set()
    for seed, g in zip((0, 1, 2), grouped):
        alone = train(tiny_config(tmp_path / "alone", seed=seed, **options), progress=False)
        a, b = alone.run_dir, g.run_dir
        assert a.name == b.name and run_files(a) == run_files(b)
        for name in ["model.safetensors", *(f"checkpoints/{p.name}" for p in (a / "checkpoints").iterdir())]:
            assert_same_tensors(io.load_tensors(b / name), io.load_tensors(a / name), atol=1e-10)
        ma, mb = (pd.read_parquet(d / "metrics.parquet").drop(columns="seconds") for d in (a, b))
        pd.testing.assert_frame_equal(ma, mb, check_exact=False, atol=1e-10, rtol=0)
        sa, sb = (io.read_json(d / "summary.json") for d in (a, b))
        assert {**sa, "seconds": 0} == {**sb, "seconds": 0}
        ya, yb = (io.read_yaml(d / "config.yaml") for d in (a, b))
        assert {**ya, "train": {**ya["train"], "out": ""}} == {**yb, "train": {**yb["train"], "out": ""}}
        epochs.add(sa["epochs"])
    assert len(epochs) > 1                               # members finished at different epochs


def test_a_group_skips_finished_members_and_holds_runs_that_differ_only_in_seed(tmp_path):
    first = train(tiny_config(tmp_path, seed=1), progress=False)
    again = train_group([tiny_config(tmp_path, seed=s) for s in (0, 1)], progress=False)
    assert [r.skipped for r in again] == [False, True] and again[1].summary == first.summary
    with pytest.raises(NumvarsError, match="only in seed"):
        train_group([tiny_config(tmp_path, seed=0), tiny_config(tmp_path, seed=1, lr=1e-2)])
    with pytest.raises(NumvarsError, match="GRUs and LSTMs"):
        train_group([tiny_config(tmp_path, arch="transformer")])


# --- alignment -----------------------------------------------------------------------------------

def test_batched_das_equals_separate_das_runs(partly_trained, float64):
    trained = models.load(partly_trained("gru")).double()            # knows counts 1..6: IIA strictly inside (0, 1)
    other, = build("gru", (1,), d_model=16)
    task = get_task("multi_object", max_count=6, holdouts="")
    count = lambda **kw: DASOptions(**{**SMALL_DAS, **kw})             # noqa: E731  Up-Down's count
    requests = [DASRequest(trained, task, count(seed=0)), DASRequest(other, task, count(seed=1, n_train=200)),
                DASRequest(trained, task, count(program="up_up", variable="demo_count", seed=2, max_epochs=2)),
                DASRequest(trained, task, count(seed=3, control="untrained")),
                DASRequest(trained, task, count(seed=3, control="random")),
                DASRequest(trained, task, count(seed=4, map="linear"))]
    batched = das_many(requests)
    assert 0 < batched[0].iia < 1 and batched[0].steps > 0
    for r, b in zip(requests, batched):
        a = das(r.model, r.task, options=r.options)
        assert (a.iia, a.iia_free, a.val_iia, a.epochs, a.steps, a.map, a.variables) == \
            (b.iia, b.iia_free, b.val_iia, b.epochs, b.steps, b.map, b.variables)
        # float64 rounding, magnified as float32's was (to 0.02 on some CPUs), reaches ~2e-9 here
        torch.testing.assert_close(b.matrix, a.matrix, atol=1e-6, rtol=0)
        pd.testing.assert_frame_equal(a.pairs, b.pairs)                     # every per-pair verdict
        pd.testing.assert_frame_equal(a.history, b.history, check_exact=False, atol=1e-6, rtol=0)


def test_batched_das_takes_recurrent_models_of_one_config():
    m0, = build("gru", (0,))
    other, = build("lstm", (0,))
    with pytest.raises(NumvarsError, match="one config"):
        das_many([DASRequest(m0, TASK, DASOptions(**SMALL_DAS)), DASRequest(other, TASK, DASOptions(**SMALL_DAS))])
    with pytest.raises(NumvarsError, match="site 'state'"):
        das_many([DASRequest(m0, TASK, DASOptions(**SMALL_DAS, site="resid.1"))])


# --- reproduce on a GPU --------------------------------------------------------------------------

MINI = Preset(name="mini", seeds=(0, 1), archs=("gru", "lstm"), tasks=("single_object",), d_model=8, sizes=(8,),
              size_seeds=(0,), control_seeds=(0,), controls=("untrained", "random"),
              dynamics=(("gru", "single_object"),),
              train={"max_count": 2, "holdouts": "", "max_epochs": 60, "eval_per_count": 2, "lr": 1e-2,
                     "warmup_steps": 5},
              das={"n_train": 100, "n_val": 50, "n_test": 50, "max_epochs": 2, "patience": 1, "batch_size": 50},
              dynamics_das={"n_train": 60, "n_val": 30, "n_test": 30, "max_epochs": 1, "patience": 1,
                            "batch_size": 30},
              fullswap_n=50, oor_max=4, oor_per_count=2)


def test_grouped_jobs_write_what_the_per_job_path_finds_and_the_same_tables(tmp_path):
    from numvars.reproduce.grouped import group_training, run_grouped
    from numvars.reproduce.presets import grid
    from numvars.reproduce.run import run_jobs, train_job

    roots = [train_job(spec, MINI, tmp_path / "runs", "cpu", 1) for spec in grid(MINI)]
    assert sorted(j.kind for j in group_training(roots)) == ["train", "train_group", "train_group"]
    grouped = run_grouped(MINI, tmp_path, "cpu", progress=False)
    per_job = run_jobs(MINI, tmp_path, "cpu", progress=False)        # finds every result on disk
    assert grouped.keys() == per_job.keys()
    for name in grouped:
        pd.testing.assert_frame_equal(grouped[name], per_job[name])
    assert set(grouped["iia"]["control"]) == {"none", "untrained", "random"} and len(grouped["dynamics"])
