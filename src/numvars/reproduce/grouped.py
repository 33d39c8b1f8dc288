"""On a GPU, reproduce's many small jobs run as a few grouped ones.

Training runs of a GRU or LSTM that differ only in seed become one `train_group` job
(`train_group.train_group`), and the alignments that follow a finished run or group are bundled into
`das_group` jobs of up to DAS_GROUP alignments with the same fitting options (`jobs.align_runs`,
`align.das_many`). Every member writes the files its own job would write, where its own job would
write them, so either path reuses the other's results. After the graph, each member's result is put
back under the job it stands for, and the tables are assembled by `reproduce.assemble` exactly as
in the per-job path. On a CPU grouping gains nothing, and reproduce does not use it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..align.protocol import DASOptions
from ..config import from_mapping
from ..explain.runs import work
from ..jobs.cache import align_runs, das_output
from ..jobs.engine import Job, job, run_graph
from ..jobs.progress import Progress
from ..train_group import train_group
from .presets import Preset, grid
from .grid import GridDependents, assemble, train_job

RECURRENT = ("gru", "lstm")
DAS_GROUP = 64                                     # alignments per das_group job
PER_ALIGNMENT = ("seed", "program", "variable", "control", "k")   # options a das_group's members may differ in
GROUPS = ("train_group", "das_group")


def run_grouped(preset: Preset, out: Path, device: str, threads: int = 1, progress: bool | Progress = True,
                jobs: int = 1, engine: str = "local", address: str | None = None,
                planned_checkpoints: dict | None = None) -> dict[str, pd.DataFrame]:
    """`reproduce.run_jobs` with grouped jobs: the same raw tables."""
    roots = [train_job(spec, preset, out / "runs", device, threads) for spec in grid(preset)]
    expand = GridDependents(preset, device, planned_checkpoints)
    results, _ = run_graph(group_training(roots), work_grouped, GroupedDependents(expand), jobs=jobs, engine=engine,
                           address=address, threads=threads, progress=progress, desc=f"reproduce {preset.name}")
    return assemble(roots, ungroup(results), expand.grid)


def group_training(roots: list[Job]) -> list[Job]:
    """The train jobs, those of a GRU or LSTM that differ only in seed joined into train_group jobs."""
    families: dict = {}
    for j in roots:
        recurrent = j.get("spec").arch in RECURRENT
        key = tuple(kv for kv in j.get("config") if kv[0] != "seed") if recurrent else j
        families.setdefault(key, []).append(j)
    return [members[0] if len(members) == 1 else job("train_group", gpu=members[0].gpu, members=tuple(members))
            for members in families.values()]


def bundle_das(children: list[Job]) -> list[Job]:
    """The jobs following a recurrent run, its das jobs bundled by their fitting options."""
    rest, bundles = [], {}
    for j in children:
        if j.kind != "das":
            rest.append(j)
            continue
        shared = tuple(kv for kv in j.get("options") if kv[0] not in PER_ALIGNMENT)
        bundles.setdefault(shared, []).append(j)
    for members in bundles.values():
        for i in range(0, len(members), DAS_GROUP):
            part = members[i:i + DAS_GROUP]
            rest.append(part[0] if len(part) == 1 else job("das_group", gpu=part[0].gpu, members=tuple(part)))
    return rest


class GroupedDependents:
    """The jobs that follow a finished one: a group's members each expand as their own job would."""

    def __init__(self, expand: GridDependents):
        self.expand = expand

    @property
    def skipped(self) -> list:
        return self.expand.skipped

    def __call__(self, done: Job, result: dict) -> list[Job]:
        if done.kind == "train_group":
            return bundle_das([k for m, r in zip(done.get("members"), result["members"]) for k in self.expand(m, r)])
        if done.kind == "train":
            children = self.expand(done, result)
            return bundle_das(children) if done.get("spec").arch in RECURRENT else children
        if done.kind == "das_group":            # each member unfolds explain's plan as its own job would
            return [k for m, r in zip(done.get("members"), result["members"]) for k in self.expand(m, r)]
        return self.expand(done, result)


def work_grouped(j: Job) -> dict:
    """`reproduce.work`, plus the two group kinds (their result: one `members` entry per member job)."""
    members = j.get("members")
    if j.kind == "train_group":
        results = train_group([from_mapping(dict(m.get("config"))) for m in members], progress=False)
        return {"members": [{"summary": r.summary, "run_dir": str(r.run_dir)} for r in results]}
    if j.kind == "das_group":
        done = align_runs([(m.get("run_dir"), m.get("checkpoint"), DASOptions(**dict(m.get("options"))))
                           for m in members])
        return {"members": [das_output(m, summary, rdir) for m, (summary, rdir, _) in zip(members, done)]}
    return work(j)


def ungroup(results: dict[Job, dict]) -> dict[Job, dict]:
    """Each member's result under the job it stands for."""
    flat = {}
    for j, r in results.items():
        if j.kind in GROUPS:
            flat.update(zip(j.get("members"), r["members"]))
        else:
            flat[j] = r
    return flat
