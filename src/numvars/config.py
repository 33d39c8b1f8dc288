"""The configuration of a training run: a task, a model and a training section, plus where and how.

Each section is its own frozen dataclass (`TaskSpec`, `ModelConfig`, `TrainConfig`); `RunConfig`
holds one of each. On the command line every key is flat (`d_model=20 lr=1e-3`) and is routed to
the section whose dataclass has that field, so the list of keys is generated from the dataclasses
and never written out by hand. The run id is a stable hash of every key that changes the result
(not `out`, `device`, `threads`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

from . import options, paths, versions
from .device import check_device
from .options import opt
from .errors import NumvarsError
from .models.config import ModelConfig
from .tasks import Task, TaskSpec

MAX_THREADS = 1024
INPUTS = ("teacher", "model")


@dataclass(frozen=True)
class TrainConfig:
    """Training: next-token prediction, Adam, warm-up then inverse-square-root decay."""

    seed: int = opt(0, "seed of the weights, the samples and dropout")
    lr: float = opt(1e-3, "peak Adam learning rate")
    warmup_steps: int = opt(100, "steps of linear warm-up to lr")
    min_lr: float = opt(1e-7, "floor of the decayed learning rate")
    batch_size: int = opt(128, "sequences per step")
    steps_per_epoch: int = opt(8, "steps per epoch (8 × 128 ≈ 1,000 sequences)")
    max_epochs: int = opt(2000, "epoch budget")
    eval_per_count: int = opt(15, "evaluation trials per count (all must be right: the criterion)")
    extra_epochs: int = opt(0, "after the criterion, train this many more epochs (0: stop at the criterion)")
    plateau: int = opt(0, "after the criterion, train on until the validation loss has not improved for "
                          "this many epochs (0: off)")
    train_set: int = opt(0, "0: fresh samples every step; N: one fixed training set of N sequences")
    inputs: str = opt("teacher", "inputs at response positions: teacher (the true tokens) or model (the "
                                 "model's own greedy predictions)")

    def __post_init__(self):
        options.canonicalize(self)
        options.check_range("extra_epochs", self.extra_epochs, 0, 1_000_000)
        options.check_range("plateau", self.plateau, 0, 1_000_000)
        options.check_range("train_set", self.train_set, 0, 10_000_000)
        if self.extra_epochs and self.plateau:
            raise NumvarsError("give extra_epochs or plateau, not both: after the criterion train a fixed number of "
                               "epochs, or until the validation loss stops improving")
        if self.inputs not in INPUTS:
            raise NumvarsError(f"unknown inputs {self.inputs!r}; choose teacher (the true tokens) or model (the "
                               "model's own predictions at response positions)")
        options.check_seed("seed", self.seed)
        options.check_range("batch_size", self.batch_size, 1, 65_536, "larger batches do not fit in memory")
        options.check_range("steps_per_epoch", self.steps_per_epoch, 1, 100_000)
        options.check_range("max_epochs", self.max_epochs, 1, 1_000_000)
        options.check_range("eval_per_count", self.eval_per_count, 1, 10_000)
        options.check_range("warmup_steps", self.warmup_steps, 0, 10_000_000)
        if self.lr <= 0 or self.min_lr < 0:
            raise NumvarsError(f"lr={self.lr} must be > 0 and min_lr={self.min_lr} >= 0")
        if self.min_lr > self.lr:
            raise NumvarsError(f"min_lr={self.min_lr} is above lr={self.lr}; the decayed rate is floored at min_lr, "
                               "so it must be at most lr")


@dataclass(frozen=True)
class Placement:
    """Where a run is written and how it is computed; none of it changes the result or the run id."""

    out: str = opt("runs", "folder the run directory is written in")
    device: str = opt("auto", "cpu, cuda (cuda:N) or auto")
    threads: int = opt(1, "torch threads on a CPU (tiny models: 1 is fastest and steadiest)")

    def __post_init__(self):
        options.canonicalize(self)
        if not self.out.strip():
            raise NumvarsError("out= is empty; name a folder, e.g. out=runs")
        paths.check_length(self.out, "out")
        check_device(self.device)
        options.check_range("threads", self.threads, 1, MAX_THREADS)


CRITERION = 0.9999      # trial accuracy that counts as solving the task (every evaluation trial right)

# flat key -> (section, field); the task's `name` is typed as `task`, the model's vocabulary is derived
SECTIONS = {"task": TaskSpec, "model": ModelConfig, "train": TrainConfig, "placement": Placement}
RENAMED = {("task", "name"): "task"}
DERIVED = {("model", "vocab_size")}
KEYS: dict[str, tuple[str, str]] = {
    RENAMED.get((section, name), name): (section, name)
    for section, cls in SECTIONS.items() for name in options.schema_of(cls) if (section, name) not in DERIVED}
UNHASHED = tuple(options.schema_of(Placement))


@dataclass(frozen=True)
class RunConfig:
    task: TaskSpec = field(default_factory=TaskSpec)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    placement: Placement = field(default_factory=Placement)

    def __post_init__(self):
        vocab = Task(self.task).vocab_size
        if self.model.vocab_size != vocab:
            object.__setattr__(self, "model", replace(self.model, vocab_size=vocab))

    @property
    def seed(self) -> int:
        return self.train.seed

    def make_task(self) -> Task:
        return Task(self.task)

    def flat(self) -> dict:
        """Every key as typed on the command line."""
        return {key: getattr(getattr(self, section), name) for key, (section, name) in KEYS.items()}

    def run_id(self) -> str:
        keys = {**{k: v for k, v in self.flat().items() if k not in UNHASHED}, "protocol": versions.current("train")}
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:10]

    def run_name(self) -> str:
        return f"{self.task.name}-{self.model.arch}-d{self.model.d_model}-s{self.seed}-{self.run_id()}"

    def sections(self) -> dict:
        """The resolved config as written to config.yaml."""
        task = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.task).items()}
        return {"run_id": self.run_id(), "protocol": versions.current("train"), "task": task, "model": asdict(self.model),
                "train": {**asdict(self.train), **asdict(self.placement)}}

    @classmethod
    def from_sections(cls, sec: dict) -> "RunConfig":
        """A RunConfig from config.yaml's sections (as written by `sections`)."""
        try:
            task = dict(sec.get("task", {}))
            flat = {"task": task.pop("name", TaskSpec.name), **task, **sec.get("train", {})}
            flat.update({k: v for k, v in sec.get("model", {}).items() if k in KEYS})
        except (TypeError, ValueError, AttributeError):
            raise NumvarsError("config.yaml needs mappings under task, model and train; retrain the run") from None
        return from_mapping(flat)


def from_mapping(values: dict, base: RunConfig | None = None) -> RunConfig:
    """A RunConfig from flat keys (strings are parsed); unknown keys are errors."""
    typed = options.parse(values, {k: options.schema_of(SECTIONS[s])[n] for k, (s, n) in KEYS.items()}, "config")
    current = (base or RunConfig()).flat()
    current.update(typed)
    parts = {section: {} for section in SECTIONS}
    for key, value in current.items():
        section, name = KEYS[key]
        parts[section][name] = value
    return RunConfig(**{section: SECTIONS[section](**kw) for section, kw in parts.items()})
