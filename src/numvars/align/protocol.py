"""The options of an alignment or a full swap: one frozen dataclass each, the one place they are
named, typed, documented (`help`) and checked. The CLI's keys and the job keys are read off them."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .. import options
from ..errors import NumvarsError
from ..runtime import resolve_device

MAPS = ("orthogonal", "linear")
CONTROLS = ("untrained", "random", "identity")
MAX_PAIRS = 5_000_000


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DASOptions:
    program: str = _opt("up_down", "program whose variable is aligned (up_down, up_up, ...)")
    variable: str = _opt("count", "variable(s) to align; several as a,b take disjoint blocks")
    k: int | None = _opt(None, "aligned dimensions per variable (default d/2)")
    map: str = _opt("orthogonal", "alignment map: orthogonal or linear (general invertible)")
    site: str | None = _opt(None, "intervention site (default: state for RNNs, resid.1 for the Transformer)")
    control: str | None = _opt(None, "untrained (fresh copy), random (fixed random rotation) or identity")
    seed: int = _opt(0, "seed of the pairs and the map's initialisation")
    n_train: int = _opt(10_000, "training pairs")
    n_val: int = _opt(1_000, "validation pairs (pick the best map, stop early)")
    n_test: int = _opt(1_000, "test pairs (the reported IIA)")
    batch_size: int = _opt(512, "pairs per optimisation step")
    lr: float = _opt(3e-3, "Adam learning rate")
    max_epochs: int = _opt(50, "passes over the training pairs at most")
    patience: int = _opt(8, "stop after this many epochs without a validation-loss gain of 1e-3")
    target: float = _opt(0.995, "stop once validation IIA reaches this")
    device: str = _opt("cpu", "cpu, cuda or auto")

    def __post_init__(self):
        options.canonicalize(self)
        if self.map not in MAPS:
            raise NumvarsError(f"unknown map {self.map!r}; choose one of {', '.join(MAPS)}")
        if self.control in ("", "none"):
            object.__setattr__(self, "control", None)
        if self.control not in (None, *CONTROLS):
            raise NumvarsError(f"unknown control {self.control!r}; choose one of {', '.join(CONTROLS)}")
        for name in ("n_train", "n_val", "n_test", "batch_size"):
            options.check_range(name, getattr(self, name), 1, MAX_PAIRS)
        options.check_range("max_epochs", self.max_epochs, 1, 100_000)
        options.check_range("patience", self.patience, 1)
        options.check_range("seed", self.seed, 0)
        if self.lr <= 0:
            raise NumvarsError(f"lr={self.lr} must be > 0")
        options.check_range("target", self.target, 0.0, 1.0)
        resolve_device(self.device)

    def key(self) -> dict:
        """The options that change the result (not where it is computed)."""
        return {k: v for k, v in asdict(self).items() if k != "device"}


@dataclass(frozen=True)
class FullSwapOptions:
    site: str | None = _opt(None, "intervention site (default: state for RNNs, resid.1 for the Transformer)")
    n: int = _opt(1000, "pairs")
    seed: int = _opt(0, "seed of the pairs")
    device: str = _opt("cpu", "cpu, cuda or auto")

    def __post_init__(self):
        options.canonicalize(self)
        options.check_range("n", self.n, 1, MAX_PAIRS)
        options.check_range("seed", self.seed, 0)
        resolve_device(self.device)

    def key(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "device"}


def help_lines(cls) -> str:
    """`key (default): help` for each option, for a command's --help."""
    return "\n".join(f"  {f.name:<12} {f.metadata.get('help', '')} (default {f.default})" for f in fields(cls))
