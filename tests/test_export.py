"""`numvars export`: a fitted map for pyvene, MIB or as safetensors, each applying the same swap as numvars."""
import contextlib
import io
import json
import shutil
import types
from pathlib import Path

import pytest
import torch

from numvars import cli, models
from numvars.align.export import read_export
from numvars.align.intervention import Intervention
from numvars.align.mib_format import check_mib, mib_interchange
from numvars.align.pyvene_format import load_pyvene
from numvars.align.sites import get_site, hook_name
from numvars.errors import NumvarsError
from numvars.runs import load_run

from conftest import claim_trained, extra
from test_cli import assert_one_line_error, run_cli

SMALL = ["n_train=200", "n_val=50", "n_test=50", "max_epochs=1", "--quiet"]


@pytest.fixture(scope="module")
def aligned(tiny_run, tmp_path_factory):
    """A tiny GRU run with two alignments: count at k=3 (orthogonal) and count,phase at k=2 (one linear)."""
    run = claim_trained(Path(shutil.copytree(tiny_run.run_dir, tmp_path_factory.mktemp("export") / "run")))
    dirs = {}
    for name, words in {"one": ["k=3"], "two": ["variable=count,phase", "k=2"],
                        "linear": ["k=3", "map=linear"]}.items():
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["align", str(run), *words, *SMALL]) == 0
        dirs[name] = Path(out.getvalue().strip().split("result: ")[-1])
    return run, dirs


def states(run, n=64, seed=0):
    """Real base and source states of the run's model, at random positions, and the model."""
    model, task, _, _ = load_run(run)
    batch = task.sample(2 * n, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        seq = get_site(model).states(batch.tokens)
    rows = torch.arange(2 * n)
    picked = seq[rows, torch.randint(0, 3, (2 * n,), generator=g)]
    return model, picked[:n], picked[n:]


def numvars_swap(model, align_dir, base, source, variable=0):
    iv = Intervention.load(model, align_dir)
    pairs = types.SimpleNamespace(var_index=torch.full((len(base),), variable), states={"base": base, "source": source})
    return iv.state(pairs)


def test_pyvene_forward_with_the_exported_rotation_reproduces_numvars_swap(aligned, capsys, tmp_path):
    extra("pyvene")
    run, dirs = aligned
    code, out, _ = run_cli(capsys, "export", dirs["one"], "--to", "pyvene", "--out", tmp_path / "pv")
    assert code == 0 and "exported: pyvene" in out and "k=3" in out
    model, base, source = states(run)
    iv = load_pyvene(tmp_path / "pv")
    assert int(iv.interchange_dim) == 3 and int(iv.embed_dim) == 8
    ours = numvars_swap(model, dirs["one"], base, source)
    theirs = iv(base.clone(), source.clone())
    assert torch.allclose(theirs, ours, atol=1e-5)
    assert not torch.allclose(ours, base, atol=1e-3)              # the swap changes the state: not vacuous
    config = json.loads((tmp_path / "pv" / "config.json").read_text())
    assert config["numvars"]["site"] == "state" and config["numvars"]["map"] == "orthogonal"
    assert config["numvars"]["model"]["run_dir"] == str(run.resolve()) and config["numvars"]["dtype"] == "float32"


def test_pyvene_swaps_each_variable_of_a_joint_alignment_by_its_subspace(aligned, tmp_path):
    extra("pyvene")
    run, dirs = aligned
    from numvars.align.export import export
    iv = load_pyvene(export(dirs["two"], "pyvene", tmp_path / "pv2"))
    model, base, source = states(run, seed=1)
    for variable in (0, 1):
        theirs = iv(base.clone(), source.clone(), subspaces=[[variable]] * len(base))
        assert torch.allclose(theirs, numvars_swap(model, dirs["two"], base, source, variable), atol=1e-5)


def test_safetensors_export_carries_the_map_and_what_applies_it(aligned, tmp_path):
    run, dirs = aligned
    from numvars.align.export import export
    path = export(dirs["two"], "safetensors", tmp_path / "a.safetensors")
    a = read_export(path)
    assert (a.site, a.k, a.map, a.variables, a.program) == ("state", 2, "orthogonal", ["count", "phase"], "up_down")
    assert a.model["arch"] == "gru" and a.model["d_model"] == 8 and a.protocol >= 1 and a.dtype == "float32"
    assert a.masks.tolist()[1] == [0, 0, 1, 1, 0, 0, 0, 0]
    model, base, source = states(run)
    pairs = types.SimpleNamespace(var_index=torch.ones(len(base), dtype=torch.long),
                                  states={"base": base, "source": source})
    assert torch.allclose(a.intervention(model).state(pairs), numvars_swap(model, dirs["two"], base, source, 1))


def test_mib_export_passes_our_structural_check_and_applies_the_same_swap(aligned, tmp_path):
    run, dirs = aligned
    from numvars.align.export import export
    out = export(dirs["two"], "mib", tmp_path / "mib")
    folders = sorted(p.name for p in out.iterdir())
    assert folders == ["multi_object_GRULM_count", "multi_object_GRULM_phase"]
    model, base, source = states(run, seed=2)
    for variable, folder in enumerate(folders):
        (unit, found), = check_mib(out / folder).items()
        assert unit == "State(Site-state,Token-pair_position)" and found["indices"] == [2 * variable, 2 * variable + 1]
        theirs = mib_interchange(found["rotation"], found["indices"], base, source)
        assert torch.allclose(theirs, numvars_swap(model, dirs["two"], base, source, variable), atol=1e-5)


def test_the_mib_check_refuses_bad_indices_a_missing_inverse_and_a_code_carrying_pickle(aligned, tmp_path):
    from numvars.align.export import export
    folder, = export(aligned[1]["one"], "mib", tmp_path / "mib").iterdir()
    unit = "State(Site-state,Token-pair_position)"
    (folder / f"{unit}_indices").write_text("[0, 8]\n")
    with pytest.raises(NumvarsError, match="distinct integers"):
        check_mib(folder)
    (folder / f"{unit}_indices").write_text("[0, 1]\n")
    check_mib(folder)
    import pickle
    (folder / f"{unit}_inverse_featurizer").write_bytes(pickle.dumps(types.SimpleNamespace(x=1)))
    with pytest.raises(NumvarsError, match="weights-only"):
        check_mib(folder)
    (folder / f"{unit}_inverse_featurizer").unlink()
    with pytest.raises(NumvarsError):
        check_mib(folder)


@pytest.mark.parametrize("words, expected", [
    (["--to", "pyvene"], ["holds rotations", "'linear'", "--to safetensors"]),
    (["--to", "mib"], ["holds rotations"]),
])
def test_a_linear_map_is_refused_by_the_rotation_formats_in_one_line(aligned, capsys, words, expected):
    code, _, err = run_cli(capsys, "export", aligned[1]["linear"], *words)
    assert_one_line_error(code, err, *expected)
    code, out, _ = run_cli(capsys, "export", aligned[1]["linear"], "--to", "safetensors")
    assert code == 0 and read_export(out.strip().split("written: ")[-1]).map == "linear"


def test_export_of_a_folder_that_is_no_alignment_is_one_line(aligned, capsys, tmp_path):
    run, _ = aligned
    for folder, words in [(tmp_path / "missing", ["is not a folder"]), (run, ["result.json is missing"])]:
        code, _, err = run_cli(capsys, "export", folder, "--to", "safetensors")
        assert_one_line_error(code, err, *words)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "result.json").write_text(json.dumps({"site": "state", "map": "orthogonal", "k": "3"}))
    code, _, err = run_cli(capsys, "export", bad, "--to", "mib")
    assert_one_line_error(code, err, "no valid 'k'")
    shutil.copy(aligned[1]["one"] / "result.json", bad / "result.json")
    (bad / "alignment.safetensors").write_bytes(b"not safetensors")
    code, _, err = run_cli(capsys, "export", bad, "--to", "pyvene")
    assert_one_line_error(code, err, "not an alignment numvars can export", "corrupt")


def test_transformer_sites_answer_to_transformerlens_hook_names():
    model = models.build(models.ModelConfig(arch="transformer", d_model=8, n_layers=2, vocab_size=7), seed=0)
    assert get_site(model, "blocks.0.hook_resid_post").name == "resid.1"
    assert get_site(model, "blocks.1.hook_resid_post").name == "resid.2"
    assert get_site(model, "blocks.0.hook_resid_pre").name == "resid.0"
    assert [hook_name(s) for s in model.site_names] == ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post",
                                                         "blocks.1.hook_resid_post"]
    with pytest.raises(NumvarsError, match="unknown site 'resid.3'"):
        get_site(model, "blocks.2.hook_resid_post")
