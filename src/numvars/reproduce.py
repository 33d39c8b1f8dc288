"""The experiment grid: presets, idempotent jobs, and the raw tables they produce.

`reproduce(preset)` trains every run of the grid, evaluates it, aligns it, and collects the raw
tables under RESULTS/tables/; `numvars.analysis` and `numvars.report` then build the figures and
the HTML page. Every job is idempotent: finished runs and alignments are found on disk and
reused, an interrupted training run resumes, so a killed reproduction picks up where it stopped
and ends with the same tables.
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import __version__, io
from .config import from_mapping
from .errors import NumvarsError
from .evaluate import greedy_trials
from .jobs import align_run, full_swap_run, load_run
from .runtime import resolve_device, setup_threads
from .train import train

ALIGNMENTS = (("up_down", "count"), ("up_up", "demo_count"), ("up_up", "resp_count"))


@dataclass(frozen=True)
class Preset:
    name: str
    seeds: tuple[int, ...]
    archs: tuple[str, ...] = ("gru", "lstm", "transformer")
    tasks: tuple[str, ...] = ("multi_object", "single_object", "same_object")
    d_model: int = 20
    sizes: tuple[int, ...] = (8, 16, 20, 32, 48, 96)      # GRU on Multi-Object
    size_seeds: tuple[int, ...] = (0,)
    variants: tuple[tuple[str, str, str, tuple], ...] = ()  # (variant, arch, task, ((key, value), ...))
    control_seeds: tuple[int, ...] = (0,)
    controls: tuple[str, ...] = ("untrained", "random", "identity")
    dynamics: tuple[tuple[str, str], ...] = (("gru", "multi_object"),)
    train: dict = field(default_factory=dict)               # RunConfig overrides for every run
    das: dict = field(default_factory=dict)                 # align.das options
    dynamics_das: dict = field(default_factory=dict)
    fullswap_n: int = 1000
    oor_max: int = 30
    oor_per_count: int = 15


PRESETS = {
    "quick": Preset(
        name="quick", seeds=(0, 1), sizes=(16, 20, 32, 48), size_seeds=(0,),
        train={"max_epochs": 600},
        das={"n_train": 3000, "n_val": 500, "n_test": 500, "max_epochs": 20, "patience": 5},
        dynamics_das={"n_train": 2000, "n_val": 300, "n_test": 500, "max_epochs": 10, "patience": 3},
        fullswap_n=500, oor_per_count=10),
    "paper": Preset(
        name="paper", seeds=(0, 1, 2, 3, 4, 5), size_seeds=(0, 1, 2, 3, 4, 5), control_seeds=(0, 1, 2, 3, 4, 5),
        variants=(("npe", "transformer", "multi_object", (("pos", "none"),)),
                  ("npe", "transformer", "single_object", (("pos", "none"),)),
                  ("void", "gru", "multi_object", (("void_prob", 0.2),)),
                  ("void", "lstm", "multi_object", (("void_prob", 0.2),)),
                  ("void", "transformer", "multi_object", (("void_prob", 0.2),)),
                  ("minimal", "transformer", "single_object",       # no BOS, no trigger: 1-layer NPE
                   (("bos", False), ("trigger", False), ("n_layers", 1), ("pos", "none")))),
        dynamics=(("gru", "multi_object"), ("lstm", "multi_object"), ("transformer", "multi_object")),
        train={"max_epochs": 4000},
        das={"max_epochs": 60, "patience": 8},
        dynamics_das={"n_train": 5000, "max_epochs": 30, "patience": 5}),
}


@dataclass(frozen=True)
class RunSpec:
    arch: str
    task: str
    variant: str
    d_model: int
    seed: int
    overrides: tuple = ()

    def config(self, preset: Preset, out: Path, device: str, threads: int):
        keys = {"arch": self.arch, "task": self.task, "d_model": self.d_model, "seed": self.seed,
                **preset.train, **dict(self.overrides), "out": str(out), "device": device, "threads": threads}
        return from_mapping(keys)

    def labels(self) -> dict:
        return {"arch": self.arch, "task": self.task, "variant": self.variant, "d_model": self.d_model,
                "seed": self.seed}


def grid(preset: Preset) -> list[RunSpec]:
    """Every training run of a preset, each once (the size sweep shares its d=20 runs)."""
    specs = [RunSpec(a, t, "default", preset.d_model, s) for a in preset.archs for t in preset.tasks
             for s in preset.seeds]
    specs += [RunSpec("gru", "multi_object", "default", d, s) for d in preset.sizes for s in preset.size_seeds]
    specs += [RunSpec(a, t, v, preset.d_model, s, o) for v, a, t, o in preset.variants for s in preset.seeds]
    return list(dict.fromkeys(specs))


def _oor(run_dir: Path, preset: Preset) -> pd.DataFrame:
    path = run_dir / f"eval_max{preset.oor_max}_per{preset.oor_per_count}.csv"
    if not path.is_file():
        model, task, _, _ = load_run(run_dir, require_trained=False)
        table = greedy_trials(model, task, range(1, preset.oor_max + 1), preset.oor_per_count).by_count()
        io.write_table(path, table)
    return pd.read_csv(path)


def _dynamics(run_dir: Path, preset: Preset, device: str) -> list[dict]:
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    rows = []
    for _, m in metrics[metrics["checkpoint"]].iterrows():
        name = f"epoch_{int(m['epoch']):06d}.safetensors"
        summary, _, _ = align_run(run_dir, checkpoint=name, program="up_down", variable="count", seed=0,
                                  device=device, **preset.dynamics_das)
        rows.append({"epoch": int(m["epoch"]), "trial_accuracy": m["trial_accuracy"], "iia": summary["iia"]})
    return rows


def run_jobs(preset: Preset, out: Path, device: str = "cpu", threads: int = 1, progress: bool = True) -> dict:
    """Run (or reuse) every job and return the raw tables."""
    specs = grid(preset)
    runs_dir = out / "runs"
    tables = {name: [] for name in ("runs", "iia", "fullswap", "oor", "dynamics", "gradience", "timings")}
    bar = tqdm(specs, desc=f"reproduce {preset.name}", unit="run", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(f"{spec.arch} {spec.task} {spec.variant} d={spec.d_model} s={spec.seed}")
        result = train(spec.config(preset, runs_dir, device, threads), progress=False)
        s, labels = result.summary, {"run_name": result.run_dir.name, **spec.labels()}
        tables["runs"].append({**labels, "run_dir": str(result.run_dir), "reached_criterion": s["reached_criterion"],
                               "epochs": s["epochs"], "trial_accuracy": s["trial_accuracy"]})
        tables["timings"].append({**labels, "job": "train", "seconds": s["seconds"]})
        if not s["reached_criterion"]:
            continue                                     # dropped from analyses, listed in the report
        for _, row in _oor(result.run_dir, preset).iterrows():
            tables["oor"].append({**labels, "count": int(row["count"]), "accuracy": row["accuracy"]})
        is_main = spec.d_model == preset.d_model or spec.variant != "default"
        alignments = ALIGNMENTS if is_main else ALIGNMENTS[:1]
        jobs = [(p, v, None) for p, v in alignments]
        if spec.seed in preset.control_seeds and spec.d_model == preset.d_model:
            jobs += [("up_down", "count", c) for c in preset.controls]
        for program, variable, control in jobs:
            summary, rdir, _ = align_run(result.run_dir, program=program, variable=variable, seed=spec.seed,
                                         device=device, **({"control": control} if control else {}), **preset.das)
            tables["iia"].append({**labels, "program": program, "variable": variable, "k": summary["k"],
                                  "map": summary["map"], "control": control or "none", "iia": summary["iia"],
                                  "iia_free": summary["iia_free"], "token_accuracy": summary["token_accuracy"],
                                  "val_iia": summary["val_iia"], "result_dir": str(rdir)})
            tables["timings"].append({**labels, "job": f"das {program}.{variable} {control or ''}".strip(),
                                      "seconds": summary["seconds"]})
            if (program, variable, control) == ("up_down", "count", None):
                pairs = pd.read_parquet(rdir / "pairs.parquet")
                cols = ["base_value", "source_value", "abs_diff", "correct"]
                tables["gradience"] += pairs[cols].astype(int).assign(**labels)[[*labels, *cols]].to_dict("records")
        if is_main:
            fs, _, _ = full_swap_run(result.run_dir, n=preset.fullswap_n, seed=spec.seed)
            tables["fullswap"] += [{**labels, "site": fs["site"], "program": p, "iia": v}
                                   for p, v in fs["iia_by_program"].items()]
        if (spec.arch, spec.task) in preset.dynamics and spec.variant == "default" and \
                spec.d_model == preset.d_model and spec.seed == preset.seeds[0]:
            tables["dynamics"] += [{**labels, **row} for row in _dynamics(result.run_dir, preset, device)]
    return {name: pd.DataFrame(rows) for name, rows in tables.items()}


def environment(device: str, threads: int) -> dict:
    return {"versions": {"numvars": __version__, "torch": torch.__version__, "python": platform.python_version(),
                         "pandas": pd.__version__},
            "hardware": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                         "cpus": __import__("os").cpu_count(), "device": device, "threads": threads,
                         "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}}


def reproduce(preset: str | Preset = "quick", out=None, device: str = "auto", threads: int = 1,
              progress: bool = True) -> Path:
    """Run a preset (a name or a Preset) end to end: jobs, raw tables, analyses, report.
    Returns the report path."""
    from .analysis import analyze
    from .report import render

    if isinstance(preset, str) and preset not in PRESETS:
        raise NumvarsError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset] if isinstance(preset, str) else preset
    preset = p.name
    out = Path(out or Path("results") / preset)
    dev = str(resolve_device(device))
    setup_threads(threads, torch.device(dev))
    started = time.time()
    tables = run_jobs(p, out, dev, threads, progress)
    for name, df in tables.items():
        io.write_table(out / "tables" / f"{name}.csv", df)
    io.write_json(out / "meta.json", {
        "preset": preset, "config": asdict(p), **environment(dev, threads),
        "wall_seconds": round(time.time() - started, 1),
        "job_seconds": round(float(tables["timings"]["seconds"].sum()), 1) if len(tables["timings"]) else 0.0,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    analyze(out)
    return render(out)
