"""Where computation runs: the torch device and the number of CPU threads."""
from __future__ import annotations

import torch

from .errors import NumvarsError


def check_device(name: str) -> str:
    """The device grammar: cpu, cuda, cuda:N or auto; anything else is a one-line error. (Whether a GPU is
    there is `resolve_device`'s question: a saved config may name one this machine lacks.)"""
    head, _, index = str(name).partition(":")
    if name in ("auto", "cpu") or (head == "cuda" and (not index or index.isdigit())):
        return str(name)
    raise NumvarsError(f"device={name!r}; choose cpu, cuda (or cuda:N) or auto")


def resolve_device(name: str | torch.device) -> torch.device:
    """cpu, cuda, cuda:N, or auto (cuda when a GPU is visible); a one-line error otherwise."""
    name = check_device(str(name))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    head, _, index = name.partition(":")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise NumvarsError(f"device={name} but no CUDA GPU is visible; use device=cpu")
    if index and int(index) >= torch.cuda.device_count():
        raise NumvarsError(f"device={name} but only {torch.cuda.device_count()} GPU(s) are visible")
    return torch.device(name)


def setup_threads(threads: int, device: torch.device | str = "cpu") -> None:
    """Tiny models are fastest and steadiest on one CPU thread; more were measured to be erratic."""
    if torch.device(device).type == "cpu" and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
