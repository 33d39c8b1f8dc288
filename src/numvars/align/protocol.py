"""The options of every intervention: DAS, the full swap, the attention test and cross-model alignment. One
frozen dataclass each, the one place they are named, typed, documented (`help`), defaulted and checked; the
command line parses its words into one once (`options.from_words`), the core takes it as it is, and the job
cache keys results by its `key()`."""
from __future__ import annotations

from dataclasses import dataclass, fields

from .. import options
from ..errors import NumvarsError

from ..device import resolve_device
from ..programs.sampling import MATCHES, POSITIONS

MAPS = ("orthogonal", "linear")
CONTROLS = ("untrained", "random", "identity")
PAIR_COUNTS = ("all", "train")
DEMO_RULES = ("extra", "target", "random")
LOSS_ON = ("scored", "all")
INITS = ("random", "probe")
SCHEDULES = ("constant", "cosine")
MAX_PAIRS = 5_000_000


# How each map is fitted unless told otherwise. An orthogonal map started from the probe's subspace
# reaches the IIA of 50 epochs at lr 3e-3 in 6 epochs at lr 5e-2 with a cosine decay
# (benchmarks/das_convergence.py). A general linear map needs more steps, which small batches give
# cheaply (the continuation's token loop costs the same at any batch): from the same start, 4 epochs of
# batches of 64 at lr 5e-2 with a cosine decay reach the test IIA of up to 50 epochs of batches of 512
# at lr 3e-3 (constant) in under a quarter of the time, about what the rotation takes
# (benchmarks/linear_fit.py).
FITTING = {"orthogonal": {"lr": 5e-2, "schedule": "cosine", "max_epochs": 6, "batch_size": 512},
           "linear": {"lr": 5e-2, "schedule": "cosine", "max_epochs": 4, "batch_size": 64}}

# The version of each map's fit, part of its job keys when not 1: a fit whose defaults change gets a
# new version, so its cached results are recomputed while those of the other maps stay valid (a
# change for every map bumps numvars.PROTOCOL instead). Linear 2: the schedule above, from 50 slow
# epochs.
FIT_VERSION = {"orthogonal": 1, "linear": 2}


def _non_default(o) -> dict:
    defaults = {f.name: f.default for f in fields(o)}
    defaults.update(FITTING.get(getattr(o, "map", None), {}))
    return {f.name: getattr(o, f.name) for f in fields(o) if f.name != "device" and getattr(o, f.name) != defaults[f.name]}


_opt = options.opt


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
    batch_size: int | None = _opt(None, "pairs per optimisation step (default: 512 for an orthogonal map, 64 for "
                                        "a linear one)")
    lr: float | None = _opt(None, "Adam learning rate (default: 5e-2 for either map)")
    max_epochs: int | None = _opt(None, "passes over the training pairs at most (default: 6 orthogonal, 4 linear)")
    patience: int = _opt(8, "stop after this many epochs without a validation-loss gain of 1e-3")
    target: float = _opt(0.995, "stop once validation IIA reaches this")
    max_steps: int | None = _opt(None, "stop after this many optimisation steps (overrides max_epochs; "
                                       "e.g. 20000 with batch_size=128, the authors' code)")
    positions: str = _opt("all", "where t and u are drawn: all (every non-BOS/EOS/PAD position, the paper's "
                                 "text) or tokens (demo and response tokens only, the authors' code)")
    pair_counts: str = _opt("all", "counts of the pairs' sequences: all (the task's whole range) or train "
                                   "(without the held-out counts)")
    demo_rule: str = _opt("extra", "how a base left in the demo phase continues: extra (0..max_extra_demo more "
                                   "demo tokens, the paper's text), target (until the swapped count reaches "
                                   "the base's own count) or random (until a random target, the authors' code)")
    max_extra_demo: int = _opt(3, "most extra demo tokens under demo_rule=extra")
    loss_on: str = _opt("scored", "DAS loss on the scored tokens only, or on all continuation tokens")
    schedule: str | None = _opt(None, "learning rate over the run: constant, or cosine (decays to 0 over "
                                      "max_epochs, or max_steps) (default: cosine for either map)")
    init: str = _opt("probe", "the map's starting point: probe (the subspace a least-squares probe reads the "
                              "variable from, then principal components) or random (a random rotation)")
    device: str = _opt("cpu", "cpu, cuda or auto")

    def __post_init__(self):
        options.canonicalize(self)
        options.check_choice("map", self.map, MAPS)
        for name, value in FITTING[self.map].items():          # the map's own defaults where none is given
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        options.check_choice("positions", self.positions, POSITIONS)
        options.check_choice("pair_counts", self.pair_counts, PAIR_COUNTS)
        options.check_choice("demo_rule", self.demo_rule, DEMO_RULES)
        options.check_choice("loss_on", self.loss_on, LOSS_ON)
        options.check_choice("init", self.init, INITS)
        options.check_choice("schedule", self.schedule, SCHEDULES)
        options.check_range("max_extra_demo", self.max_extra_demo, 0, 1000)
        if self.max_steps is not None:
            options.check_range("max_steps", self.max_steps, 1, 10_000_000)
        if self.control in ("", "none"):
            object.__setattr__(self, "control", None)
        if self.control not in (None, *CONTROLS):
            raise NumvarsError(f"unknown control {self.control!r}; choose one of {', '.join(CONTROLS)}")
        for name in ("n_train", "n_val", "n_test", "batch_size"):
            options.check_range(name, getattr(self, name), 1, MAX_PAIRS)
        options.check_range("max_epochs", self.max_epochs, 1, 100_000)
        options.check_range("patience", self.patience, 1, 100_000)
        options.check_seed("seed", self.seed)
        if self.lr <= 0:
            raise NumvarsError(f"lr={self.lr} must be > 0")
        options.check_range("target", self.target, 0.0, 1.0)
        resolve_device(self.device)

    def given(self) -> dict:
        """The options that differ from their defaults (not where it is computed): these options again, in
        the fewest words (how jobs carry them)."""
        return _non_default(self)

    def key(self) -> dict:
        """The cache key: the options that change the result and differ from their defaults, and the fitted
        map's FIT_VERSION unless it is 1. A new option added at its default leaves existing job keys, and so
        cached results, as they were; a changed default of one map's fit bumps its FIT_VERSION, of every
        alignment numvars.PROTOCOL."""
        fitted = self.control not in ("random", "identity")        # the fixed controls fit nothing
        version = FIT_VERSION[self.map] if fitted else 1
        return {**self.given(), **({"fit": version} if version != 1 else {})}


@dataclass(frozen=True)
class FullSwapOptions:
    site: str | None = _opt(None, "intervention site (default: state for RNNs, resid.1 for the Transformer)")
    n: int = _opt(1000, "pairs")
    seed: int = _opt(0, "seed of the pairs")
    match: str = _opt("phase", "source positions in the base's program phase, or of the same role (phase | role: "
                               "a trigger only with a trigger; a Transformer's stream also says which token "
                               "sits there)")
    positions: str = _opt("all", "all (every non-BOS/EOS/PAD position) or tokens (demo and response tokens)")
    control: str | None = _opt(None, "untrained: swap in a freshly initialised copy of the model instead")
    programs: str = _opt("ctx_distributed,up_down", "programs whose predictions the swapped continuations are "
                                                    "scored against, comma-separated (the first is the headline)")
    device: str = _opt("cpu", "cpu, cuda or auto")

    def __post_init__(self):
        if isinstance(self.programs, (list, tuple)):
            object.__setattr__(self, "programs", ",".join(self.programs))
        options.canonicalize(self)
        options.check_choice("match", self.match, MATCHES)
        if self.control in ("", "none"):
            object.__setattr__(self, "control", None)
        if self.control not in (None, "untrained"):
            raise NumvarsError(f"unknown control {self.control!r} for a full swap; choose untrained")
        options.check_choice("positions", self.positions, POSITIONS)
        options.check_range("n", self.n, 1, MAX_PAIRS)
        options.check_seed("seed", self.seed)
        resolve_device(self.device)

    def key(self) -> dict:
        return _non_default(self)


MAX_ATTENTION_TRIALS = 10_000     # each trial's attention scores (L × L per head and layer) are held at once


@dataclass(frozen=True)
class AttentionOptions:
    """The options of the attention test (`align.attention.attention_test`, `numvars attention`)."""
    n: int = _opt(300, "trials")
    seed: int = _opt(0, "seed of the trials and of the demo token each edit adds or removes")
    layers: tuple[int, ...] | None = _opt(None, "blocks whose attention is edited, e.g. 0,1 (default: all)")
    device: str = _opt("cpu", "cpu, cuda or auto")

    def __post_init__(self):
        options.canonicalize(self)
        options.check_range("n", self.n, 1, MAX_ATTENTION_TRIALS, "every trial is generated at once")
        options.check_seed("seed", self.seed)
        resolve_device(self.device)

    def key(self) -> dict:
        """The cache key (as it always was: n and seed always, the layers when given)."""
        return {"n": self.n, "seed": self.seed, **({"layers": list(self.layers)} if self.layers is not None else {})}


@dataclass(frozen=True)
class AlignModelsOptions:
    """The options of a cross-model alignment (`align.align_models.align_models`, `numvars align-models`)."""
    program: str = _opt("up_down", "program whose variable is aligned")
    variable: str = _opt("count", "the one variable aligned between the two models")
    k: int | None = _opt(None, "aligned dimensions (default d/2 of the smaller state)")
    map: str = _opt("orthogonal", "alignment map: orthogonal or linear")
    seed: int = _opt(0, "seed of the pairs and the maps")
    n_train: int = _opt(5000, "training pairs")
    n_val: int = _opt(500, "validation pairs")
    n_test: int = _opt(1000, "test pairs")
    max_epochs: int = _opt(30, "passes over the training pairs at most")
    within: bool = _opt(True, "also train each map on its own model")
    init: str = _opt("probe", "probe or random")
    device: str = _opt("cpu", "cpu, cuda or auto")

    def __post_init__(self):
        options.canonicalize(self)
        if "," in self.variable:
            raise NumvarsError(f"variable={self.variable!r}: align-models aligns one variable at a time")
        options.check_choice("map", self.map, MAPS)
        options.check_choice("init", self.init, INITS)
        options.check_seed("seed", self.seed)
        for name in ("n_train", "n_val", "n_test"):
            options.check_range(name, getattr(self, name), 1, MAX_PAIRS)
        options.check_range("max_epochs", self.max_epochs, 1, 100_000)
        resolve_device(self.device)

    def key(self) -> dict:
        return _non_default(self)
