"""docs/results.md from one completed results folder: every figure and table of the paper as the preset
produced it, beside the paper's digitized values (src/numvars/data/paper_values.json), and what the preset finds
beyond the paper.

    python benchmarks/results_page.py results/paper                         # docs/results.md, docs/img/results/
    python benchmarks/results_page.py RESULTS --doc /tmp/r.md --img /tmp/img

The page is regenerated whole on every run and written atomically; the image folder is emptied of the
PNGs a previous run left there first. Every verdict is computed from the folder's tables with the thresholds
the page states (THRESHOLDS); none is written by hand.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from numvars import io
from numvars.align.protocol import DASOptions
from numvars.errors import NumvarsError
from numvars.pages import num
from numvars.report import MATCH_TOLERANCE
from numvars.stats import mean_ci

import paperfigs as P

ROOT = Path(__file__).parents[1]
# The thresholds of every computed verdict (the page prints them).
THRESHOLDS = {
    "match": MATCH_TOLERANCE,   # |ours − paper| at most this: the cell matches
    "much_greater": 0.20,       # "A ≫ B": A − B at least this
    "weaker": 0.10,             # Same-Object "weaker": its Up-Down count below both other tasks' by at least this
    "rises": 0.02,              # a rise (with size, after the criterion) of at least this
    "falls": 0.05,              # graded IIA: the high-count quarter below the low-count quarter by at least this
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="a completed results folder (numvars reproduce --out)")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "results.md")
    p.add_argument("--img", type=Path, default=ROOT / "docs" / "img" / "results")
    p.add_argument("--run-attention", type=int, default=0, metavar="N",
                   help="first run the attention test with N trials on every Transformer variant run that has none "
                        "(as `numvars attention RUN n=N` does; cached in the run's align/ folder); default: read only")
    args = p.parse_args(argv)
    res = P.load(args.results)
    if args.run_attention:
        run_attention(res, args.run_attention)
    page = Page(res, args.doc, args.img)
    text = page.render()
    io.write_text(args.doc, text)
    print(f"wrote {args.doc} ({len(text.splitlines())} lines) and {len(page.images)} images in {args.img}")


def run_attention(res: P.Results, n: int) -> None:
    """The attention test on the variant Transformers (the preset runs it only inside explain, on the main ones)."""
    from numvars.align.protocol import AttentionOptions
    from numvars.jobs.cache import attention_run

    runs = res.table("runs")
    for r in runs[(runs["arch"] == "transformer") & (runs["variant"] != "default")].itertuples():
        run_dir = res.root / "runs" / r.run_name
        if not any(run_dir.glob("align/attention-*/result.json")):
            try:
                summary, _, _ = attention_run(run_dir, AttentionOptions(n=n))
            except NumvarsError as e:        # a run the test does not apply to: said, and the page goes on
                print(f"attention test on {r.run_name} not run: {e}")
                continue
            print(f"attention test on {r.run_name}: {summary['accuracy']}")


def signed(x, nd: int = 2) -> str:
    """x with its sign, never "-0.00"."""
    return f"{round(x, nd) + 0.0:+.{nd}f}"


def interval(mean, low, high, nd: int = 2) -> str:
    if mean is None or math.isnan(mean):
        return "—"
    return f"{mean:.{nd}f}" + ("" if low is None or math.isnan(low) else f" [{low:.{nd}f}–{high:.{nd}f}]")


def table(head: list[str], rows: list[list]) -> str:
    if not rows:
        return "_(no rows)_"
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def seeds_of(df: pd.DataFrame) -> str:
    return ", ".join(str(int(s)) for s in sorted(set(df["seed"]))) if len(df) else "none"



def planned(preset: str) -> str:
    """What `numvars reproduce --preset P --dry-run --jobs 2` plans on an empty folder (nothing is written)."""
    import tempfile

    from numvars.jobs.costs import hms
    from numvars.reproduce import get_preset
    from numvars.reproduce.plan import plan
    try:
        p = get_preset(preset)
    except NumvarsError:
        return "— (not a preset of this numvars)"
    with tempfile.TemporaryDirectory() as tmp:
        pl = plan(p, Path(tmp) / "fresh", 2)
    return (f"{int(pl.counts['jobs'].sum())} jobs, {hms(float(pl.counts['seconds'].sum()))} of CPU, "
            f"{hms(pl.wall_seconds)} of wall time estimated")


class Page:
    def __init__(self, res: P.Results, doc: Path, img: Path):
        self.res, self.doc, self.img = res, doc, img
        self.images: list[str] = []
        self.cmd = f"numvars reproduce --preset {res.preset} --out {res.root}"
        self.cells = P.fig2_cells(res)
        self.claims: list[list[str]] = []
        self.captions = json.loads((res.root / "figures" / "captions.json").read_text()) \
            if (res.root / "figures" / "captions.json").is_file() else {}
        figures = res.table("figures")
        self.drawn = set(figures.loc[figures["status"] == "ok", "name"]) if len(figures) else set()

    def render(self) -> str:
        self.img.mkdir(parents=True, exist_ok=True)
        for old in self.img.glob("*.png"):
            old.unlink()
        parts = [self.header(), self.fig2(), self.fig7(), self.size(), self.dynamics(), self.gradience(), self.oor(),
                 self.variants(), self.beyond(), self.other_figures(), self.claims_table()]
        return "\n\n".join(p.rstrip() for p in parts if p) + "\n"

    # --- images ---------------------------------------------------------------------------------

    def copy_figure(self, name: str) -> str:
        """The results folder's figure NAME copied to the image folder, as Markdown with its caption."""
        if name not in self.drawn:
            return f"_(figure `{name}` was not drawn for this folder: see analysis/figures.csv)_"
        shutil.copyfile(self.res.root / "figures" / f"{name}.png", self.img / f"{name}.png")
        return self.image(f"{name}.png", self.captions.get(name, ""))

    def image(self, file: str, caption: str) -> str:
        self.images.append(file)
        rel = os.path.relpath(self.img / file, self.doc.resolve().parent if self.doc.is_absolute() else self.doc.parent)
        return f"![{file}]({rel})\n\n*{caption}*"

    # --- sections -------------------------------------------------------------------------------

    def header(self) -> str:
        res, c = self.res, self.res.config
        runs, dropped = res.table("runs"), res.table("dropped")
        short = ""
        if res.preset == "paper-short":
            short = (f" The preset `paper-short` is the paper preset with seeds cut where training is costliest: the "
                     f"main grid (d = {res.d_model}) keeps seeds {', '.join(map(str, c.get('seeds', [])))}, the size "
                     f"sweep's other sizes have seeds {', '.join(map(str, c.get('size_seeds', [])))} and the "
                     f"variants seeds {', '.join(map(str, c.get('variant_seeds') or c.get('seeds', [])))}.")
        plan = [["architectures × tasks", f"{', '.join(c.get('archs', []))} × {', '.join(c.get('tasks', []))}"],
                ["hidden size (main grid)", res.d_model], ["seeds (main grid)", ", ".join(map(str, c.get("seeds", [])))],
                ["size sweep (GRU, Multi-Object)", f"d = {', '.join(map(str, c.get('sizes', [])))}; seeds "
                                                  f"{', '.join(map(str, c.get('size_seeds', [])))}"],
                ["variants", "; ".join(f"{v[0]} ({v[1]}, {v[2]})" for v in c.get("variants", [])) or "none"],
                ["alignment maps", ", ".join(c.get("maps", []))],
                ["training", json.dumps(c.get("train", {}))
                 + "".join(f"; {a}: {json.dumps(o)}" for a, o in c.get("arch_train", {}).items())],
                ["DAS options", json.dumps(c.get("das", {})) + f" (pairs: {self.das_pairs()})"],
                ["full swap", f"{json.dumps(c.get('fullswap', {}))}, {c.get('fullswap_n', '—')} pairs per run"],
                ["started / finished (the last sitting)",
                 f"{res.meta.get('started', '—')} / {res.meta.get('finished', '—')}"],
                ["time", f"the jobs' own time {res.meta.get('job_seconds', math.nan) / 3600:.2f} h (every job, "
                         f"whichever sitting ran it); the last sitting's wall time "
                         f"{res.meta.get('wall_seconds', math.nan) / 3600:.2f} h ({res.meta.get('wall_seconds', math.nan):.0f} s: "
                         "a stopped reproduction resumes from its cache, so this is the whole wall time only when "
                         "it ran in one sitting)"],
                ["hardware", ", ".join(f"{k} {v}" for k, v in res.meta.get("hardware", {}).items())],
                ["plan (`--dry-run` on an empty folder, 2 workers)", planned(res.preset)],
                ["runs analysed / dropped (never reached the criterion)", f"{len(runs)} / {len(dropped)}"]]
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return (f"# Results: the paper's figures as numvars reproduces them\n\n"
                f"<!-- generated by python benchmarks/results_page.py {res.root}; do not edit by hand -->\n\n"
                f"Preset **`{res.preset}`**, results folder `{res.root}`, page generated {now}.{short}\n\n"
                f"**The paper's values are digitized**: the paper (ICLR 2025 version) prints no tables, so every "
                f"paper number here was read off its figures by pixel measurement (src/numvars/data/paper_values.json) "
                f"and is approximate. Intervals are 95% intervals over seeds (a bootstrap with 3 or more seeds, the "
                f"range of two, none with one). Terms are in [concepts](concepts.md); why cells differ from the "
                f"paper is measured in [fidelity](fidelity.md).\n\n"
                f"Every number below comes from `{self.cmd}` (then `python benchmarks/results_page.py "
                f"{res.root}`). The thresholds of the verdicts: a cell matches the paper when |ours − paper| ≤ "
                f"{THRESHOLDS['match']:.2f}; \"A ≫ B\" needs A − B ≥ {THRESHOLDS['much_greater']:.2f}; \"weaker\" "
                f"needs a gap ≥ {THRESHOLDS['weaker']:.2f}; \"rises\" a rise ≥ {THRESHOLDS['rises']:.2f}; "
                f"\"falls\" a fall ≥ {THRESHOLDS['falls']:.2f}.\n\n## What ran\n\n" + table(["what", "value"], plan))

    def das_pairs(self) -> str:
        das = {**{k: getattr(DASOptions(), k) for k in ("n_train", "n_val", "n_test")}, **self.res.config.get("das", {})}
        return f"{das['n_train']:,} train / {das['n_val']:,} validation / {das['n_test']:,} test per alignment"

    def fig2(self) -> str:
        cells, res = self.cells, self.res
        maps = [m for m in dict.fromkeys(cells["map"]) if m != "—"]
        head = ["arch", "task", "measure", "paper (digitized)", *[f"ours, {mp} map" for mp in maps], "n",
                "controls (Up-Down count)"]
        rows = []
        for (arch, task, measure), g in cells.groupby(["arch", "task", "measure"], sort=False):
            first = g.iloc[0]
            row = [arch, task, P.MEASURES[measure], interval(first.paper, first.paper_low, first.paper_high)]
            if measure == "full_swap":          # a full-state swap has no alignment map
                row += [self.fig2_cell(first)] + ["(no map)"] * (len(maps) - 1)
            else:
                row += [self.fig2_cell(g[g["map"] == mp].iloc[0]) if (g["map"] == mp).any() else "—" for mp in maps]
            row += [int(g["n"].max()), self.controls(arch, task) if measure == "up_down_count" else ""]
            rows.append(row)
        footer = f"benchmarks/results_page.py on {res.root} (preset {res.preset})"
        P.draw_fig2(cells, self.img / "figure2.png", footer)
        self.images.append("figure2.png")
        judged = cells[cells["verdict"].isin(["match", "differs"])]
        lines = []
        for mp in maps + ["—"]:
            j = judged[judged["map"] == mp]
            if len(j):
                worst = j.loc[j["diff"].abs().idxmax()]
                lines.append(f"{'full swap' if mp == '—' else mp + ' map'}: {int((j['verdict'] == 'match').sum())} of "
                             f"{len(j)} cells within {THRESHOLDS['match']:.2f} of the paper (mean |Δ| "
                             f"{j['diff'].abs().mean():.2f}; largest: {worst.arch} "
                             f"{worst.task} {P.MEASURES[worst.measure]}, {worst.ours:.2f} vs {worst.paper:.2f})")
        notes = cells[cells["note"] != ""].drop_duplicates("note")
        named = lambda n: ", ".join(f"{r.arch} {r.task} {P.MEASURES[r.measure]} ({r.map})"  # noqa: E731
                                    for r in cells[cells["note"] == n].itertuples())
        causes = "\n".join(f"- {named(n)}: {n}" for n in notes["note"])
        runs = res.table("runs")
        main = runs[(runs["d_model"] == res.d_model) & (runs["variant"] == "default")]
        per = {f"{a}/{t}": seeds_of(g) for (a, t), g in main.groupby(["arch", "task"], sort=False)}
        seeds = f"{next(iter(per.values()))} in every cell" if len(set(per.values())) == 1 else \
            "; ".join(f"{k}: {v}" for k, v in per.items())
        return (f"## Figure 2: IIA by architecture, task and program\n\n"
                f"Made by `{self.cmd}` (analysis/headline.csv, analysis/iia_table.csv). Hidden size {res.d_model}, DAS "
                f"with k = d/2, {self.das_pairs()}; full swap on {res.config.get('fullswap_n', '—')} pairs per run. "
                f"Seeds (after dropped runs): {seeds}. Each cell: ours, the mean over seeds [interval]; nt: the IIA on "
                f"non-trivial pairs only (pairs whose swap changes the program's prediction); Δ = ours − paper, ✗ "
                f"where |Δ| > {THRESHOLDS['match']:.2f}. The untrained control is the same DAS on an untrained copy "
                f"(one value per map), a random orthogonal map and the identity map, on the control seeds "
                f"{', '.join(map(str, res.config.get('control_seeds', [])))}.\n\n"
                + table(head, rows) + "\n\n**Verdict:** " + "; ".join(lines) + "."
                + (f" Where docs/fidelity.md measured a cause for a miss:\n\n{causes}" if causes else "") + "\n\n"
                + self.image("figure2.png", P.fig2_caption(cells, res)) + "\n\n" + self.copy_figure("iia"))

    def controls(self, arch: str, task: str) -> str:
        """The Up-Down count's controls: the untrained copy per map, the random and identity maps."""
        iia = self.res.table("iia_table")
        ud = iia[(iia["arch"] == arch) & (iia["task"] == task) & (iia["program"] == "up_down")
                 & (iia["variable"] == "count")]
        if ud.empty:
            return "—"
        return (f"untrained {' / '.join(num(v) for v in ud['untrained_mean'])}, random map "
                f"{num(ud['random_mean'].mean())}, identity map {num(ud['identity_mean'].mean())}")

    @staticmethod
    def fig2_cell(r) -> str:
        cell = interval(r.ours, r.ci_low, r.ci_high)
        if not math.isnan(r.nontrivial):
            cell += f" (nt {r.nontrivial:.2f})"
        if not math.isnan(r.paper) and not math.isnan(r.ours):
            cell += f" Δ {signed(r['diff'])}"
        return cell + (" ✗" if r.verdict == "differs" else "")

    def fig7(self) -> str:
        iia, paper = self.res.table("iia_table"), self.res.paper["fig7"]["cells"]
        if iia.empty:
            return ""
        variables = [("up_down", "count"), ("up_up", "demo_count"), ("up_up", "resp_count")]
        rows, diffs = [], []
        for mp in [m for m in dict.fromkeys(iia["map"])]:
            for (arch, task), g in iia[iia["map"] == mp].groupby(["arch", "task"], sort=False):
                row = [arch, task, mp]
                for program, variable in variables:
                    r = g[(g["program"] == program) & (g["variable"] == variable)]
                    pv = paper.get(f"{arch}/{task}", {}).get(variable)
                    ours = float(r["mean"].iloc[0]) if len(r) else math.nan
                    pm = P.paper_cell(pv)[0] if pv else math.nan
                    if not (math.isnan(ours) or math.isnan(pm)):
                        diffs.append((mp, abs(ours - pm)))
                    row.append(interval(ours, *(r[["ci_low", "ci_high"]].iloc[0] if len(r) else (math.nan,) * 2))
                               + f" · paper {num(pm)}")
                pv = paper.get(f"{arch}/{task}", {}).get("phase")
                row.append(f"not run · paper {num(P.paper_cell(pv)[0]) if pv else '—'}")
                rows.append(row)
        verdict = "; ".join(f"{mp} map: {sum(d <= THRESHOLDS['match'] for m, d in diffs if m == mp)} of "
                            f"{sum(m == mp for m, _ in diffs)} cells within {THRESHOLDS['match']:.2f}"
                            for mp in dict.fromkeys(m for m, _ in diffs))
        return ("## Figure 7 (supplement): IIA per variable\n\n"
                f"Made by `{self.cmd}` (analysis/iia_table.csv): every aligned variable at k = d/2, mean over seeds "
                "[interval] over the seeds of Figure 2, beside the paper's Figure 7 (digitized). The preset aligns "
                "Up-Down's count and Up-Up's two counts; it does not align the phase variable (`numvars explain RUN variables=all` does), so the "
                "Phase column has the paper's value only.\n\n"
                + table(["arch", "task", "map", "Count (Up-Down)", "Demo Count (Up-Up)", "Resp Count (Up-Up)", "Phase"],
                        rows) + f"\n\n**Verdict:** {verdict or 'no comparable cells'}.")

    def size(self) -> str:
        sweep, paper = self.res.table("size_sweep"), self.res.paper["fig3_size"]["by_d"]
        if sweep.empty:
            return "## Figure 3: IIA by hidden size\n\n_(this folder has no size sweep)_"
        rows, diffs = [], []
        for r in sweep.itertuples():
            pv = paper.get(str(int(r.d_model)))
            pm, plo, phi = P.paper_cell(pv) if pv else (math.nan,) * 3
            if not math.isnan(pm):
                diffs.append(abs(r.mean - pm))
            rows.append([int(r.d_model), interval(r.mean, r.ci_low, r.ci_high), int(r.n), num(r.untrained_mean),
                         num(r.random_mean), interval(pm, plo, phi), "—" if math.isnan(pm) else signed(r.mean - pm)])
        rise = self.size_rise(sweep)
        seeds = self.res.table("size_points").groupby("d_model")["seed"].apply(lambda s: ", ".join(map(str, sorted(s))))
        return ("## Figure 3 (left): Up-Down count IIA by hidden size\n\n"
                f"Made by `{self.cmd}` (analysis/size_sweep.csv): GRUs on Multi-Object, Up-Down count, k = d/2, "
                f"{self.das_pairs()}; seeds per size: {'; '.join(f'd = {d}: {s}' for d, s in seeds.items())}. "
                "Controls on the control seeds only.\n\n"
                + table(["d", "ours [interval]", "n", "untrained", "random map", "paper [interval]", "Δ"], rows)
                + f"\n\n**Verdict:** {sum(d <= THRESHOLDS['match'] for d in diffs)} of {len(diffs)} sizes within "
                f"{THRESHOLDS['match']:.2f} of the paper; {rise[1]}.\n\n" + self.copy_figure("size_sweep"))

    def size_rise(self, sweep: pd.DataFrame) -> tuple[str, str]:
        if len(sweep) < 2:
            return "not measured", "one size only: no trend"
        s = sweep.sort_values("d_model")
        rho = pd.Series(s["mean"].to_numpy()).corr(pd.Series(s["d_model"].to_numpy()), method="spearman")
        gain = s["mean"].iloc[-1] - s["mean"].iloc[0]
        holds = rho > 0 and gain >= THRESHOLDS["rises"]
        return ("holds" if holds else "does not hold",
                f"IIA {'rises' if holds else 'does not rise'} with size (d = {int(s['d_model'].iloc[0])} → "
                f"{int(s['d_model'].iloc[-1])}: {s['mean'].iloc[0]:.2f} → {s['mean'].iloc[-1]:.2f}, Spearman ρ over "
                f"the means {signed(rho)})")

    def gradience(self) -> str:
        grid, diff, paper = self.res.table("gradience_grid"), self.res.table("gradience_diff"), self.res.paper["fig4_gradience"]
        if grid.empty:
            return "## Figure 4: graded IIA\n\n_(no GRU Multi-Object pairs in this folder)_"
        by_base = grid.groupby("base_value").apply(lambda g: pd.Series(
            {"iia": np.average(g["iia"], weights=g["pairs"]), "pairs": g["pairs"].sum()}), include_groups=False)
        rows = [[int(b), num(r.iia), int(r.pairs), num(paper["by_base_count"].get(str(int(b))))]
                for b, r in by_base.iterrows()]
        fall = self.count_fall(by_base)
        drows = []
        for d, g in diff.groupby("d_model"):
            g = g.sort_values("abs_diff")
            pv = paper["by_distance"].get(str(int(d)), [math.nan, math.nan])
            far = g[g["abs_diff"] >= g["abs_diff"].max() - 1]
            drows.append([int(d), num(g["iia"].iloc[0]), f"{num(np.average(far['iia'], weights=far['pairs']))} "
                          f"(distances {int(far['abs_diff'].min())}–{int(far['abs_diff'].max())})",
                          int(g["pairs"].sum()), "—" if math.isnan(pv[0]) else f"{num(pv[0])} at 0 → {num(pv[1])} at 18–19"])
        return ("## Figure 4: graded IIA (by count and by count distance)\n\n"
                f"Made by `{self.cmd}` (analysis/gradience_grid.csv, analysis/gradience_diff.csv): every test pair "
                f"of the GRUs on Multi-Object (the first map, seeds pooled: {self.gru_seeds()}), d = {self.res.d_model} "
                "for the count table and every size for the distance table. The paper pools sizes on the left; ours "
                "is the main size only.\n\n### By the base (original) count\n\n"
                + table(["base count", "IIA", "pairs", "paper (digitized)"], rows)
                + f"\n\n**Verdict:** {fall[1]}.\n\n### By |base − source|, per hidden size\n\n"
                + table(["d", "IIA at distance 0", "IIA at the two largest distances", "pairs", "paper (digitized)"], drows)
                + "\n\n" + self.copy_figure("gradience_heatmap") + "\n\n" + self.copy_figure("gradience_diff"))

    def gru_seeds(self) -> str:
        runs = self.res.table("runs")
        gru = runs[(runs["arch"] == "gru") & (runs["task"] == "multi_object") & (runs["variant"] == "default")]
        return "; ".join(f"d = {int(d)}: seeds {seeds_of(g)}" for d, g in gru.groupby("d_model")) or "none"

    def count_fall(self, by_base: pd.DataFrame) -> tuple[str, str]:
        if len(by_base) < 4:
            return "not measured", "too few base counts to judge a trend"
        b = by_base.index.to_numpy(float)
        lo_cut, hi_cut = np.quantile(b, [0.25, 0.75])
        low, high = by_base[b <= lo_cut], by_base[b >= hi_cut]
        mean = lambda x: np.average(x["iia"], weights=x["pairs"])  # noqa: E731
        gap = mean(low) - mean(high)
        slope = np.polyfit(b, by_base["iia"].to_numpy(float), 1, w=np.sqrt(by_base["pairs"].to_numpy(float)))[0]
        holds = gap >= THRESHOLDS["falls"] and slope < 0
        return ("holds" if holds else "does not hold",
                f"IIA {'falls' if holds else 'does not fall'} with the count: base counts ≤ {lo_cut:.0f} "
                f"{mean(low):.2f}, ≥ {hi_cut:.0f} {mean(high):.2f} (gap {signed(gap)}; weighted slope {signed(slope, 3)} per "
                f"count); the paper: ≈ 0.88 at 1, ≈ 0.91 at 5–10, ≈ 0.75 at 20")

    def dynamics(self) -> str:
        runs, pooled, curves = self.res.table("dynamics_runs"), self.res.table("dynamics_pooled"), self.res.raw("dynamics")
        if runs.empty:
            return "## Figure 3 (right): dynamics\n\n_(no dynamics runs in this folder)_"
        rows = []
        for r in runs.itertuples():
            c = curves[curves["run_name"] == r.run_name].sort_values("epoch")
            onset = lambda col: next((int(e) for e, v in zip(c["epoch"], c[col]) if v >= 0.5), None)  # noqa: E731
            rows.append([r.arch, r.task, int(r.d_model), int(r.seed), num(r.r), int(r.n), onset("trial_accuracy") or "—",
                         onset("iia") or "—", num(r.iia_at_criterion), num(r.iia_last), int(r.n_after)])
        pooled_rows = [[r.scope, num(r.r), f"{r.p:.1g}" if not math.isnan(r.p) else "—", int(r.n)]
                       for r in pooled.itertuples()]
        rise = self.criterion_rise(runs)
        gaps = [r[7] - r[6] for r in rows if isinstance(r[6], int) and isinstance(r[7], int)]
        never = sum(not isinstance(r[7], int) for r in rows)
        together = "; ".join(
            ([f"IIA reaches 0.5 a median {np.median(gaps):.0f} epochs after accuracy does ({len(gaps)} runs)"]
             if gaps else []) + ([f"IIA never reaches 0.5 in {never} of {len(rows)} runs"] if never else []))
        everything = pooled[pooled["scope"] == "all"]
        r_all = f"pooled r between accuracy and IIA {num(everything['r'].iloc[0])} (the paper prints no coefficient); " \
            if len(everything) else ""
        das = self.res.config.get("dynamics_das", {})
        return ("## Figure 3 (right): IIA and accuracy over training\n\n"
                f"Made by `{self.cmd}` (tables/dynamics.csv, analysis/dynamics_runs.csv): Up-Down count IIA (DAS "
                f"{json.dumps(das)}) at every saved checkpoint of the dynamics runs "
                f"({', '.join('/'.join(x) for x in map(tuple, self.res.config.get('dynamics', [])))}), d = "
                f"{self.res.d_model}. The paper's curves are GRUs of sizes 8/16/32/48 on Multi-Object over 600 "
                "epochs: accuracy and IIA leave 0 at about the same epoch (≈ 25–170 by size) and plateau together; "
                "final IIA ≈ 0.68 (d = 8) to ≈ 0.99 (d = 48). Onset: the first checkpoint at ≥ 0.5.\n\n"
                + table(["arch", "task", "d", "seed", "r (acc, IIA)", "checkpoints", "accuracy ≥ 0.5 at epoch",
                         "IIA ≥ 0.5 at epoch", "IIA at criterion", "IIA last", "checkpoints after criterion"], rows)
                + "\n\nPooled Pearson r between trial accuracy and IIA over checkpoints:\n\n"
                + table(["pooled over", "r", "p", "checkpoints"], pooled_rows)
                + f"\n\n**Verdict:** {r_all}{together + '; ' if together else ''}{rise[1]}.\n\n"
                + self.copy_figure("dynamics"))

    def criterion_rise(self, runs: pd.DataFrame) -> tuple[str, str]:
        rec = runs[(runs["arch"] != "transformer") & (runs["n_after"] >= 2)]
        if rec.empty:
            return ("not measured", "no recurrent dynamics run has two or more checkpoints after the criterion, so "
                                    "whether IIA keeps rising past it is not measured here")
        gain = (rec["iia_last"] - rec["iia_at_criterion"]).to_numpy()
        holds = gain.mean() >= THRESHOLDS["rises"]
        return ("holds" if holds else "does not hold",
                f"recurrent IIA {'rises' if holds else 'does not rise'} past the criterion: mean gain from the "
                f"criterion to the last checkpoint {signed(gain.mean())} over {len(rec)} runs "
                f"({', '.join(signed(g) for g in gain)})")

    def oor_by_arch(self) -> pd.DataFrame:
        """Trial accuracy by count per architecture, tasks pooled (main size, default variant): mean and interval
        over runs; `past` = count − the training range's top."""
        oor = self.res.raw("oor")
        if oor.empty:
            return oor
        oor = oor[(oor["d_model"] == self.res.d_model) & (oor["variant"] == "default")]
        per_run = oor.groupby(["arch", "count", "run_name"], as_index=False)["accuracy"].mean()
        rows = [{"arch": a, "count": int(c), **mean_ci(g["accuracy"])} for (a, c), g in per_run.groupby(["arch", "count"])]
        return pd.DataFrame(rows).assign(past=lambda d: d["count"] - self.res.train_max)

    def oor(self) -> str:
        by = self.oor_by_arch()
        if by.empty:
            return "## Figure 6: out-of-range accuracy\n\n_(no out-of-range evaluation in this folder)_"
        top, paper = self.res.train_max, self.res.paper["fig6_oor"]
        archs = [a for a in P.PAPER_ARCHS if a in set(by["arch"])]
        inside = {a: by[(by["arch"] == a) & (by["past"] <= 0)]["mean"].mean() for a in archs}
        rows = [["1–" + str(top), *[f"{num(inside[a])}" for a in archs], *["≈ 1.00" for _ in archs]]]
        for past in sorted(set(by.loc[by["past"] > 0, "past"])):
            cells = []
            for a in archs:
                r = by[(by["arch"] == a) & (by["past"] == past)]
                cells.append(interval(*r[["mean", "ci_low", "ci_high"]].iloc[0]) if len(r) else "—")
            pv = [num(paper["by_arch"].get(a, {}).get(str(paper["train_max"] + past))) for a in archs]
            rows.append([f"{top + past} (+{past})", *cells, *pv])
        furthest = self.furthest(by)
        sizes = self.oor_sizes()
        oor = self.res.raw("oor")
        n = oor[(oor["d_model"] == self.res.d_model) & (oor["variant"] == "default")].groupby("arch")["run_name"].nunique()
        return ("## Figure 6: task accuracy in and past the training range\n\n"
                f"Made by `{self.cmd}` (tables/oor.csv): trial accuracy on {self.res.config.get('oor_per_count', '—')} "
                f"sequences per target count up to {self.res.config.get('oor_max', '—')}, d = {self.res.d_model}, "
                f"tasks pooled per architecture, mean over runs [interval over runs] (runs: "
                f"{', '.join(f'{a} {n.get(a, 0)}' for a in archs)}). The paper's "
                f"training range is 1–{paper['train_max']}, ours 1–{top}; counts past the range are compared by "
                f"their distance past it (+1, +2, …).\n\n"
                + table(["count", *[f"{a} (ours)" for a in archs], *[f"{a} (paper)" for a in archs]], rows)
                + f"\n\n**Verdict:** {furthest[1]}.\n\n" + sizes + "\n\n" + self.copy_figure("oor"))

    def furthest(self, by: pd.DataFrame) -> tuple[str, str]:
        past = by[by["past"] > 0].groupby("arch")["mean"].mean()
        if len(past) < 2:
            return "not measured", "one architecture only: no comparison"
        best = past.idxmax()
        text = ", ".join(f"{a} {v:.2f}" for a, v in past.sort_values(ascending=False).items())
        if "lstm" not in past:
            return "not measured", f"no LSTM in this folder (mean accuracy past the range: {text})"
        holds = best == "lstm"
        return ("holds" if holds else "does not hold",
                f"{'the LSTM' if holds else best} extrapolates furthest (mean accuracy past the training range: {text}); "
                "the paper: the LSTM")

    def oor_sizes(self) -> str:
        oor = self.res.raw("oor")
        sel = oor[(oor["arch"] == "gru") & (oor["task"] == "multi_object") & (oor["variant"] == "default")]
        if sel["d_model"].nunique() < 2:
            return ""
        m = sel.groupby(["d_model", "count"])["accuracy"].mean().reset_index()
        zero = self.res.paper["fig6_oor"]["by_size_zero_at"]
        rows = []
        for d, g in m.groupby("d_model"):
            g = g[g["count"] > self.res.train_max].sort_values("count")
            at = next((int(c) for c, a in zip(g["count"], g["accuracy"]) if a <= 0.05), None)
            rows.append([int(d), (at or f"> {int(g['count'].max())}") if len(g) else "—", zero.get(str(int(d)), "—")])
        return ("GRUs on Multi-Object by size (the paper's right panel): the first count past the range where the mean "
                "accuracy is ≤ 0.05.\n\n" + table(["d", "ours", "paper (≈ count reaching 0)"], rows))

    def variants(self) -> str:
        var, paper = self.res.table("variants"), self.res.paper["variants"]
        if var.empty and not self.res.config.get("variants"):
            return "## Variants: NPE, void tokens, the minimal task\n\n_(this preset trains no variants)_"
        rows = [[r.arch, r.task, r.variant, interval(r.mean, r.ci_low, r.ci_high), int(r.n) if not math.isnan(r.n) else 0,
                 interval(r.fullswap_mean, r.fullswap_ci_low, r.fullswap_ci_high),
                 num(paper["void_full_swap"].get(f"{r.arch}/{r.task}")) if r.variant == "void" else "—"]
                for r in var.itertuples()]
        att = self.attention_tests()
        att_rows = [[r["variant"], r["arch"], r["task"], r["seed"], r["layers"], r["n"], num(r["base"]), num(r["add"]),
                     num(r["remove"])] for r in att]
        ran = {r["variant"] for r in att}
        missing = sorted({v[0] for v in self.res.config.get("variants", [])} - ran)
        minimal = [r for r in att if r["variant"] == "minimal"]
        moved = [v for r in minimal for v in (r["add"], r["remove"])]
        verdict = ("the minimal 1-layer NPE model moves the EOS by exactly one in "
                   f"{min(moved):.2f}–{max(moved):.2f} of trials (paper: {paper['attention_minimal']:.2f})") if minimal else \
            "the attention test did not run on the minimal variant in this folder"
        swaps = var[var["variant"] != "default"]
        default = var[var["variant"] == "default"].set_index(["arch", "task"])["fullswap_mean"]
        swap_text = "; ".join(f"{r.arch} {r.task} {r.variant}: full swap {num(r.fullswap_mean)} vs default "
                              f"{num(default.get((r.arch, r.task), math.nan))}" for r in swaps.itertuples())
        return ("## Variants: NPE, void tokens, the minimal task\n\n"
                f"Made by `{self.cmd}` (analysis/variants.csv): Up-Down count IIA and the Context-Distributed full "
                f"swap per variant (npe: no positional encoding; void: Variable-Length task, void_prob 0.2; minimal: "
                f"Single-Object without BOS or trigger, 1-layer NPE Transformer), seeds "
                f"{', '.join(map(str, self.res.config.get('variant_seeds') or self.res.config.get('seeds', [])))}, "
                f"beside the default. The paper's Figure 11 gives the void Transformers' full swap.\n\n"
                + table(["arch", "task", "variant", "Up-Down count [interval]", "n", "full swap [interval]",
                         "paper full swap"], rows)
                + "\n\n### The attention test\n\nEvery attention test found in the folder's runs "
                "(runs/*/align/attention-*/result.json; the preset runs it inside `explain` on the main Transformers): "
                "one demo token's key/value added to (or removed from) every response-phase query, and the fraction "
                "of trials whose EOS moves by exactly one.\n\n"
                + table(["variant", "arch", "task", "seed", "layers edited", "trials", "unedited accuracy",
                         "add: EOS +1", "remove: EOS −1"], att_rows)
                + (f"\n\nNot run on the variants {', '.join(missing)}: `numvars attention RUN n=500` on one of their "
                   f"runs measures it (or rerun this page with --run-attention 500)." if missing else "")
                + f"\n\n**Verdict:** {swap_text or 'no variants in this folder'}; {verdict}.")

    def attention_tests(self) -> list[dict]:
        runs = self.res.table("runs").set_index("run_name")
        out = []
        for result in sorted(self.res.root.glob("runs/*/align/attention-*/result.json")):
            name = result.parents[2].name
            if name not in runs.index:
                continue
            doc, r = json.loads(result.read_text()), runs.loc[name]
            out.append({"variant": r["variant"], "arch": r["arch"], "task": r["task"], "seed": int(r["seed"]),
                        "layers": ", ".join(map(str, doc.get("layers", []))), "n": doc.get("n"),
                        "base": doc.get("base_accuracy", math.nan), "add": doc["accuracy"].get("add", math.nan),
                        "remove": doc["accuracy"].get("remove", math.nan)})
        return sorted(out, key=lambda r: (r["variant"] != "default", r["variant"], r["task"], r["seed"]))

    def beyond(self) -> str:
        explain, aligned = self.res.table("explain"), self.res.table("align_models")
        expected = {"gru": "up_down", "lstm": "up_down", "transformer": "ctx_distributed"}
        rows = [[r.arch, r.task, int(r.seed), f"**{r.best}** ({r.grade})" if isinstance(r.grade, str) else f"**{r.best}**",
                 r.verdict] for r in explain.itertuples()]
        agree = sum(expected.get(r.arch) == r.best for r in explain.itertuples())
        arows = [[r.model_a, r.model_b, r.direction.replace("<-", " ← "), num(r.iia), num(r.iia_nontrivial), int(r.k)]
                 for r in aligned.itertuples()]
        pairs = self.res.config.get("align_models", [])
        k = self.k_section()
        return ("## Beyond the paper\n\n### Which program does each model run? (`explain`)\n\n"
                f"Made by `{self.cmd}` (analysis/explain.csv; each run's explain/explain.html has the evidence): "
                f"`numvars explain` on the main models of seeds {', '.join(map(str, self.res.config.get('explain_seeds', [])))} "
                f"with {json.dumps(self.res.config.get('explain', {}))}.\n\n"
                + table(["arch", "task", "seed", "best program (grade)", "verdict"], rows)
                + f"\n\n**Verdict:** {agree} of {len(explain)} models get the program the paper assigns their "
                "architecture (GRU, LSTM: Up-Down; Transformer: Context-Distributed).\n\n"
                "### Cross-model alignment (`align_models`)\n\n"
                f"Made by `{self.cmd}` (analysis/align_models.csv): for each model pair "
                f"({'; '.join(' with '.join('/'.join(map(str, m)) for m in p) for p in pairs) or 'none'}) one map "
                "per model, learned so that B's aligned count can stand in for A's (a ← b: B's count put into A; "
                "a ← a, b ← b: each model with itself through the shared maps).\n\n"
                + table(["model A", "model B", "direction", "IIA", "non-trivial", "k"], arows)
                + "\n\n**Verdict:** " + self.align_verdict(aligned) + "\n\n" + k)

    @staticmethod
    def align_verdict(aligned: pd.DataFrame) -> str:
        if aligned.empty:
            return "no cross-model alignments in this folder."
        cross = aligned[aligned["direction"].isin(["a<-b", "b<-a"])]
        own = aligned[~aligned["direction"].isin(["a<-b", "b<-a"])].groupby(["model_a", "model_b"])["iia"].mean()
        parts = [f"{a} ↔ {b}: across the models {g['iia'].mean():.2f} (each model with itself {own.get((a, b), math.nan):.2f})"
                 for (a, b), g in cross.groupby(["model_a", "model_b"], sort=False)]
        return "; ".join(parts) + " (the paper's arXiv TL;DR: GRU ↔ Transformer alignment is low)."

    def k_section(self) -> str:
        sweeps = P.k_sweeps(self.res)
        if sweeps.empty:
            return ""
        learned = sweeps[(sweeps["control"] == "none") & (sweeps["program"] == "up_down") & (sweeps["variable"] == "count")]
        ks = sorted(set(learned["k"]))
        rows = []
        for (arch, task, seed, site, map_), g in learned.groupby(["arch", "task", "seed", "site", "map"], sort=False):
            iia = dict(zip(g["k"], g["iia"]))
            rows.append([arch, task, int(seed), site, map_, *[num(iia.get(k)) for k in ks]])
        return ("### Subspace size k (explain's k sweep)\n\n"
                f"Up-Down count IIA of every explained model against the aligned subspace size k "
                f"(runs/*/explain/explain.json; sizes below d/2 are fitted only where d/2 found the variable). The "
                f"paper's pilot: {self.res.paper['other']['k_pilot']}.\n\n"
                + table(["arch", "task", "seed", "site", "map", *[f"k = {int(k)}" for k in ks]], rows)
                + ("" if len(ks) > 1 else f"\n\nOnly k = {int(ks[0])} ran (the preset's explain ks), so there is no "
                                          "curve here."))

    def other_figures(self) -> str:
        names = [n for n in ("phase_pairs", "signed_error", "pca", "attention") if n in self.drawn]
        if not names:
            return ""
        return ("## Other figures of the preset\n\nMade by `" + self.cmd + "`; the PCA trajectories correspond to the "
                "paper's PCA figure, the attention maps to its Figure 8; the phase split and the signed errors are "
                "numvars's own.\n\n" + "\n\n".join(self.copy_figure(n) for n in names))

    # --- claims ---------------------------------------------------------------------------------

    def claims_table(self) -> str:
        c, mp = self.cells, P.lead_map(self.cells)
        rows = [self.claim_recurrent(c, mp), self.claim_transformer(c, mp), self.claim_same(c, mp)]
        sweep = self.res.table("size_sweep")
        rows.append(["IIA rises with model size (Fig. 3 left)", "0.72 (d = 8) → 0.995 (d = 96)",
                     *self.size_rise(sweep)[::-1]] if len(sweep) else
                    ["IIA rises with model size (Fig. 3 left)", "0.72 (d = 8) → 0.995 (d = 96)", "no size sweep",
                     "not measured"])
        dyn = self.res.table("dynamics_runs")
        rows.append(["IIA keeps rising past the accuracy criterion (Fig. 3 right)",
                     "curves to 600 epochs: IIA plateaus ≈ 0.68–0.99 by size as accuracy reaches ≈ 1",
                     *(self.criterion_rise(dyn)[::-1] if len(dyn) else ("no dynamics runs", "not measured"))])
        grid = self.res.table("gradience_grid")
        if len(grid):
            by_base = grid.groupby("base_value").apply(lambda g: pd.Series(
                {"iia": np.average(g["iia"], weights=g["pairs"]), "pairs": g["pairs"].sum()}), include_groups=False)
            rows.append(["Graded IIA falls with the count (Fig. 4)", "≈ 0.91 at counts 5–10 → ≈ 0.75 at 20",
                         *self.count_fall(by_base)[::-1]])
        by = self.oor_by_arch()
        rows.append(["The LSTM extrapolates furthest (Fig. 6)", "LSTM ≈ 0.93/0.80/0.62 at 21/22/23; GRU ≈ 0.65/0.39/0.18",
                     *(self.furthest(by)[::-1] if len(by) else ("no out-of-range evaluation", "not measured"))])
        return ("## The paper's qualitative claims\n\n"
                f"Each verdict is computed from the tables above with the thresholds stated at the top (Figure 2 "
                f"claims with the {mp} map); \"not measured\" where this folder lacks the data.\n\n"
                + table(["claim", "paper (digitized)", "what we measured", "verdict"], rows))

    def gap(self, c, mp, arch, task, a, b) -> float:
        get = lambda m: c[(c["arch"] == arch) & (c["task"] == task) & (c["measure"] == m)  # noqa: E731
                          & (c["map"] == (mp if m != "full_swap" else "—"))]["ours"].mean()
        return get(a) - max(get(m) for m in b)

    def claim_recurrent(self, c, mp):
        cells = [(a, t) for a in ("gru", "lstm") for t in ("multi_object", "single_object")
                 if len(c[(c["arch"] == a) & (c["task"] == t)])]
        gaps = {(a, t): self.gap(c, mp, a, t, "up_down_count", ("up_up_best_count", "full_swap")) for a, t in cells}
        return self.gap_claim("Recurrent models: Up-Down count ≫ Up-Up best and ≫ full swap (Fig. 2, Multi/Single)",
                              "GRU/LSTM Up-Down 0.93–0.97 vs Up-Up 0.38–0.46, full swap 0.08–0.09", gaps,
                              "Up-Down − max(Up-Up, full swap)")

    def claim_transformer(self, c, mp):
        cells = [("transformer", t) for t in P.TASKS if len(c[(c["arch"] == "transformer") & (c["task"] == t)])]
        gaps = {(a, t): self.gap(c, mp, a, t, "full_swap", ("up_down_count", "up_up_best_count")) for a, t in cells}
        return self.gap_claim("Transformers the reverse: full swap ≫ Up-Down and Up-Up (Fig. 2)",
                              "full swap 0.97–0.99 vs Up-Down 0.11–0.12, Up-Up 0.13–0.14", gaps,
                              "full swap − max(Up-Down, Up-Up)")

    @staticmethod
    def gap_claim(claim, paper, gaps, what):
        gaps = {k: v for k, v in gaps.items() if not math.isnan(v)}
        if not gaps:
            return [claim, paper, "no such cells in this folder", "not measured"]
        held = sum(v >= THRESHOLDS["much_greater"] for v in gaps.values())
        text = f"{what}: " + ", ".join(f"{a} {t.replace('_object', '')} {signed(v)}" for (a, t), v in gaps.items())
        verdict = "holds" if held == len(gaps) else "does not hold" if held == 0 else f"holds in {held} of {len(gaps)} cells"
        return [claim, paper, text, verdict]

    def claim_same(self, c, mp):
        claim, paper = ("Same-Object recurrent models align weaker (Fig. 2)", "Up-Down 0.47/0.50 vs 0.93–0.97")
        ud = c[(c["measure"] == "up_down_count") & (c["map"] == mp)].set_index(["arch", "task"])["ours"]
        parts, held, total = [], 0, 0
        for a in ("gru", "lstm"):
            if (a, "same_object") not in ud.index:
                continue
            others = [ud[(a, t)] for t in ("multi_object", "single_object") if (a, t) in ud.index]
            if not others:
                continue
            total += 1
            gap = min(others) - ud[(a, "same_object")]
            held += gap >= THRESHOLDS["weaker"]
            parts.append(f"{a}: same {ud[(a, 'same_object')]:.2f} vs others ≥ {min(others):.2f} (gap {signed(gap)})")
        if not total:
            return [claim, paper, "no Same-Object recurrent cell beside another task", "not measured"]
        verdict = "holds" if held == total else "does not hold" if not held else f"holds for {held} of {total}"
        return [claim, paper, "; ".join(parts), verdict]


if __name__ == "__main__":
    main()
