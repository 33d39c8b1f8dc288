"""The configuration of a training run: flat keys (as typed on the command line), in sections.

`RunConfig` is one frozen dataclass; `key=value` overrides are parsed against its field types.
The run id is a stable hash of the keys that change the result (not `out`, `device`, `threads`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from .errors import NumvarsError
from .models.config import ModelConfig
from .tasks import Task, TaskSpec

TASK_KEYS = ("void_prob", "bos", "trigger", "min_count", "max_count", "holdouts")
MODEL_KEYS = ("arch", "d_model", "n_layers", "n_heads", "pos", "head_dropout")
UNHASHED = ("out", "device", "threads")


@dataclass(frozen=True)
class RunConfig:
    # the task and model defaults are TaskSpec's and ModelConfig's own, flattened for key=value use
    task: str = TaskSpec.name
    arch: str = ModelConfig.arch
    d_model: int = ModelConfig.d_model
    seed: int = 0
    # task options
    void_prob: float = TaskSpec.void_prob
    bos: bool = TaskSpec.bos
    trigger: bool = TaskSpec.trigger
    min_count: int = TaskSpec.min_count
    max_count: int = TaskSpec.max_count
    holdouts: tuple[int, ...] = TaskSpec.holdouts
    # model options
    n_layers: int = ModelConfig.n_layers
    n_heads: int = ModelConfig.n_heads
    pos: str = ModelConfig.pos
    head_dropout: float = ModelConfig.head_dropout
    # training
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr: float = 1e-7
    batch_size: int = 128
    steps_per_epoch: int = 8
    max_epochs: int = 2000
    eval_per_count: int = 15
    # where and how (not part of the run id)
    out: str = "runs"
    device: str = "auto"
    threads: int = 1

    def __post_init__(self):
        if self.seed < 0:
            raise NumvarsError(f"seed={self.seed} must be >= 0")
        for name in ("batch_size", "steps_per_epoch", "max_epochs", "eval_per_count", "threads"):
            if getattr(self, name) < 1:
                raise NumvarsError(f"{name}={getattr(self, name)} must be >= 1")
        if self.lr <= 0 or self.min_lr < 0 or self.warmup_steps < 0:
            raise NumvarsError("lr must be > 0, min_lr and warmup_steps >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise NumvarsError(f"device={self.device!r}; choose cpu, cuda or auto")
        # canonical values, so equal configs hash to one run id (void_prob=0 and 0.0, holdouts [9, 4] and (4, 9))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
            elif f.type == "bool" and not isinstance(value, bool) and value in (0, 1):
                object.__setattr__(self, f.name, bool(value))
        object.__setattr__(self, "holdouts", tuple(sorted({int(h) for h in self.holdouts})))
        self.task_spec(), self.model_config()      # validate the sections now, with their own messages

    def task_spec(self) -> TaskSpec:
        return TaskSpec(name=self.task, **{k: getattr(self, k) for k in TASK_KEYS})

    def make_task(self) -> Task:
        return Task(self.task_spec())

    def model_config(self) -> ModelConfig:
        vocab = Task(self.task_spec()).vocab_size
        return ModelConfig(vocab_size=vocab, **{k: getattr(self, k) for k in MODEL_KEYS})

    def run_id(self) -> str:
        keys = {k: v for k, v in asdict(self).items() if k not in UNHASHED}
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:10]

    def run_name(self) -> str:
        return f"{self.task}-{self.arch}-d{self.d_model}-s{self.seed}-{self.run_id()}"

    def sections(self) -> dict:
        """The resolved config as written to config.yaml."""
        d = asdict(self)
        return {"run_id": self.run_id(),
                "task": {"name": self.task, **{k: (list(d[k]) if k == "holdouts" else d[k]) for k in TASK_KEYS}},
                "model": self.model_config().to_dict(),
                "train": {k: d[k] for k in d if k not in TASK_KEYS + MODEL_KEYS + ("task", "arch")}}

    @classmethod
    def from_sections(cls, sec: dict) -> "RunConfig":
        try:
            task = dict(sec.get("task", {}))
            flat = {"task": task.pop("name", "multi_object"), **task, **sec.get("train", {})}
            flat.update({k: v for k, v in sec.get("model", {}).items() if k in MODEL_KEYS})
        except (TypeError, ValueError, AttributeError):
            raise NumvarsError("config.yaml needs mappings under task, model and train; retrain the run") from None
        return from_mapping(flat)


def parse_value(field_type, key: str, raw):
    """Parse a command-line string into the type of a config field."""
    if not isinstance(raw, str):
        return tuple(raw) if "tuple" in str(field_type) else raw
    try:
        if field_type in (int, "int"):
            return int(raw)
        if field_type in (float, "float"):
            return float(raw)
        if field_type in (bool, "bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if "tuple" in str(field_type):
            return tuple(int(x) for x in raw.strip("[]() ").replace(",", " ").split())   # 4,9 or [4, 9] or ""
    except ValueError:
        raise NumvarsError(f"cannot read {key}={raw!r} as {getattr(field_type, '__name__', field_type)}") from None
    return raw


def from_mapping(values: dict, base: RunConfig | None = None) -> RunConfig:
    """A RunConfig from a mapping of keys to values (strings are parsed); unknown keys are errors."""
    known = {f.name: f.type for f in fields(RunConfig)}
    for key in values:
        if key not in known:
            raise NumvarsError(f"unknown config key {key!r}; known keys: {', '.join(known)}")
    current = asdict(base) if base else {}
    current.update({k: parse_value(known[k], k, v) for k, v in values.items()})
    return RunConfig(**current)


def parse_typed(values: dict, schema: dict[str, type], what: str) -> dict:
    """Check keys against a {key: type} schema and convert string values; one-line errors."""
    out = {}
    for key, raw in values.items():
        if key not in schema:
            raise NumvarsError(f"unknown {what} key {key!r}; known keys: {', '.join(schema)}")
        try:
            out[key] = schema[key](raw)
        except ValueError:
            raise NumvarsError(f"cannot read {key}={raw!r} as {schema[key].__name__}") from None
    return out


def parse_overrides(args: list[str]) -> dict[str, str]:
    """['a=1', 'b=x'] → {'a': '1', 'b': 'x'}, with a clear error for anything else."""
    out = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise NumvarsError(f"expected key=value, got {arg!r}")
        out[key.strip()] = value.strip()
    return out
