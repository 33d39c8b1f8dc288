"""The report's trial explorer: the saved trials of the headline alignments (control none, default variant,
the headline's hidden size, the first analysed seed of each condition), each alignment read from its folder
under RESULTS/runs/ (never from anywhere else: a results folder from someone else cannot make the report read
outside it) and cut to REPORT_TRIALS, chosen as the alignment chose them (failures and distinguishing pairs
first)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import loaders
from .align.trials import cut
from .errors import NumvarsError
from .explorer import Shown
from .paths import inside

REPORT_TRIALS = 100          # per alignment: a report shows up to 27 of them (quick preset), explain pages 300 each


def alignment_folder(root: Path, result_dir: str) -> Path | None:
    """RESULTS/runs/<run>/align/<alignment> for a recorded result_dir of that shape, else None."""
    parts = Path(str(result_dir)).parts
    if len(parts) < 3 or parts[-2] != "align":
        return None
    try:
        folder = inside(root, "runs", parts[-3], "align", parts[-1])
    except NumvarsError:
        return None
    return folder if folder.is_dir() else None


def shown(root: Path, iia: pd.DataFrame, runs: pd.DataFrame, d_model: int, limit: int = REPORT_TRIALS) \
        -> list[Shown]:
    """The headline alignments of the analysed runs, each with its trials (or why there are none)."""
    kept = set(runs["run_name"]) if "run_name" in runs else set()
    rows = iia[(iia["control"] == "none") & (iia["variant"] == "default") & (iia["d_model"] == d_model)
               & iia["run_name"].isin(kept)]
    rows = rows.sort_values(["arch", "task", "program", "variable", "map", "seed"])
    out = []
    for r in rows.drop_duplicates(["arch", "task", "program", "variable", "map"]).itertuples():
        label = f"{r.arch}, {r.task}, seed {r.seed}: {r.program} {r.variable}, {r.map} map, k = {r.k}"
        folder = alignment_folder(root, r.result_dir)
        if folder is None:
            out.append(Shown(label, None, None, "no trials saved for this alignment (its folder is not in "
                                                "this results folder)"))
            continue
        out.append(_read(folder, label, limit))
    return out


def _read(folder: Path, label: str, limit: int) -> Shown:
    try:
        trials, pairs = loaders.read_trials(folder), loaders.read_job_table(folder, "das")
    except NumvarsError as e:
        return Shown(label, None, None, f"no trials shown: {e}")
    if trials is None:
        return Shown(label, None, pairs, "no trials saved for this alignment")
    return Shown(label, cut(trials, limit), pairs)
