"""An adapter folder: `numvars adapt` writes DIR/adapter.yaml (the model's local folder, the site, the token map
and the task), and every command that takes a run folder (align, fullswap, eval, explain, align-models, export) takes DIR too,
writing its results under it as under a run. The file names a Hugging Face folder only: reading it loads
safetensors and JSON, never code; a torch module of your own is adapted in Python (`numvars.adapters.adapt`)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from .. import io, options
from ..errors import NumvarsError
from ..paths import inside
from ..tasks import Task, TaskSpec

FILE = "adapter.yaml"
VERSION = 1


@dataclass(frozen=True)
class AdaptedModel:
    """The model section of an adapter folder, named as a run config's (`arch`, `d_model`) for the commands
    that describe a run: arch "adapter", d_model the site's state size."""
    arch: str
    d_model: int
    path: str
    site: str


@dataclass(frozen=True)
class AdapterConfig:
    """An adapter folder's config, in the shape of a run's (`model`, `task`, `make_task`)."""
    model: AdaptedModel
    task: TaskSpec
    tokens: dict

    def make_task(self) -> Task:
        return Task(self.task)


def task_keys(words: dict) -> TaskSpec:
    """The task from flat keys as the command line names them (`task=single_object max_count=4 ...`)."""
    schema = {("task" if n == "name" else n): t for n, t in options.schema_of(TaskSpec).items()}
    typed = options.parse(words, schema, "adapt")
    return TaskSpec(**{("name" if k == "task" else k): v for k, v in typed.items()})


def is_adapter_folder(folder) -> bool:
    return (Path(folder) / FILE).is_file()


def write_folder(out, model_dir, site: str, tokens: dict, spec: TaskSpec) -> Path:
    """Check that the model adapts (module path, token map) before writing DIR/adapter.yaml."""
    from . import adapt
    adapted = adapt(model_dir, site, tokens, Task(spec))
    where = str(Path(model_dir).resolve()) if Path(model_dir).exists() else str(model_dir)    # a folder, or a hub id
    data = {"adapter": VERSION, "model": where, "site": site, "tokens": dict(adapted.tokens.mapping),
            "task": {f.name: (list(v) if isinstance(v := getattr(spec, f.name), tuple) else v) for f in fields(spec)}}
    io.write_yaml(Path(out) / FILE, data)
    return Path(out)


def read_folder(folder):
    """(adapted model, task, AdapterConfig) of an adapter folder."""
    from . import adapt
    data = io.read_yaml(inside(folder, FILE))
    fix = f"write it again with `numvars adapt MODEL site=... tokens=... --out {folder}`"
    if data.get("adapter") != VERSION or not all(isinstance(data.get(k), t) for k, t in
                                                 (("model", str), ("site", str), ("tokens", dict), ("task", dict))):
        raise NumvarsError(f"{folder}/{FILE} is not an adapter file of this numvars (version {VERSION}); {fix}")
    try:
        spec = TaskSpec(**data["task"])                 # its __post_init__ makes the holdouts a tuple
    except TypeError as e:
        raise NumvarsError(f"{folder}/{FILE} has an invalid task ({e}); {fix}") from None
    task = Task(spec)
    model = adapt(data["model"], data["site"], data["tokens"], task)
    return model, task, AdapterConfig(AdaptedModel("adapter", model.state_size, data["model"], data["site"]), spec,
                                      data["tokens"])

