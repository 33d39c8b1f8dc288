"""What `explain` runs, as engine jobs, and how the work unfolds as results come in.

Per target (a program's variable at a site), stage 1 fits each map at k = d/2 (for each DAS seed), one job
per alignment, so that `reproduce`'s grid and `explain` ask for the very same jobs and the engine runs each
once. Once all of a variable's stage-1 fits are in, its best one (site and map, by validation IIA) gets its
control, the same DAS on an untrained copy, but only if it reached validation IIA >= margin: below that no
control can be beaten by the margin, so the decision rule cannot use one (the job is counted as skipped).
Per run: the full-state swaps (of the model and of its untrained copy) where Context-Distributed is tested,
the attention test of a Transformer, and, once all of that is done, the run's evidence job (random subspaces,
isolation, continuous metric, the comparisons with rival programs; `evidence.collect`).

The k sweep does not enter the verdict: it sizes what was found. `sweep_jobs` lists it for the named
program's variables only, after the verdict (one job per variable: the ks share pairs and states); where the
plan is given `after_evidence` (the verdict, for runs on disk), the sweep follows the last evidence job in the
same graph.

`ExplainPlan` is the engine's `expand` for these jobs; `rows()` lists every job that may run, with its planned
seconds (the sweep at its bound: the largest program's variables), so that plans and progress bars know the
whole amount of work from the start; `skipped` lists the planned jobs it decided not to run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..align.maps import subspace_size
from ..align.protocol import DASOptions
from ..jobs.engine import Job, job
from ..jobs.cache import das_job, das_set_job, is_done, result_dir
from ..jobs.costs import Costs, hms
from ..jobs.progress import Budget
from ..models import TransformerLM, default_site
from .options import ExplainOptions


@dataclass(frozen=True)
class Target:
    program: str          # a built-in name, or path/to/file.py:ClassName
    variable: str
    site: str
    default_site: bool    # the model's default site: left out of the options, as everywhere else
    d: int                # the site's state size

    @property
    def half(self) -> int:
        """k = d/2, the default (as `maps.subspace_size` reads it)."""
        return subspace_size(None, self.d)


def targets(o: ExplainOptions, programs: dict, model) -> list[Target]:
    from ..align.sites import get_site

    default = default_site(model)
    sizes = {s: get_site(model, s).size for s in o.sites(model)}
    out = []
    for name, program in programs.items():
        names = program.variables if o.variables == "all" else (program.core or program.variables)
        for variable in names:
            out += [Target(getattr(program, "_spec", name), variable, s, s == default, d) for s, d in sizes.items()]
    return out


def alignment(o: ExplainOptions, t: Target, map_: str, k: int | None = None, seed: int | None = None,
              control: str | None = None) -> DASOptions:
    """The DAS options of one alignment of a target (the default site and k = d/2 left at their defaults, so
    that these are the very alignments other commands ask for)."""
    return DASOptions(program=t.program, variable=t.variable, **o.das_options(o.seed if seed is None else seed),
                      site=None if t.default_site else t.site, map=map_, k=None if k in (None, t.half) else k,
                      control=control)


def resettable(model) -> bool:
    """Whether an untrained copy can be made (see `search.untrained_copy`)."""
    return any(callable(getattr(m, "reset_parameters", None)) for m in model.modules() if m is not model)


class ExplainPlan:
    """The jobs that explain some runs (run directories, or labels of models in memory) of one model family."""

    def __init__(self, o: ExplainOptions, programs: dict, model, runs: list[str], gpu: float = 0.0,
                 evidence_jobs: bool = True, after_evidence: Callable[["ExplainPlan"], list] | None = None,
                 skipped: list | None = None):
        """after_evidence(plan): the named program's (program, variable, site, map) once every run's evidence
        is in (the verdict); the plan then names the k sweep's jobs."""
        self.o, self.programs, self.runs, self.gpu = o, programs, [str(r) for r in runs], gpu
        self.targets = targets(o, programs, model)
        self.untrained = resettable(model)
        self.attention = o.attention and isinstance(model, TransformerLM)
        self.evidence_jobs = evidence_jobs
        self.seeds = [o.seed + i for i in range(o.das_seeds)]
        self._stage1: dict[Job, tuple] = {}           # job -> (run, (program, variable), target, map)
        self._pending: dict[str, set] = {}
        self._fits: dict[tuple, list] = {}              # (run, program, variable) -> [(val IIA, target, map)]
        self.results: dict[str, dict[Job, dict]] = {r: {} for r in self.runs}
        self.after_evidence = after_evidence
        # (run, kind) of planned jobs that will not run; a caller's list when several plans feed one bar
        self.skipped: list[tuple[str, str]] = [] if skipped is None else skipped
        self._evidence: set[str] = set()               # runs whose evidence is in
        self._sweep: list[Job] | None = None

    # --- the jobs --------------------------------------------------------------------------------------
    def stage1(self, run: str) -> list[Job]:
        out = []
        for t in self.targets:
            for map_ in self.o.map_list:
                for s in self.seeds:
                    j = das_job(run, alignment(self.o, t, map_, seed=s), self.gpu)
                    self._stage1[j] = (run, (t.program, t.variable), t, map_)
                    out.append(j)
        return out

    def control(self, run: str, t: Target, map_: str) -> Job:
        return das_job(run, alignment(self.o, t, map_, control="untrained"), self.gpu)

    def swaps(self, run: str) -> list[Job]:
        out = []
        if any(not p.variables for p in self.programs.values()):
            names = [getattr(p, "_spec", n) for n, p in self.programs.items()]
            first = next(n for n, p in zip(names, self.programs.values()) if not p.variables)
            opts = {"match": "role", "seed": self.o.seed, "device": self.o.device,
                    "programs": ",".join([first, *(n for n in names if n != first)]),
                    **({"positions": self.o.positions} if self.o.positions != "all" else {})}
            for control in ((None, "untrained") if self.untrained else (None,)):
                full = {**opts, **({"control": control} if control else {})}
                out.append(job("fullswap", gpu=self.gpu, run_dir=run, options=tuple(sorted(full.items()))))
        if self.attention:
            out.append(job("attention", gpu=self.gpu, run_dir=run,
                           options=(("device", self.o.device), ("seed", self.o.seed))))
        return out

    def roots(self) -> list[Job]:
        out = []
        for run in self.runs:
            mine = self.stage1(run) + self.swaps(run)
            self._pending[run] = set(mine)
            out += mine
        return out

    def variables(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys((t.program, t.variable) for t in self.targets))

    def sweep_bound(self) -> int:
        """The most k-sweep jobs a run can get: one per variable of the program with the most (0 without a
        k below d/2)."""
        if not self.targets or len(self.o.k_values(self.targets[0].d)) < 2:
            return 0
        per_program: dict[str, set] = {}
        for t in self.targets:
            per_program.setdefault(t.program, set()).add(t.variable)
        return max(len(v) for v in per_program.values())

    def rows(self, arch: str, costs) -> list[tuple]:
        """Every job that may run, per run: (run, kind, job or None, when, done, planned seconds); a job known
        only by its kind (a control, the evidence, the sweep) has None."""
        out = []
        for run in self.runs:
            on_disk = Path(run).is_dir()
            for j in self.stage1(run) + self.swaps(run):
                done = on_disk and is_done(j)
                out.append((run, j.kind, j, "always", done, 0.0 if done else planned_seconds(costs, arch, j)))
            out += [(run, kind, None, when, False, seconds) for kind, when, seconds in self.conditional(arch, costs)]
        return out

    # --- expanding ---------------------------------------------------------------------------------------
    def owns(self, j: Job) -> bool:
        return any(j in pending for pending in self._pending.values())

    def __call__(self, done: Job, result: dict) -> list[Job]:
        """The jobs that follow a finished one (nothing for a job this plan does not own)."""
        run = next((r for r, pending in self._pending.items() if done in pending), None)
        if run is None:
            return []
        self._pending[run].discard(done)
        self.results[run][done] = result
        children = []
        if done in self._stage1:
            _, var, t, map_ = self._stage1[done]
            fits = self._fits.setdefault((run, *var), [])
            fits.append((result["summary"]["val_iia"], t, map_))
            if len(fits) == self.o.das_seeds * len(self.o.map_list) * sum(x.program == var[0] and
                                                                          x.variable == var[1] for x in self.targets):
                children += self._control_after(run, fits)
        self._pending[run] |= set(children)
        if not self._pending[run] and self.evidence_jobs and done.kind != "evidence":
            children.append(self.evidence(run))
            self._pending[run].add(children[-1])
        if done.kind == "evidence":
            self._evidence.add(run)
            if self.after_evidence is not None and self._evidence == set(self.runs):
                children += self.sweep()
        return children

    @property
    def sweep_decided(self) -> bool:
        return self._sweep is not None

    def sweep(self, named: list[tuple[str, str, str, str]] | None = None) -> list[Job]:
        """The k sweep of what the verdict names (`named`, else `after_evidence`'s), decided once; its unused
        bound is told as skipped."""
        if self._sweep is None:
            self._sweep = self.sweep_jobs(self.after_evidence(self) if named is None else named)
            for run in self.runs:
                mine = sum(j.get("run_dir") == run for j in self._sweep)
                self.skipped += [(run, "das_set")] * max(0, self.sweep_bound() - mine)
        return self._sweep

    def _control_after(self, run: str, fits: list) -> list[Job]:
        """The untrained copy's fit for a variable's best site and map, if the rule can use it."""
        if not self.untrained:
            return []
        by = {}
        for val, t, map_ in fits:
            by.setdefault((t, map_), []).append(val)
        (t, map_), vals = max(by.items(), key=lambda item: sum(item[1]) / len(item[1]))
        if sum(vals) / len(vals) < self.o.margin:
            self.skipped.append((run, "das"))
            return []
        return [self.control(run, t, map_)]

    def evidence(self, run: str) -> Job:
        """The evidence job of a run whose alignments, swaps and attention test are all done."""
        folders, swaps, attention = [], [], ""
        for j, r in self.results[run].items():
            if j.kind in ("das", "das_set"):
                folders += [a["result_dir"] for a in r.get("alignments", [r])]
            elif j.kind == "fullswap":
                swaps.append((dict(j.get("options")).get("control") or "none", r["result_dir"]))
            elif j.kind == "attention":
                attention = r["result_dir"]
        params = dict(run_dir=run, options=tuple(sorted(self.o.key().items())), alignments=tuple(sorted(set(folders))),
                      swaps=tuple(sorted(swaps)), attention=attention)
        return job("evidence", gpu=self.gpu, **params, folder=str(evidence_dir(job("evidence", **params))))

    def conditional(self, arch: str, costs) -> list[tuple[str, str, float]]:
        """(kind, when, seconds) of the jobs of one run that follow its first ones: an untrained control per
        variable (only where the rule can use it), the evidence job (scoring only) and the k sweep at its
        bound (the named program's variables only)."""
        o, n = self.o, len(self.variables())
        fit = costs.das(arch, {**o.das_options(o.seed), "map": o.map_list[-1]})
        scored = ((2 + o.random_seeds) * n + 4 * (n * (n - 1) // 2)) * o.n_eval
        ks = len(o.k_values(self.targets[0].d)) - 1 if self.targets else 0
        return [("das", "control: only above the margin", fit)] * (n if self.untrained else 0) + \
            [("evidence", "always", costs.scoring(arch, scored))] * self.evidence_jobs + \
            [("das_set", "k sweep: the named program only", fit * ks * len(self.seeds))] * self.sweep_bound()

    def sweep_jobs(self, named: list[tuple[str, str, str, str]]) -> list[Job]:
        """The k sweep below d/2 of the named program's variables, (program, variable, site, map) each, per run."""
        out = []
        by_name = {(t.program, t.variable, t.site): t for t in self.targets}
        for run in self.runs:
            for program, variable, site, map_ in named:
                t = next((x for (p, v, s), x in by_name.items() if v == variable and s == site and
                          p in (program, getattr(self.programs.get(program), "_spec", program))), None)
                ks = [k for k in self.o.k_values(t.d) if k != t.half] if t else []
                if ks:
                    out.append(das_set_job(run, [alignment(self.o, t, map_, k, s) for k in ks for s in self.seeds],
                                           self.gpu))
        return out


def evidence_dir(j: Job) -> Path:
    """Where an evidence job keeps what it found (named from everything it read)."""
    key = {"options": dict(j.get("options")), "alignments": [Path(a).name for a in j.get("alignments")],
           "swaps": [(c, Path(d).name) for c, d in j.get("swaps")], "attention": Path(j.get("attention")).name}
    return result_dir(j.get("run_dir"), "evidence", key)


def estimate(plan: ExplainPlan, arch: str, workers: int, costs=None) -> str:
    """`explain --dry-run`: the jobs per kind (certain, and those that run only if the rule can use them), with
    CPU seconds from the measured job costs, and a wall-time range on `workers` workers."""
    costs = costs or Costs.load()
    rows = plan.rows(arch, costs)
    lines = [f"{'job':<10}{'when':<34}{'jobs':>6}{'done':>6}{'CPU time':>10}"]
    table: dict[tuple, list] = {}
    for _, kind, _, when, done, seconds in rows:
        t = table.setdefault((kind, when), [0, 0, 0.0])
        t[0], t[1], t[2] = t[0] + 1, t[1] + done, t[2] + seconds
    for (kind, when), (n, done, seconds) in table.items():
        lines.append(f"{kind:<10}{when:<34}{n:>6}{done:>6}{hms(seconds):>10}")
    certain = sum(r[-1] for r in rows if r[3] == "always")
    most = sum(r[-1] for r in rows)
    lines.append(f"estimated wall time with {workers} worker(s): {hms(certain / workers)} to {hms(most / workers)} "
                 f"(conditional jobs run only where the decision rule can use them; costs: {costs.source})")
    return "\n".join(lines)


def budget(plan: ExplainPlan, arch: str, workers: int, costs=None) -> Budget:
    """What a progress bar over `explain`'s jobs expects: every job that may run (controls and the sweep at
    their bound), the wall time as if all of them ran."""
    rows = plan.rows(arch, costs or Costs.load())
    return Budget.of([(run, kind, j, done, s) for run, kind, j, _, done, s in rows],
                     sum(r[-1] for r in rows) / max(1, min(workers, len(rows))))


def planned_seconds(costs, arch: str, j: Job) -> float:
    """Planned seconds of one of explain's named jobs, from the measured job costs."""
    if j.kind == "das":
        return costs.das(arch, dict(j.get("options")))
    if j.kind == "das_set":
        return sum(costs.das(arch, dict(o)) for o in j.get("options"))
    if j.kind == "fullswap":
        return costs.fullswap(arch, dict(j.get("options")).get("n", 1000)) * 2     # every program's pairs
    return costs.attention(arch, 300)
