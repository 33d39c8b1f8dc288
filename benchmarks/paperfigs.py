"""What benchmarks/results_page.py and benchmarks/readme_figures.py share: one completed results folder read
once, the paper's digitized values (numvars/data/paper_values.json), Figure 2's cells beside them, the k sweep
of one explained model, and the two figures drawn from those numbers. Both scripts call these functions, so
the README's figures show exactly the numbers docs/results.md prints."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from numvars import io
from numvars.analysis import training_range
from numvars.models import PAPER_ARCHS
from numvars.report import FIDELITY_NOTES, MATCH_TOLERANCE, paper_values

TASKS = ("multi_object", "single_object", "same_object")
MEASURES = {"up_down_count": "Up-Down count", "up_up_best_count": "Up-Up best count", "full_swap": "full swap"}
COLORS = {"up_down_count": "#1f77b4", "up_up_best_count": "#ff7f0e", "full_swap": "0.45"}


@dataclass
class Results:
    root: Path
    meta: dict
    paper: dict

    @property
    def preset(self) -> str:
        return self.meta.get("preset", "unknown")

    @property
    def config(self) -> dict:
        return self.meta.get("config", {})

    @property
    def d_model(self) -> int:
        return int(self.config.get("d_model", 20))

    @property
    def train_max(self) -> int:
        return training_range(self.meta)

    def table(self, name: str) -> pd.DataFrame:
        """analysis/NAME.csv (empty where the folder has none), or tables/NAME.csv for the raw ones."""
        for folder in ("analysis", "tables"):
            path = self.root / folder / f"{name}.csv"
            if path.is_file():
                return pd.read_csv(path, keep_default_na=True)
        return pd.DataFrame()

    def raw(self, name: str) -> pd.DataFrame:
        """tables/NAME.csv restricted to the runs the analyses kept (those that reached the criterion)."""
        path = self.root / "tables" / f"{name}.csv"
        if not path.is_file():
            return pd.DataFrame()
        df = pd.read_csv(path)
        kept = set(self.table("runs")["run_name"])
        return df[df["run_name"].isin(kept)] if "run_name" in df else df


def load(results) -> Results:
    root = Path(results)
    if not (root / "meta.json").is_file() or not (root / "analysis" / "headline.csv").is_file():
        raise SystemExit(f"{root} is not a completed results folder (no meta.json or analysis/headline.csv); "
                         "pass the folder `numvars reproduce` wrote, after it finished")
    return Results(root, json.loads((root / "meta.json").read_text()), paper_values())


def paper_cell(values) -> tuple[float, float, float]:
    """[mean, low, high] from paper_values.json as floats (NaN for an unread bound)."""
    return tuple(math.nan if v is None else float(v) for v in values)


def fig2_cells(res: Results) -> pd.DataFrame:
    """Every Figure 2 cell we measured, one row per (arch, task, measure, map), beside the paper's value:
    ours (mean over seeds, interval, n, non-trivial mean), the paper's mean and interval, the difference, a
    verdict (match when |ours − paper| ≤ MATCH_TOLERANCE) and the fidelity note for a miss."""
    head = res.table("headline")
    iia = res.table("iia_table")
    cells = res.paper["fig2"]["cells"]
    rows = []
    for r in head.itertuples():
        p = cells.get(f"{r.arch}/{r.task}", {}).get(r.measure)
        paper, low, high = paper_cell(p) if p else (math.nan,) * 3
        diff = r.mean - paper
        verdict = "no paper value" if math.isnan(paper) else "no number" if math.isnan(r.mean) else \
            "match" if abs(diff) <= MATCH_TOLERANCE + 1e-12 else "differs"
        untrained = math.nan
        if r.measure == "up_down_count":
            u = iia[(iia["arch"] == r.arch) & (iia["task"] == r.task) & (iia["program"] == "up_down")
                    & (iia["variable"] == "count") & (iia["map"] == r.map)]
            untrained = float(u["untrained_mean"].mean()) if len(u) else math.nan
        rows.append({"arch": r.arch, "task": r.task, "measure": r.measure, "map": r.map, "ours": r.mean,
                     "ci_low": r.ci_low, "ci_high": r.ci_high, "n": int(r.n), "interval": r.interval,
                     "nontrivial": r.nontrivial_mean, "paper": paper, "paper_low": low, "paper_high": high,
                     "diff": diff, "verdict": verdict, "untrained": untrained,
                     "note": FIDELITY_NOTES.get((r.arch, r.task, r.measure, r.map), "") if verdict == "differs" else ""})
    return pd.DataFrame(rows)


def lead_map(cells: pd.DataFrame) -> str:
    maps = [m for m in dict.fromkeys(cells["map"]) if m != "—"]
    return "orthogonal" if "orthogonal" in maps else (maps[0] if maps else "orthogonal")


def draw_fig2(cells: pd.DataFrame, path: Path, footer: str) -> Path:
    """The reproduced Figure 2: one panel per architecture, per task the bars of Up-Down count and Up-Up best
    count (every map that ran; the lead map solid, others hatched) and the full swap, with intervals over
    seeds and the paper's digitized value as a black diamond."""
    maps = [lead_map(cells)] + [m for m in dict.fromkeys(cells["map"]) if m not in ("—", lead_map(cells))]
    series = [(m, mp) for m in ("up_down_count", "up_up_best_count") for mp in maps] + [("full_swap", "—")]
    archs = [a for a in PAPER_ARCHS if a in set(cells["arch"])]
    tasks = [t for t in TASKS if t in set(cells["task"])]
    fig = Figure(figsize=(4.2 * len(archs) + 0.5, 4.2), layout="constrained")
    axes = fig.subplots(1, len(archs), squeeze=False)[0]
    width = 0.8 / len(series)
    for ax, arch in zip(axes, archs):
        for i, (measure, map_) in enumerate(series):
            rows = cells[(cells["arch"] == arch) & (cells["measure"] == measure) & (cells["map"] == map_)]
            rows = rows.set_index("task").reindex(tasks)
            x = np.arange(len(tasks)) - 0.4 + width * (i + 0.5)
            mean = rows["ours"].to_numpy(float)
            err = np.vstack([mean - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - mean])
            label = MEASURES[measure] + ("" if map_ == "—" or len(maps) == 1 else f" ({map_})")
            ok = ~np.isnan(mean)                      # a task this architecture did not run: no bar, no marker
            other = map_ not in ("—", maps[0])
            ax.bar(x[ok], mean[ok], width * 0.92, color=COLORS[measure], label=label, hatch="//" if other else None,
                   alpha=0.55 if other else 1, edgecolor="white", yerr=np.nan_to_num(err[:, ok]).clip(0),
                   error_kw={"elinewidth": 1, "capsize": 2})
            ax.scatter(x[ok], rows["paper"].to_numpy(float)[ok], marker="D", s=22, color="black", zorder=3,
                       label="paper (digitized)")
        ax.set_xticks(range(len(tasks)), [t.replace("_object", "") for t in tasks])
        ax.set_ylim(0, 1.05)
        ax.set_title(arch)
        ax.set_xlabel("task")
        ax.set_ylabel("IIA (fraction of test pairs)")
    handles = {lbl: h for ax in axes for h, lbl in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside upper center", ncols=min(6, len(handles)), fontsize=8)
    fig.supxlabel(footer, fontsize=7, color="0.3")
    return _save(fig, path)


def fig2_caption(cells: pd.DataFrame, res: Results) -> str:
    n = sorted(set(cells["n"]))
    return (f"Figure 2 reproduced at hidden size {res.d_model}: mean test IIA over seeds (n = "
            f"{'–'.join(str(v) for v in (n[0], n[-1])) if len(n) > 1 else n[0]}) with the interval over seeds "
            f"(95% bootstrap with 3+ seeds, the range with 2, none with 1), per architecture and task: Up-Down count "
            f"and Up-Up best count for each alignment map that ran ({', '.join(m for m in dict.fromkeys(cells['map']) if m != '—')}), "
            f"and the Context-Distributed full swap. Black diamonds: the paper's Figure 2, digitized from the "
            f"ICLR 2025 figure.")


def k_sweeps(res: Results) -> pd.DataFrame:
    """Every explained model's alignments from runs/*/explain/explain.json: run_name, arch, task, seed,
    program, variable, site, map, k, control, iia, ci_low, ci_high."""
    runs = res.table("runs")
    seeds = dict(zip(runs["run_name"], runs["seed"])) if len(runs) else {}
    rows = []
    for page in sorted(res.root.glob("runs/*/explain/explain.json")):
        doc, name = json.loads(page.read_text()), page.parents[1].name
        if name not in seeds:                   # a run the analyses dropped
            continue
        labels = {"run_name": name, "arch": doc.get("arch"), "task": doc.get("task"), "seed": int(seeds[name]),
                  "d_model": doc.get("d_model")}
        rows += [{**labels, **{k: a.get(k) for k in ("program", "variable", "site", "map", "k", "control", "iia",
                                                     "ci_low", "ci_high")}} for a in doc.get("alignments", [])]
    return pd.DataFrame(rows)


def gru_k_curve(res: Results) -> tuple[str, pd.DataFrame]:
    """The Up-Down count k sweep of one GRU (Multi-Object seed 0 where explained, else the first GRU):
    (run name, rows with control none and untrained, sorted by map and k)."""
    sweeps = k_sweeps(res)
    if sweeps.empty:
        return "", sweeps
    gru = sweeps[(sweeps["arch"] == "gru") & (sweeps["program"] == "up_down") & (sweeps["variable"] == "count")]
    if gru.empty:
        return "", gru
    order = gru.assign(rank=(gru["task"] != "multi_object").astype(int)).sort_values(["rank", "seed", "run_name"])
    run = order["run_name"].iloc[0]
    curve = gru[gru["run_name"] == run]
    if curve["site"].nunique() > 1:            # one site: the one whose best alignment is best
        best = curve[curve["control"] == "none"].groupby("site")["iia"].max().idxmax()
        curve = curve[curve["site"] == best]
    return run, curve.sort_values(["map", "k"])


def draw_k_curve(run: str, curve: pd.DataFrame, path: Path, footer: str) -> tuple[Path, str]:
    """IIA against k for one GRU's Up-Down count, per map; a sweep of one k is drawn as a point and said."""
    learned = curve[curve["control"] == "none"]
    ks = sorted(set(learned["k"]))
    fig = Figure(figsize=(5.2, 3.8), layout="constrained")
    ax = fig.subplots()
    maps = sorted(set(learned["map"]), key=lambda m: (m != "orthogonal", m))
    for i, map_ in enumerate(maps):
        g = learned[learned["map"] == map_]
        err = np.vstack([g["iia"] - g["ci_low"], g["ci_high"] - g["iia"]]).clip(0)
        ax.errorbar(g["k"], g["iia"], yerr=err, marker="o", capsize=3, color=f"C{i}", label=f"{map_} map")
    untrained = curve[curve["control"] == "untrained"]
    if len(untrained):
        ax.scatter(untrained["k"], untrained["iia"], marker="x", color="black", zorder=3, label="untrained copy")
    d = int(curve["d_model"].iloc[0])
    note = "" if len(ks) > 1 else (f"only k = {ks[0]} in this explain sweep: the preset's explain ran one subspace "
                                   f"size, so there is no curve")
    if note:
        ax.text(0.5, 0.3, f"only k = {ks[0]} in this explain sweep:\nthe preset's explain ran one subspace size,\n"
                "so there is no curve", transform=ax.transAxes, ha="center", va="center", fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "0.6"})
    ax.set_xticks(ks)
    ax.set_xlim(0, d + 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"aligned dimensions k (of d = {d})")
    ax.set_ylabel("Up-Down count IIA (test pairs)")
    ax.set_title(f"{run} (site {curve['site'].iloc[0]})", fontsize=8)
    ax.legend(fontsize=8, loc="lower right")
    fig.supxlabel(footer, fontsize=7, color="0.3")
    return _save(fig, path), note


def _save(fig: Figure, path: Path) -> Path:
    return io.write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight",
                                                               pad_inches=0.15))
