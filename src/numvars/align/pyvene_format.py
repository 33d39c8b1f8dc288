"""pyvene's form of a fitted rotation: a `RotatedSpaceIntervention` state, and our loader for it.

pyvene's own `IntervenableModel.load` rebuilds the model it was saved with and fails on models it does not
know (numvars' own), and it reads pickles; so the state is written as safetensors with a JSON config, and
`load_pyvene(folder)` returns a ready `pyvene.RotatedSpaceIntervention` (pyvene: the `pyvene` extra):

    iv = load_pyvene(folder)
    b_new = iv(base, source)                       # (N, d) states: the same swap as numvars'

`iv.interchange_dim` is k, the first variable's block; a multi-variable alignment also sets pyvene's
`subspace_partition`, one block per variable (`iv(base, source, subspaces=[[i]] * N)` swaps variable i).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from .. import io
from ..errors import NumvarsError
from .sites import resid_layer

STATE, CONFIG = "intervention.safetensors", "config.json"
INTERVENTION = "RotatedSpaceIntervention"


def rotation_state(matrix: Tensor) -> dict[str, Tensor]:
    """The state dict of an orthogonally parametrized d×d weight equal to `matrix` (pyvene's rotate_layer)."""
    layer = nn.Linear(matrix.shape[0], matrix.shape[1], bias=False)
    parametrizations.orthogonal(layer)
    with torch.no_grad():
        layer.weight = matrix.to(torch.float32)
    return {f"rotate_layer.{key}": value.detach().clone() for key, value in layer.state_dict().items()}


def module_path(a) -> str | None:
    """The torch module whose output is the site, in numvars' own models (for pyvene's representation config)."""
    arch, layer = a.model.get("arch"), resid_layer(a.site)
    if arch == "transformer" and layer is not None:
        return "embed" if layer == 0 else f"blocks.{layer - 1}"
    if arch == "hf" and layer is not None:              # in RUN/hf as transformers loads it (GPT2LMHeadModel)
        return "transformer.drop" if layer == 0 else f"transformer.h.{layer - 1}"
    if arch == "adapter":
        return a.model.get("module")
    return "rnn" if arch == "gru" else None


def pyvene_component(a) -> dict:
    """pyvene's own name of the site, where pyvene knows the model: a GPT-2's block output at a layer."""
    layer = resid_layer(a.site)
    if a.model.get("arch") == "hf" and layer:
        return {"pyvene_layer": layer - 1, "pyvene_component": "block_output"}
    return {}


def write_pyvene(a, out: Path) -> Path:
    d, k = a.d, a.k
    state = {"embed_dim": torch.tensor(d), "interchange_dim": torch.tensor(k), **rotation_state(a.matrix)}
    partition = [[i * k, (i + 1) * k] for i in range(len(a.variables))]     # pyvene's [start, end) blocks
    config = {"intervention_type": INTERVENTION, "embed_dim": d, "interchange_dim": k,
              "subspace_partition": partition if len(partition) > 1 else None,
              "representation": {"module": module_path(a), "hook": "output", "unit": "pos",
                                 **pyvene_component(a),
                                 "note": "swap at one position of the base (t) from one of the source (u)"},
              "numvars": a.describe()}
    io.save_tensors(out / STATE, state, metadata={"format": "numvars-pyvene"})
    io.write_json(out / CONFIG, config)
    return out


def _read(folder: Path) -> tuple[dict, dict[str, Tensor]]:
    config = io.read_json(folder / CONFIG)
    if not isinstance(config, dict) or config.get("intervention_type") != INTERVENTION:
        raise NumvarsError(f"{folder}/{CONFIG} is not a pyvene export of numvars; write it with "
                           f"`numvars export ALIGN_DIR --to pyvene`")
    d, k = config.get("embed_dim"), config.get("interchange_dim")
    if not (isinstance(d, int) and isinstance(k, int) and 1 <= k <= d):
        raise NumvarsError(f"{folder}/{CONFIG} has an invalid embed_dim or interchange_dim; export it again")
    state = io.load_tensors(folder / STATE, "pyvene state",
                            "export it again with `numvars export ALIGN_DIR --to pyvene`")
    return config, state


def load_pyvene(folder):
    """The exported alignment as a `pyvene.RotatedSpaceIntervention` (eval mode, no gradients)."""
    try:
        import pyvene
    except ImportError:
        raise NumvarsError("loading a pyvene export needs pyvene: pip install 'numvars[pyvene]'") from None
    folder = Path(folder)
    config, state = _read(folder)
    partition = config.get("subspace_partition")
    iv = pyvene.RotatedSpaceIntervention(embed_dim=config["embed_dim"], subspace_partition=partition)
    iv.set_interchange_dim(config["interchange_dim"])
    try:
        iv.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise NumvarsError(f"{folder}/{STATE} does not fit a RotatedSpaceIntervention of size "
                           f"{config['embed_dim']} ({' '.join(str(e).split())[:160]}); export it again") from None
    return iv.eval().requires_grad_(False)
