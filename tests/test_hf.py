"""arch=hf: a GPT-2 of `transformers`, trained by numvars, saved with save_pretrained and read back safely."""
import json
import shutil
from pathlib import Path

import torch

from conftest import extra  # noqa: E402

transformers = extra("transformers")

from numvars import models  # noqa: E402
from numvars.runs import load_run  # noqa: E402
from numvars.train import is_finished  # noqa: E402

from test_cli import assert_one_line_error, run_cli  # noqa: E402


def test_the_run_folder_holds_a_save_pretrained_gpt2_that_plain_transformers_loads_and_generates_with(hf_run):
    folder = Path(hf_run) / "hf"
    assert json.loads((folder / "config.json").read_text())["model_type"] == "gpt2"
    assert not list(folder.glob("*.bin")) and (folder / "model.safetensors").is_file()
    lm = transformers.GPT2LMHeadModel.from_pretrained(str(folder), local_files_only=True).eval()
    assert (lm.config.n_embd, lm.config.n_layer, lm.config.n_head) == (20, 2, 2)
    model, task, _, _ = load_run(hf_run)
    batch = task.sample(8, seed=3, counts=[3] * 8)
    with torch.no_grad():
        assert torch.equal(lm(input_ids=batch.tokens).logits, model(batch.tokens))
    # BOS D D D T: the trained model continues R R R EOS, and transformers' generate stops at the EOS
    prompt = batch.tokens[:1, :5]
    out = lm.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
    v = task.vocab
    assert out[0, 5:].tolist() == [v["R"]] * 3 + [v["EOS"]]


def test_each_site_read_and_written_back_gives_the_models_own_logits_and_a_changed_stream_changes_them(hf_run):
    model, task, _, _ = load_run(hf_run)
    tokens = task.sample(6, seed=1).tokens
    positions = torch.arange(tokens.shape[1]).expand(len(tokens), -1)
    with torch.no_grad():
        whole = model(tokens)
        for site in model.site_names:
            acts = model.activations(tokens, site)
            assert acts.shape == (*tokens.shape, 20)
            assert torch.allclose(model.logits_from(site, acts, positions), whole, atol=1e-5)
            assert not torch.allclose(model.logits_from(site, acts.roll(1, 0), positions), whole, atol=1e-3)


def test_numvars_aligns_an_hf_run_at_a_transformerlens_named_site_and_exports_it(hf_run, capsys, tmp_path):
    run = shutil.copytree(hf_run, tmp_path / "run")
    code, out, _ = run_cli(capsys, "align", run, "k=5", "site=blocks.0.hook_resid_post", "n_train=200", "n_val=50",
                           "n_test=50", "max_epochs=1", "--quiet")
    assert code == 0 and "site=resid.1" in out
    align_dir = out.strip().split("result: ")[-1]
    code, out, _ = run_cli(capsys, "export", align_dir, "--to", "pyvene")
    config = json.loads((Path(out.strip().split("written: ")[-1]) / "config.json").read_text())
    assert config["representation"]["module"] == "transformer.h.0" and config["numvars"]["model"]["arch"] == "hf"
    assert (config["representation"]["pyvene_layer"], config["representation"]["pyvene_component"]) == \
        (0, "block_output")
    assert config["numvars"]["hook"] == "blocks.0.hook_resid_post"


def test_a_save_pretrained_folder_that_disagrees_is_missing_or_holds_a_pickle_is_refused(hf_run, capsys, tmp_path):
    run = Path(shutil.copytree(hf_run, tmp_path / "run"))
    assert is_finished(run)
    weights = run / "hf" / "model.safetensors"
    other = {k: v + 1 if v.is_floating_point() else v for k, v in models.load(run).lm.state_dict().items()}
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in other.items()}, str(weights), metadata={"format": "pt"})
    code, _, err = run_cli(capsys, "eval", run)
    assert_one_line_error(code, err, "hold different weights")
    weights.unlink()
    torch.save(other, run / "hf" / "pytorch_model.bin")          # a pickle: never read
    code, _, err = run_cli(capsys, "eval", run)
    assert_one_line_error(code, err, "lacks config.json or model.safetensors")
    assert not is_finished(run)


def test_hf_sizes_are_checked_in_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "arch=hf", "d_model=10", "n_heads=3", f"out={tmp_path}")
    assert_one_line_error(code, err, "n_heads=3")


def test_pyvene_runs_the_exported_rotation_on_the_gpt2_and_gets_numvars_intervened_logits(hf_run, tmp_path):
    """The whole model, not just the swap: pyvene's IntervenableModel, on the GPT-2 as transformers loads it, with
    the exported map at block 0's output (numvars' resid.1), swapping at each pair's t from the source's u."""
    pv = extra("pyvene")
    from numvars.align import das
    from numvars.align.export import export
    from numvars.align.intervention import Intervention
    from numvars.align.pyvene_format import load_pyvene
    from numvars.align.sites import cache
    from numvars.programs import make_pairs

    model, task, _, _ = load_run(hf_run)
    run = Path(shutil.copytree(hf_run, tmp_path / "run"))
    align_dir = das(model, task, k=6, site="resid.1", n_train=200, n_val=50, n_test=50, max_epochs=1).save(
        run / "align" / "das")
    ours_iv = Intervention.load(model, align_dir)
    pairs = cache(ours_iv.site, make_pairs(task, "up_down", ("count",), 24, seed=1))
    with torch.no_grad():
        ours = ours_iv.logits(pairs)                                            # (N, M, V)
    folder = export(align_dir, "pyvene", tmp_path / "pv")
    where = json.loads((folder / "config.json").read_text())["representation"]     # where pyvene should intervene
    config = pv.IntervenableConfig(representations=[pv.RepresentationConfig(
        layer=where["pyvene_layer"], component=where["pyvene_component"], unit="pos", max_number_of_units=1,
        intervention=load_pyvene(folder))])
    lm = transformers.GPT2LMHeadModel.from_pretrained(str(Path(hf_run) / "hf"), local_files_only=True).eval()
    net = pv.IntervenableModel(config, lm)
    t, u = [[[x] for x in pairs.t.tolist()]], [[[x] for x in pairs.u.tolist()]]
    with torch.no_grad():
        _, out = net({"input_ids": pairs.states["prefix"]}, [{"input_ids": pairs.source}],
                     unit_locations={"sources->base": (u, t)})
        plain = lm(input_ids=pairs.states["prefix"]).logits
    positions = (pairs.t[:, None] + torch.arange(ours.shape[1])[None])[..., None].expand(-1, -1, ours.shape[-1])
    assert torch.allclose(out.logits.gather(1, positions), ours, atol=1e-5)
    assert not torch.allclose(plain.gather(1, positions), ours, atol=1e-3)        # the swap changed the logits


def test_the_untrained_control_of_a_gpt2_reinitialises_every_weight_its_conv1d_layers_included(hf_run):
    from numvars.align.search import untrained_copy

    model, _, _, _ = load_run(hf_run)
    fresh = untrained_copy(model, seed=1)
    kept = [name for (name, new), old in zip(fresh.named_parameters(), model.parameters()) if torch.equal(new, old)]
    assert kept == []
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), untrained_copy(model, seed=1).parameters()))
