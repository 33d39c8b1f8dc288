"""Resume state of a training run, stored without pickle.

`resume.safetensors` holds every tensor (model weights, Adam's moments, the random generators'
states) and, in its metadata, one JSON document with everything else (optimiser groups, scheduler,
metrics so far, epoch, elapsed time). Loading it can never run code, unlike `torch.load` of a
pickle: a run folder copied from someone else is safe to resume. Floats survive the JSON round
trip exactly, so a resumed run ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open

from . import io
from .errors import NumvarsError
from .paths import inside

FILE = "resume.safetensors"
LEGACY = "resume.pt"          # written by numvars 0.1 with pickle; never loaded
KEY = "numvars_resume"


def _split_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, rest = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, values in state["state"].items():
        rest["state"][str(index)] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt/{index}/{name}"] = value
            else:
                rest["state"][str(index)][name] = value
    return tensors, rest


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state = {int(i): dict(v) for i, v in rest["state"].items()}
    for key, value in tensors.items():
        if key.startswith("opt/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    groups = [{**g, **({"betas": tuple(g["betas"])} if "betas" in g else {})} for g in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


def save(run_dir: Path, model, opt, sched, info: dict, cuda_device=None) -> Path:
    """Write the resume state atomically; `info` is JSON (rows, epoch, elapsed, ...)."""
    opt_tensors, opt_rest = _split_optimizer(opt.state_dict())
    tensors = {**{f"model/{k}": v for k, v in model.state_dict().items()}, **opt_tensors,
               "rng/cpu": torch.get_rng_state()}
    if cuda_device is not None:
        tensors["rng/cuda"] = torch.cuda.get_rng_state(cuda_device)
    meta = {"optimizer": opt_rest, "scheduler": sched.state_dict(), **info}
    return io.save_tensors(Path(run_dir) / FILE, tensors, metadata={KEY: json.dumps(meta)})


def load(run_dir: Path, model, opt, sched, cuda_device=None) -> dict | None:
    """Restore model, optimiser, scheduler and random state; returns `info`, or None without a file."""
    run_dir = Path(run_dir)
    if (run_dir / LEGACY).exists():
        raise NumvarsError(f"{run_dir / LEGACY} is a pickle file, which numvars does not load (it could run code); "
                           f"delete it to restart the run from scratch")
    path = inside(run_dir, FILE)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[KEY])
        tensors = load_file(str(path))
        model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
        opt.load_state_dict(_join_optimizer(tensors, meta.pop("optimizer")))
        sched.load_state_dict(meta.pop("scheduler"))
        torch.set_rng_state(tensors["rng/cpu"])
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError, TypeError) as e:
        detail = " ".join(str(e).split())[:120]
        raise NumvarsError(f"{path} is unreadable ({type(e).__name__}: {detail}); delete it to restart the run") \
            from None
    if cuda_device is not None and "rng/cuda" in tensors:     # dropout draws from the GPU's generator
        torch.cuda.set_rng_state(tensors["rng/cuda"], cuda_device)
    return meta


def remove(run_dir: Path) -> None:
    (Path(run_dir) / FILE).unlink(missing_ok=True)
