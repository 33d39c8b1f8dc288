"""Figures: each `fig_*` takes data frames (or arrays) and returns (figure, one-sentence caption),
or raises `Skip` when its inputs are empty. Figures choose nothing and load nothing: the analyses
hand them exactly what to draw. Labelled axes with units, a title (TITLES) and a caption for every
figure; matplotlib through `Figure` objects only (no global backend).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .models import ARCHS
from .programs import PHASES
from .stats import pearson
from .tasks import VARIANTS

TASKS = tuple(VARIANTS)
TRAIN_MAX_COUNT = 20          # the paper's training range ends here; a preset's own max_count overrides it
IIA_LABEL = "IIA (fraction of pairs)"
COLORS = {"gru": "#1f77b4", "lstm": "#2ca02c", "transformer": "#d62728"}


class Skip(Exception):
    """A figure that cannot be drawn from these inputs; the message says why."""

# ---------------------------------------------------------------------------------------------
# Figures: each returns (figure, caption) or raises Skip


TITLES = {
    "iia": "Interchange-intervention accuracy by architecture and task",
    "size_sweep": "Up-Down count IIA vs hidden size (GRU, Multi-Object)",
    "dynamics": "Trial accuracy and Up-Down count IIA during training",
    "gradience_heatmap": "Up-Down count IIA by base and source count (GRU, Multi-Object)",
    "gradience_diff": "Up-Down count IIA vs count difference, per hidden size (GRU, Multi-Object)",
    "oor": "Trial accuracy inside and beyond the training range",
    "pca": "Hidden-state trajectories in the first two principal components",
    "attention": "Transformer attention maps for one sequence",
    "phase_pairs": "Up-Down count IIA by the phase of the base and the source position",
    "signed_error": "How far off the failed interventions are",
    "k_curves": "IIA against the size of the aligned subspace",
}


def _figure(nrows: int = 1, ncols: int = 1, width: float = 6.0, height: float = 3.8):
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _label(program: str, variable: str) -> str:
    return {("up_down", "count"): "Up-Down count", ("up_up", "best_count"): "Up-Up best count"}.get(
        (program, variable), f"{program} {variable}")


def fig_iia(t: pd.DataFrame, d_model: int):
    """t: the IIA table at d_model, one alignment per condition and map (k = d/2)."""
    if t.empty:
        raise Skip(f"no IIA rows at d_model={d_model}, variant default, control none")
    maps = sorted(set(t["map"]), key=lambda m: (m != "orthogonal", m))
    series = sorted({(p, v, m) for p, v, m in zip(t["program"], t["variable"], t["map"])},
                    key=lambda s: (s[:2] != ("up_down", "count"), s[:2] != ("up_up", "best_count"), s[:2],
                                   maps.index(s[2])))
    archs = [a for a in (*ARCHS, *sorted(set(t["arch"]) - set(ARCHS))) if a in set(t["arch"])]
    tasks = [x for x in (*TASKS, *sorted(set(t["task"]) - set(TASKS))) if x in set(t["task"])]
    n_bars = len(series) + 1
    fig, axes = _figure(1, len(archs), width=max(3.5, 0.22 * n_bars * len(tasks) + 1.4))
    colors = [f"C{i}" for i in range(n_bars)]
    for ax, arch in zip(axes[0], archs):
        rows = t[t["arch"] == arch]
        for i, (program, variable, map_) in enumerate(series):
            r = rows[(rows["program"] == program) & (rows["variable"] == variable) & (rows["map"] == map_)]
            r = r.set_index("task").reindex(tasks)
            label = _label(program, variable) + (f" ({map_} map)" if len(maps) > 1 else "")
            _bars(ax, i, n_bars, r["mean"], r["ci_low"], r["ci_high"], colors[i], label, r.get("untrained_mean"))
        swap = rows.drop_duplicates("task").set_index("task").reindex(tasks)
        _bars(ax, len(series), n_bars, swap["fullswap_mean"], swap["fullswap_ci_low"], swap["fullswap_ci_high"],
              "0.45", "full swap (Context-Distributed)", None)
        ax.set_xticks(range(len(tasks)), [x.replace("_object", "") for x in tasks])
        ax.set_ylim(0, 1.05)
        ax.set_title(arch)
        ax.set_xlabel("task")
        ax.set_ylabel(IIA_LABEL)
    legend = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=min(4, len(legend)), fontsize=8)
    return fig, (f"Mean test-set IIA over seeds at hidden size {d_model} (DAS with k = d/2, per alignment map) with "
                 "its interval (a bootstrap over seeds with 3 or more, the range with 2); black ticks mark the same "
                 "DAS on an untrained model, grey bars the full-state swap that the Context-Distributed program "
                 "predicts to leave the continuation unchanged.")


def _bars(ax, i, n, mean, low, high, color, label, control):
    width = 0.8 / n
    x = np.arange(len(mean)) - 0.4 + width * (i + 0.5)
    mean, low, high = (np.asarray(v, dtype=float) for v in (mean, low, high))
    err = np.vstack([mean - low, high - mean])
    ax.bar(x, np.nan_to_num(mean), width, color=color, label=label,
           yerr=np.where(np.isfinite(err), err, 0), capsize=2, error_kw={"lw": 0.8})
    if control is not None and np.isfinite(np.asarray(control, dtype=float)).any():
        ax.scatter(x, np.asarray(control, dtype=float), marker="_", s=120, color="k", zorder=3,
                   label="untrained-model control")


def fig_size_sweep(table: pd.DataFrame, points: pd.DataFrame):
    if table.empty:
        raise Skip("no Up-Down count IIA rows for GRU Multi-Object (control none)")
    fig, axes = _figure()
    ax = axes[0][0]
    ax.scatter(points["d_model"], points["iia"], s=14, color="0.6", label="one seed", zorder=2)
    err = np.vstack([table["mean"] - table["ci_low"], table["ci_high"] - table["mean"]]).astype(float)
    ax.errorbar(table["d_model"], table["mean"], yerr=np.where(np.isfinite(err), err, 0), marker="o",
                capsize=3, color=COLORS["gru"], label="mean and interval", zorder=3)
    for control, style in (("untrained", "--"), ("random", ":")):
        col = f"{control}_mean"
        if col in table and table[col].notna().any():
            ax.plot(table["d_model"], table[col], style, color="k", lw=1, label=f"{control} control")
    ax.set_xscale("log", base=2)
    ax.set_xticks(table["d_model"].astype(int).tolist(), [str(int(d)) for d in table["d_model"]])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("hidden size d (units, log scale)")
    ax.set_ylabel(IIA_LABEL)
    ax.legend(fontsize=8)
    return fig, ("Up-Down count IIA of GRUs on Multi-Object against hidden size: mean over seeds with its "
                 "interval (bootstrap over 3+ seeds, range of 2), one grey dot per seed, controls as black lines.")


def fig_dynamics(dyn: pd.DataFrame):
    dyn = dyn[dyn["epoch"] > 0]
    if dyn.empty:
        raise Skip("no training-dynamics rows (no checkpoints were aligned)")
    fig, axes = _figure(1, 3, width=4.4)
    seen = set()
    for run, g in dyn.sort_values("epoch").groupby("run_name"):
        arch = g["arch"].iloc[0]
        label = None if arch in seen else arch
        seen.add(arch)
        color = COLORS.get(arch, "0.3")
        axes[0][0].plot(g["epoch"], g["trial_accuracy"], marker=".", color=color, alpha=0.7, label=label)
        axes[0][1].plot(g["epoch"], g["iia"], marker=".", color=color, alpha=0.7)
        axes[0][2].scatter(g["trial_accuracy"], g["iia"], s=10, color=color, alpha=0.7)
    for ax, ylabel in zip(axes[0][:2], ("trial accuracy (fraction of trials)", IIA_LABEL)):
        ax.set_xscale("log")
        ax.set_xlabel("epoch (log scale)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(-0.02, 1.02)
    axes[0][2].set_xlabel("trial accuracy (fraction of trials)")
    axes[0][2].set_ylabel(IIA_LABEL)
    axes[0][0].legend(fontsize=8)
    r, _ = pearson(dyn["trial_accuracy"], dyn["iia"])
    axes[0][2].set_title(f"pooled Pearson r = {r:.2f}" if np.isfinite(r) else "pooled Pearson r = n/a")
    return fig, ("Trial accuracy and Up-Down count IIA at each saved checkpoint, one line per run (log epoch axis), "
                 "and their pooled correlation.")


def fig_gradience_heatmap(grid: pd.DataFrame, label: str):
    """`label` names the model(s) and their size, e.g. "GRU, Multi-Object, d = 20, all seeds pooled"."""
    if grid.empty:
        raise Skip(f"no Up-Down count pairs ({label})")
    pivot = grid.pivot(index="base_value", columns="source_value", values="iia")
    fig, axes = _figure(width=6.0, height=4.8)
    ax = axes[0][0]
    image = ax.imshow(pivot.to_numpy(dtype=float), origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(pivot.columns)), [str(int(v)) for v in pivot.columns], fontsize=7)
    ax.set_yticks(range(len(pivot.index)), [str(int(v)) for v in pivot.index], fontsize=7)
    ax.set_xlabel("source count value (tokens)")
    ax.set_ylabel("base count value (tokens)")
    fig.colorbar(image, ax=ax, label=IIA_LABEL)
    return fig, (f"Fraction of test pairs intervened correctly, by the base's and the source's count at the "
                 f"swapped positions ({label}; blank: no pairs).")


def fig_gradience_diff(diff: pd.DataFrame):
    if diff.empty:
        raise Skip("no gradience pairs for GRU Multi-Object")
    fig, axes = _figure()
    ax = axes[0][0]
    for i, (d, g) in enumerate(diff.groupby("d_model")):
        ax.plot(g["abs_diff"], g["iia"], marker="o", ms=3, color=f"C{i}", label=f"d = {int(d)}")
    ax.set_xlabel("|base − source| count difference (tokens)")
    ax.set_ylabel(IIA_LABEL)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, title="hidden size")
    return fig, ("Up-Down count IIA of GRUs on Multi-Object against the distance between the swapped counts, "
                 "one line per hidden size.")


def fig_oor(table: pd.DataFrame, d_model: int, train_max: int = TRAIN_MAX_COUNT):
    if table.empty:
        raise Skip(f"no out-of-range accuracy rows at d_model={d_model}, variant default")
    tasks = [x for x in (*TASKS, *sorted(set(table["task"]) - set(TASKS))) if x in set(table["task"])]
    fig, axes = _figure(1, len(tasks), width=4.6)
    for ax, task in zip(axes[0], tasks):
        for arch, g in table[table["task"] == task].groupby("arch"):
            ax.plot(g["count"], g["mean"], marker=".", color=COLORS.get(arch, "0.3"), label=arch)
            ax.fill_between(g["count"], g["ci_low"], g["ci_high"], color=COLORS.get(arch, "0.3"), alpha=0.15)
        ax.axvline(train_max, color="k", ls="--", lw=1, label=f"training range ends ({train_max})")
        ax.set_title(task)
        ax.set_xlabel("count (tokens)")
        ax.set_ylabel("trial accuracy (fraction of trials)")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].legend(fontsize=8)
    top = int(table["count"].max())
    return fig, (f"Trial accuracy for target counts 1–{top} (d = {d_model}, mean over seeds with its interval as a "
                 f"band); counts right of the dashed line lie beyond the training range 1–{train_max}.")


def fig_pca(found: list):
    """found: (run row, PCA result) pairs, as `analysis.hidden.pca_inputs` returns them."""
    if not found:
        raise Skip("no loadable GRU or LSTM run directory (variant default) to read hidden states from")
    fig, axes = _figure(len(found), 2, width=4.6, height=3.8)
    for (row, res), (ax_count, ax_phase) in zip(found, axes):
        ev, d = res["explained"], res["d_model"]
        pc1, pc2 = res["pcs"][:, 0], res["pcs"][:, 1] if res["pcs"].shape[1] > 1 else np.zeros(len(res["pcs"]))
        points = ax_count.scatter(pc1, pc2, c=res["count"], cmap="viridis", s=6)
        fig.colorbar(points, ax=ax_count, label="Up-Down count (tokens)")
        for phase, name, color in ((0, "demo", "C0"), (1, "response", "C1")):
            on = res["phase"] == phase
            ax_phase.scatter(pc1[on], pc2[on], s=6, color=color, label=name, alpha=0.6)
        ax_phase.legend(fontsize=8, title="phase", markerscale=2)
        for ax, what in ((ax_count, "count"), (ax_phase, "phase")):
            ax.set_xlabel(f"PC1 ({100 * ev[0]:.0f}% of variance)")
            ax.set_ylabel(f"PC2 ({100 * ev[1]:.0f}% of variance)" if len(ev) > 1 else "PC2")
            ax.set_title(f"{row['arch']} {row['task']} d={d}, by {what}", fontsize=9)
    return fig, ("Recurrent states after every token of 200 sequences with counts 1–20, projected on their first "
                 "two principal components and coloured by the Up-Down program's count (left) and phase (right).")


def fig_attention(maps: list):
    """maps: (variant, run row, weights (n_layers, H, L, L), token names), from `analysis.hidden`."""
    if not maps:
        raise Skip("no loadable Transformer run directory to read attention weights from")
    n_layers = max(w.shape[0] for _, _, w, _ in maps)
    panels = [(variant, row, weights, labels, head) for variant, row, weights, labels in maps
              for head in range(weights.shape[1])]
    fig, axes = _figure(n_layers, len(panels), width=4.0, height=3.9)
    for col, (variant, row, weights, labels, head) in enumerate(panels):
        for layer in range(n_layers):
            ax = axes[layer][col]
            if layer >= weights.shape[0]:
                ax.axis("off")
                continue
            image = ax.imshow(weights[layer, head], vmin=0, vmax=1, cmap="magma")
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
            ax.set_xlabel("key token (attended to)")
            ax.set_ylabel("query token (attending)")
            ax.set_title(f"{variant} ({row['task']}): layer {layer + 1}, head {head + 1}", fontsize=9)
    fig.colorbar(image, ax=axes, label="attention weight", shrink=0.6)
    tasks = " and ".join(sorted({str(row["task"]).replace("_", "-") for _, row, _, _ in maps}))
    return fig, (f"Causal attention weights of each layer and head for one {tasks} sequence with count 5 "
                 "(rows: query tokens, columns: key tokens), for the RoPE transformer and, where it ran, the one "
                 "without positional encoding (npe).")




def fig_phase_pairs(table: pd.DataFrame):
    """table: arch, task, map, phase_t, phase_u, iia, pairs (one map)."""
    if table.empty:
        raise Skip("no per-pair results of the Up-Down count alignment")
    panels = list(dict.fromkeys(zip(table["arch"], table["task"])))
    fig, axes = _figure(1, len(panels), width=3.1, height=3.2)
    for ax, (arch, task) in zip(axes[0], panels):
        g = table[(table["arch"] == arch) & (table["task"] == task)]
        grid = g.pivot(index="phase_t", columns="phase_u", values="iia").reindex(index=PHASES, columns=PHASES)
        n = g.pivot(index="phase_t", columns="phase_u", values="pairs").reindex(index=PHASES, columns=PHASES)
        image = ax.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis")
        for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}\n({int(n.iloc[i, j])})", ha="center", va="center", fontsize=7,
                        color="white" if value < 0.6 else "black")
        ax.set_xticks(range(3), PHASES)
        ax.set_yticks(range(3), PHASES)
        ax.set_xlabel("phase of the source position u")
        ax.set_ylabel("phase of the base position t")
        ax.set_title(f"{arch}, {task.replace('_object', '')}", fontsize=9)
    fig.colorbar(image, ax=axes, label=IIA_LABEL, shrink=0.7)
    return fig, ("Up-Down count IIA split by where the swap happens: the phase (demo, the trigger T, or response) "
                 "of the base position t (rows) and of the source position u (columns), seeds pooled, with the "
                 "number of test pairs in brackets.")


def fig_signed_error(table: pd.DataFrame):
    """table: arch, map, signed_error, pairs, fraction (failed pairs only; one map)."""
    if table.empty:
        raise Skip("no failed pairs to show (or no per-pair results)")
    archs = list(dict.fromkeys(table["arch"]))
    fig, axes = _figure(1, len(archs), width=3.6, height=3.2)
    for ax, arch in zip(axes[0], archs):
        g = table[table["arch"] == arch].sort_values("signed_error")
        ax.bar(g["signed_error"], g["fraction"], color=COLORS.get(arch, "0.4"))
        ax.set_xlabel("model − program response length (tokens)")
        ax.set_ylabel("fraction of failed pairs")
        ax.set_title(f"{arch} ({int(g['pairs'].sum())} failed pairs)", fontsize=9)
    return fig, ("For the Up-Down count interventions that failed, how many response tokens the model produced "
                 "(free-running) minus how many the program predicts, per model family, tasks and seeds pooled: "
                 "±1 means an off-by-one count, 0 a failure that is not about length (a wrong token).")



def fig_k_curves(table: pd.DataFrame):
    """table: explain's alignments (program, variable, site, map, k, control, iia, ci_low, ci_high)."""
    learned = table[table["control"] == "none"]
    if learned.empty:
        raise Skip("no alignments")
    panels = list(dict.fromkeys(zip(learned["program"], learned["variable"])))
    fig, axes = _figure(1, len(panels), width=3.4, height=3.2)
    for ax, (program, variable) in zip(axes[0], panels):
        rows = table[(table["program"] == program) & (table["variable"] == variable)]
        for i, ((site, map_), g) in enumerate(rows[rows["control"] == "none"].groupby(["site", "map"], sort=False)):
            g = g.sort_values("k")
            ax.errorbar(g["k"], g["iia"], yerr=np.vstack([g["iia"] - g["ci_low"], g["ci_high"] - g["iia"]]).clip(0),
                        marker="o", ms=3, capsize=2, color=f"C{i}", label=f"{map_} at {site}")
        for control, marker in (("untrained", "x"),):
            c = rows[rows["control"] == control]
            if len(c):
                ax.scatter(c["k"], c["iia"], marker=marker, color="k", zorder=3, label=f"{control} control")
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("aligned dimensions k (log scale)")
        ax.set_ylabel(IIA_LABEL)
        ax.set_title(f"{program}: {variable}", fontsize=9)
    handles = {lbl: h for ax in axes[0] for h, lbl in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=min(4, len(handles)), fontsize=8)
    return fig, ("Test IIA of every aligned variable against the size k of the aligned subspace, per alignment map and "
                 "site, with 95% bootstrap intervals over runs and test pairs; black marks: the same DAS on an "
                 "untrained copy at k = d/2 (one per map).")
