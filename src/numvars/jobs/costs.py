"""What jobs cost: seconds per unit of work (a training epoch, a DAS step, a scored pair, a generated trial),
measured by `benchmarks/job_costs.py` on a 2-core CPU and shipped in numvars/data/job_costs.json, or the
measured seconds of earlier jobs of the same kind in a results folder. Plans and estimates (`reproduce
--dry-run`, `explain --dry-run`) read them here."""
from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

from .. import loaders


def hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def expected_epochs(criterion_epoch: int, extra_epochs: int, plateau: int, max_epochs: int) -> int:
    """The epoch a run is expected to stop at: its criterion, then the extra epochs (or, training to a plateau,
    about five plateau windows), at most max_epochs."""
    return min(criterion_epoch + extra_epochs + 5 * plateau, max_epochs)


class Costs:
    """Seconds per job, from measured per-unit costs (per epoch, per DAS step, per pair, per trial), or
    from the measured seconds of earlier jobs of the same kind in this results folder."""

    def __init__(self, table: dict, source: str, measured: dict | None = None):
        self.t, self.source, self.measured = table, source, measured or {}

    @classmethod
    def load(cls, results: Path | None = None) -> "Costs":
        text = resources.files("numvars").joinpath("data/job_costs.json").read_text()
        costs = cls(json.loads(text), "benchmarks/job_costs.py on a 2-core CPU")
        t = loaders.read_timings(Path(results)) if results is not None and Path(results).is_dir() else None
        if t is not None:
            timings = Path(results) / "tables" / "timings.csv"
            t["kind"] = t["job"].astype(str).str.split().str[0]
            costs.measured = t.groupby(["kind", "arch", "task"])["seconds"].median().to_dict()
            costs.source = f"medians of the earlier jobs in {timings} (benchmarks/job_costs.py where none)"
        return costs

    def arch(self, arch: str) -> dict:
        return self.t["archs"].get(arch, self.t["archs"]["gru"])

    def criterion_epoch(self, arch: str, task: str) -> float:
        return self.arch(arch)["criterion_epochs"].get(task, 150)

    def train(self, arch: str, task: str, train: dict, d_model: int) -> float:
        epochs = expected_epochs(self.criterion_epoch(arch, task), train.get("extra_epochs", 0),
                                 train.get("plateau", 0), train.get("max_epochs", 2000))
        return epochs * self.arch(arch)["epoch_s"] * max(1.0, (d_model / 20) ** 1.5)

    def das(self, arch: str, opts: dict) -> float:
        from ..align import DASOptions
        o = DASOptions(**{k: v for k, v in opts.items() if k != "device"})
        epochs = o.max_epochs if o.schedule == "cosine" else min(o.max_epochs, self.t["das_typical_epochs"])
        steps = o.max_steps or math.ceil(o.n_train / o.batch_size) * epochs
        # a step has a fixed part (the continuation's loop over tokens, Adam) and a part that grows with the
        # batch: on a d=20 GRU one CPU thread took 4.6 ms a step at 64 pairs, 6.4 at 128, 16 at 512
        per_step = self.arch(arch)["das_step_s"] * (0.2 + 0.8 * o.batch_size / 512)
        scoring = (epochs * o.n_val + 2 * o.n_test) * self.arch(arch)["das_step_s"] / 512 * 2   # forward passes only
        return steps * per_step + scoring

    def fullswap(self, arch: str, pairs: int) -> float:
        return self.arch(arch)["fullswap_pair_s"] * pairs

    def attention(self, arch: str, trials: int) -> float:
        """Each trial generated plainly and with one demo token added and removed."""
        return self.arch(arch)["trial_s"] * 3 * trials

    def trials(self, arch: str, trials: int) -> float:
        return self.arch(arch)["trial_s"] * trials

    def explain_page(self) -> float:
        """Concluding one explained run after its jobs (verdict, page), in the main process."""
        return float((self.t.get("finishing") or {}).get("explain_page_s", 0.0))

    def report(self, runs: int) -> float:
        """Analysing a results folder of `runs` runs and rendering its report."""
        return float((self.t.get("finishing") or {}).get("report_s_per_run", 0.0)) * runs

    def scoring(self, arch: str, pairs: int) -> float:
        """Forward passes over `pairs` pairs (no fitting): an evidence job's work."""
        return pairs * self.arch(arch)["das_step_s"] / 512
