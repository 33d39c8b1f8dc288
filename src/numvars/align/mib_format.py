"""The MIB causal-variable track's form of a fitted rotation, and our structural check of it.

MIB (the Mechanistic Interpretability Benchmark) takes, per task × model × variable, a folder
`{TASK}_{MODEL}_{VARIABLE}` holding for each model unit (a site and token position) three files:
`{unit}_featurizer` and `{unit}_inverse_featurizer` (each `torch.save` of {"model_info", "state_dict"}, the
state of a `SubspaceFeaturizerModule` / `SubspaceInverseFeaturizerModule` around one orthogonally
parametrized rotation, features f = x @ R, error = x − f Rᵀ, inverse f Rᵀ + error) and `{unit}_indices`
(one line: a JSON list of the feature indices the variable lives in, or null for all). numvars writes the
full d×d rotation and the variable's k indices, so MIB's interchange equals numvars' swap.

MIB's format is pickled (`torch.save`); `check_mib` reads it only with torch's weights-only loader, which
builds tensors and plain containers and runs no code.
"""
from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import torch
from torch import Tensor

from .. import io
from ..errors import NumvarsError
from ..paths import component
from .pyvene_format import rotation_state
from .sites import resid_layer

FEATURIZER, INVERSE = "SubspaceFeaturizerModule", "SubspaceInverseFeaturizerModule"
MODEL_CLASSES = {"gru": "GRULM", "lstm": "LSTMLM", "transformer": "TransformerLM", "hf": "GPT2LMHeadModel"}


def unit_id(site: str) -> str:
    """MIB's model-unit name of a site: residual streams by layer (MIB counts blocks from 0, so resid.L, the
    stream after L blocks, is Layer-{L-1}); others by numvars' site name. The token: the pair's position."""
    layer = resid_layer(site)
    if layer is not None and layer >= 1:
        return f"ResidualStream(Layer-{layer - 1},Token-pair_position)"
    return f"State(Site-{site},Token-pair_position)"


def _save(path: Path, obj) -> None:
    io.write_atomic(path, lambda tmp: torch.save(obj, tmp))


def write_mib(a, out: Path) -> Path:
    """One folder per variable under `out`; returns `out`."""
    state = {f"rotate.{key[len('rotate_layer.'):]}": v for key, v in rotation_state(a.matrix).items()}
    for i, variable in enumerate(a.variables):
        folder = out / component(f"{a.model.get('task', 'task')}_{MODEL_CLASSES.get(a.model.get('arch'), 'model')}"
                                 f"_{variable}")
        info = {"featurizer_class": FEATURIZER, "inverse_featurizer_class": INVERSE, "n_features": a.d,
                "additional_config": {"rotation_matrix": a.matrix.detach().float().clone(), "requires_grad": False},
                "numvars": json.dumps({**a.describe(), "variable": variable}, sort_keys=True)}
        base = folder / unit_id(a.site)
        _save(Path(f"{base}_featurizer"), {"model_info": info, "state_dict": state})
        _save(Path(f"{base}_inverse_featurizer"), {"model_info": info, "state_dict": state})
        io.write_text(Path(f"{base}_indices"), json.dumps(list(range(i * a.k, (i + 1) * a.k))) + "\n")
    return out


def _load(path: Path) -> dict:
    try:
        with warnings.catch_warnings():             # torch warns of the pickle protocol torch.save itself uses
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise NumvarsError(f"{path} is not a featurizer file torch's weights-only loader reads "
                           f"({' '.join(str(e).split())[:120]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_info"), dict) \
            or not isinstance(data.get("state_dict"), dict):
        raise NumvarsError(f"{path} lacks model_info or state_dict")
    return data


def _rotation(path: Path, data: dict, kind: str) -> Tensor:
    info = data["model_info"]
    if info.get(f"{kind}_class") != (FEATURIZER if kind == "featurizer" else INVERSE):
        raise NumvarsError(f"{path}: {kind}_class is {info.get(f'{kind}_class')!r}, not a subspace featurizer")
    r = (info.get("additional_config") or {}).get("rotation_matrix")
    n = info.get("n_features")
    if not isinstance(r, Tensor) or r.dim() != 2 or not isinstance(n, int) or r.shape[1] != n or r.shape[0] < n:
        raise NumvarsError(f"{path}: rotation_matrix must be (d, n_features) with n_features <= d")
    eye = torch.eye(n, dtype=torch.float64)
    if not torch.allclose(r.double().T @ r.double(), eye, atol=1e-4):
        raise NumvarsError(f"{path}: rotation_matrix's columns are not orthonormal")
    expected = {f"rotate.{key[len('rotate_layer.'):]}" for key in rotation_state(r).keys()}
    if set(data["state_dict"]) != expected:
        raise NumvarsError(f"{path}: state_dict keys {sorted(data['state_dict'])} are not a rotate layer's "
                           f"{sorted(expected)}")
    return r


def _indices(path: Path, n: int) -> list[int] | None:
    lines = path.read_text().splitlines() if path.is_file() else []
    if not lines:
        raise NumvarsError(f"{path} is missing or empty; it holds the variable's feature indices")
    try:
        value = json.loads(lines[0])
    except ValueError:
        raise NumvarsError(f"{path}: its first line is not a JSON list or null") from None
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(set(value)) != len(value) or \
            not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n for i in value):
        raise NumvarsError(f"{path}: indices must be distinct integers in [0, {n})")
    return value


def check_mib(folder) -> dict[str, dict]:
    """Every unit of a MIB causal-variable folder, checked: {unit: {"rotation": R, "indices": [...] | None}}."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NumvarsError(f"{folder} is not a folder")
    units = sorted(p.name[:-len("_featurizer")] for p in folder.iterdir()
                   if p.name.endswith("_featurizer") and not p.name.endswith("_inverse_featurizer"))
    if not units:
        raise NumvarsError(f"{folder} holds no *_featurizer file")
    out = {}
    for unit in units:
        base = folder / unit
        forward, inverse = _load(Path(f"{base}_featurizer")), _load(Path(f"{base}_inverse_featurizer"))
        r = _rotation(Path(f"{base}_featurizer"), forward, "featurizer")
        if not torch.equal(r, _rotation(Path(f"{base}_inverse_featurizer"), inverse, "inverse_featurizer")):
            raise NumvarsError(f"{base}: the featurizer and the inverse featurizer hold different rotations")
        out[unit] = {"rotation": r, "indices": _indices(Path(f"{base}_indices"), r.shape[1])}
    return out


def mib_interchange(rotation: Tensor, indices: list[int] | None, base: Tensor, source: Tensor) -> Tensor:
    """MIB's interchange with a subspace featurizer: the source's features at `indices` into the base's."""
    f_base, f_source = base @ rotation, source @ rotation
    error = base - f_base @ rotation.T
    cols = slice(None) if indices is None else torch.tensor(indices)
    f_base = f_base.clone()
    f_base[..., cols] = f_source[..., cols]
    return f_base @ rotation.T + error
