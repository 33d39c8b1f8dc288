"""Reproducing the paper: the presets (`presets`), the jobs of a preset and their tables (`run`), the plan
and estimate before anything runs (`plan`), and the grouped jobs of a GPU (`grouped`)."""
from .presets import PRESETS, Preset, RunSpec, grid
from .run import get_preset, reproduce

__all__ = ["PRESETS", "Preset", "RunSpec", "get_preset", "grid", "reproduce"]
