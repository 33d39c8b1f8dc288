"""Exports of a fitted alignment, for the field's own tools: `export(align_dir, to)`.

Every format carries what is needed to apply the map without numvars' folders: the model (its run folder,
architecture, state size), the site (and its TransformerLens hook name), k, the map kind, the variables
and their blocks, the dtype and the protocol. The map convention is the same everywhere (and pyvene's): a
state x (.., d) has aligned coordinates x @ R, R (d, d); variable i takes aligned dims [i·k, (i+1)·k).

- `safetensors`: one file, the matrix and the masks as tensors and the description as string metadata;
  read back with `read_export`.
- `pyvene`: a `RotatedSpaceIntervention` state (safetensors, no pickle) and its config; `pyvene_format`.
- `mib`: the MIB causal-variable submission layout (featurizer, inverse featurizer, indices); `mib_format`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from safetensors import SafetensorError, safe_open
from torch import Tensor

from .. import io
from ..adapters.folder import FILE as ADAPTER_FILE, is_adapter_folder
from ..errors import NumvarsError
from ..loaders import read_alignment_matrix
from ..paths import inside
from .maps import ROTATIONS, block_masks
from .sites import hook_name

FORMATS = ("safetensors", "pyvene", "mib")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ExportedAlignment:
    """A fitted alignment and everything needed to apply it."""
    matrix: Tensor                  # (d, d): aligned coordinates are x @ matrix
    masks: Tensor                   # (variables, d): 1 where a variable's aligned dims lie
    site: str
    k: int
    map: str
    program: str
    variables: list[str]
    model: dict = field(default_factory=dict)     # run folder, its name, arch, d_model, task
    hook: str | None = None         # the site's TransformerLens hook name, if it has one
    protocol: int = 0
    dtype: str = "float32"
    iia: float | None = None
    iia_free: float | None = None
    format_version: int = FORMAT_VERSION

    @property
    def d(self) -> int:
        return int(self.matrix.shape[0])

    def describe(self) -> dict:
        """Everything but the tensors, as JSON-able values."""
        out = asdict(self)
        out.pop("matrix"), out.pop("masks")
        return {**out, "d": self.d, "convention": "aligned = x @ matrix; variable i swaps aligned dims "
                                                  "[i*k, (i+1)*k); inverse: matrix.T (rotations) or a solve (linear)"}

    def intervention(self, model, device="cpu"):
        """The alignment as a numvars `Intervention` on `model` (the same model, or one with the same site)."""
        from .intervention import Intervention
        return Intervention.fitted(model, self.site, self.map, self.matrix, self.k, len(self.variables), device)


def _fail(align_dir, why: str) -> NumvarsError:
    return NumvarsError(f"{align_dir} is not an alignment numvars can export ({why}); give a folder under "
                        f"RUN/align/ made by `numvars align`")


def _model_of(align_dir: Path) -> dict:
    """The run an alignment folder sits in (RUN/align/<job>/): its path, name, architecture and task."""
    run_dir = align_dir.resolve().parent.parent
    if is_adapter_folder(run_dir):                     # a model adapted through nnsight (`numvars adapt`)
        try:
            data = io.read_yaml(inside(run_dir, ADAPTER_FILE))
        except NumvarsError:
            return {"run_dir": str(run_dir)}
        return {"run_dir": str(run_dir), "arch": "adapter", "model_dir": str(data.get("model")),
                "module": str(data.get("site")), "tokens": data.get("tokens"),
                "task": str((data.get("task") or {}).get("name"))}
    try:
        config = io.read_yaml(inside(run_dir, "config.yaml"))
    except NumvarsError:
        return {"run_dir": str(run_dir)}
    model, task = config.get("model") or {}, config.get("task") or {}
    return {"run_dir": str(run_dir), "run_name": run_dir.name, "arch": str(model.get("arch")),
            "d_model": model.get("d_model"), "n_layers": model.get("n_layers"), "task": str(task.get("name"))}


def read_alignment(align_dir) -> ExportedAlignment:
    """A saved alignment (result.json, alignment.safetensors), checked, with its model's description."""
    align_dir = Path(align_dir)
    if not align_dir.is_dir():
        raise NumvarsError(f"{align_dir} is not a folder; give an alignment folder (RUN/align/das-...)")
    s = io.read_json(inside(align_dir, "result.json"))
    if not isinstance(s, dict):
        raise _fail(align_dir, "result.json does not hold a mapping")
    for key, kind in (("site", str), ("map", str), ("k", int), ("variables", list), ("program", str)):
        if not isinstance(s.get(key), kind) or isinstance(s.get(key), bool):
            raise _fail(align_dir, f"result.json has no valid {key!r}")
    try:
        matrix = read_alignment_matrix(align_dir)
    except NumvarsError as e:
        raise _fail(align_dir, str(e).split(";")[0]) from None
    d, variables = matrix.shape[0], [str(v) for v in s["variables"]]
    masks = block_masks(d, s["k"], len(variables))
    return ExportedAlignment(matrix=matrix, masks=masks, site=s["site"], k=s["k"], map=s["map"], program=s["program"],
                             variables=variables, model=_model_of(align_dir), hook=hook_name(s["site"]),
                             protocol=int(s.get("protocol", 0)), dtype=str(matrix.dtype).replace("torch.", ""),
                             iia=s.get("iia"), iia_free=s.get("iia_free"))


def export(align_dir, to: str, out=None) -> Path:
    """Write the alignment in `align_dir` in format `to` (safetensors, pyvene, mib) to `out` (default:
    ALIGN_DIR/export/<format>); returns the path written (a file for safetensors, else a folder)."""
    if to not in FORMATS:
        raise NumvarsError(f"unknown export format {to!r}; choose one of {', '.join(FORMATS)}")
    a = read_alignment(align_dir)
    out = Path(out) if out is not None else Path(align_dir) / "export" / to
    if to == "safetensors":
        return write_safetensors(a, out if out.suffix == ".safetensors" else out / "alignment.safetensors")
    if a.map not in ROTATIONS:
        raise NumvarsError(f"{to} holds rotations (orthogonal maps), and this alignment's map is {a.map!r}; "
                           f"export it with --to safetensors")
    if to == "pyvene":
        from .pyvene_format import write_pyvene
        return write_pyvene(a, out)
    from .mib_format import write_mib
    return write_mib(a, out)


def write_safetensors(a: ExportedAlignment, path: Path) -> Path:
    meta = {"format": "numvars-alignment", "description": json.dumps(a.describe(), sort_keys=True)}
    return io.save_tensors(path, {"matrix": a.matrix, "masks": a.masks}, metadata=meta)


def read_export(path) -> ExportedAlignment:
    """An alignment written by `export(..., to="safetensors")`, checked."""
    path = Path(path)
    if not path.is_file():
        raise NumvarsError(f"{path} is missing; write it with `numvars export ALIGN_DIR --to safetensors`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta, tensors = f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise NumvarsError(f"{path} is not a safetensors file ({str(e).splitlines()[0][:120]})") from None
    if meta.get("format") != "numvars-alignment" or set(tensors) != {"matrix", "masks"}:
        raise NumvarsError(f"{path} is not an alignment exported by numvars (no numvars-alignment metadata)")
    try:
        info = json.loads(meta["description"])
        info.pop("d"), info.pop("convention")
        a = ExportedAlignment(matrix=tensors["matrix"], masks=tensors["masks"], **info)
    except (KeyError, TypeError, ValueError) as e:
        raise NumvarsError(f"{path} has an unreadable description ({type(e).__name__}); export it again") from None
    if a.format_version != FORMAT_VERSION:
        raise NumvarsError(f"{path} is export format {a.format_version}; this numvars reads {FORMAT_VERSION}")
    if a.matrix.shape != (a.d, a.d) or a.masks.shape != (len(a.variables), a.d):
        raise NumvarsError(f"{path} holds tensors of the wrong shapes; export it again")
    return a
