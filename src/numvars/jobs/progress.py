"""A progress bar that tells the truth: its total is the planned number of jobs from the start, and the time
it says is left comes from the plan's job costs, rescaled by the speed measured so far.

A `Budget` is what a plan expects: per group of jobs (a run directory, or "align_models"), how many jobs and
how many seconds of work still to do, and the planned seconds of each job it can name. `Progress` counts the
jobs that finish, credits the planned jobs that will not run (a run that missed its criterion, a control the
decision rule cannot use, a k sweep smaller than its bound) as soon as that is known, and reads the time left
as the planned seconds still to do over the rate measured so far (planned seconds done per second, started
from the plan's own wall-time estimate). A job the plan did not foresee raises the total, which is then
honest, not fixed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tqdm.auto import tqdm

from .costs import hms


@dataclass
class Budget:
    jobs: dict[str, int]                       # group -> planned jobs (those found done included)
    seconds: dict[str, float]                  # group -> planned seconds of its jobs still to run
    wall: float                                # the plan's estimated wall seconds
    costs: dict = field(default_factory=dict)  # job -> planned seconds (0 for a job found done)
    fallback: dict = field(default_factory=dict)   # (group, kind) or kind -> planned seconds of a job it cannot name
    kinds: dict = field(default_factory=dict)      # kind -> planned jobs

    def cost(self, job, group: str) -> float:
        if job in self.costs:
            return self.costs[job]
        return self.fallback.get((group, job.kind), self.fallback.get(job.kind, 0.0))

    @classmethod
    def of(cls, rows: list[tuple], wall: float) -> "Budget":
        """From a plan's rows: (group, kind, job or None, done, seconds) each."""
        jobs: dict[str, int] = {}
        seconds: dict[str, float] = {}
        costs, sums, kinds = {}, {}, {}
        for group, kind, j, done, s in rows:
            jobs[group] = jobs.get(group, 0) + 1
            kinds[kind] = kinds.get(kind, 0) + 1
            seconds[group] = seconds.get(group, 0.0) + s
            if j is not None:
                costs[j] = s
            if not done:
                for key in ((group, kind), kind):
                    total, n = sums.get(key, (0.0, 0))
                    sums[key] = (total + s, n + 1)
        return cls(jobs, seconds, wall, costs, {k: total / n for k, (total, n) in sums.items()}, kinds)

    @property
    def total_jobs(self) -> int:
        return sum(self.jobs.values())

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def group_of(job, result: dict | None) -> str:
    """The group a finished job counts against: its run directory (a training job's comes with its result)."""
    return str(job.get("run_dir") or (result or {}).get("run_dir") or job.kind)


class Progress:
    """One bar over the planned work of a command (several job graphs may feed it); `enabled=False` keeps the
    bookkeeping and prints nothing. phases: kind -> the line to print once every planned job of that kind has
    finished (e.g. {"train": "training done"})."""

    def __init__(self, budget: Budget | None, desc: str, enabled: bool = True, clock: Callable[[], float] = time.time,
                 phases: dict[str, str] | None = None):
        self.budget, self.clock, self.enabled = budget, clock, enabled
        self.phases = dict(phases or {})
        self.started = clock()
        self.spent = 0.0                                   # planned seconds of the jobs finished
        self.credited = 0.0                                # planned seconds of jobs that will not run
        self.done: dict[str, int] = {}                     # group -> jobs finished or credited
        self.used: dict[str, float] = {}                   # group -> planned seconds finished or credited
        self.kinds: dict[str, int] = {}                    # kind -> jobs finished
        self.label = ""
        self._skips: dict[int, tuple] = {}                 # id -> (an expander's skipped list, entries credited)
        self.n, self.total = 0, (budget.total_jobs if budget else 0)    # kept here: a disabled tqdm counts nothing
        self.bar = tqdm(total=self.total, desc=desc, unit="job", disable=not enabled, dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} jobs [{elapsed}{postfix}]")
        self._show()

    # --- what happens ------------------------------------------------------------------------------------
    def grow(self, jobs: int) -> None:
        """Jobs named without a plan (no budget): the total follows them."""
        if self.budget is None and jobs:
            self._add(jobs)
            self._show()

    def finished(self, job, result: Any, skipped=()) -> None:
        """A job is done (a group job: each of its members); `skipped`: the expander's list of (group, kind) of
        planned jobs it decided not to run, of which the ones not seen before are credited."""
        members = job.get("members")
        if members:
            for m, r in zip(members, result["members"]):
                self._count(m, r)
        else:
            self._count(job, result)
        self.label = _label(job)
        self.credit(skipped)

    def did(self, group: str, kind: str) -> None:
        """A planned piece of work that is not a job (an explain page, the report) is done."""
        if self.budget is not None:
            self._tally(_Kind(kind), group)
            self._show()

    def credit(self, skipped) -> None:
        """Credits the entries of an expander's `skipped` list, (group, kind) each, not credited before."""
        _, seen = self._skips.get(id(skipped), (skipped, 0))
        for group, kind in list(skipped)[seen:]:
            self.skip(group, kind)
        self._skips[id(skipped)] = (skipped, len(skipped))     # the list is held, so that its id stays its own
        self._show()

    def skip(self, group: str, kind: str | None = None) -> None:
        """A planned job of `group` will not run (kind None: none of the group's remaining jobs will)."""
        if self.budget is None or group not in self.budget.jobs:
            return
        left = self.budget.jobs[group] - self.done.get(group, 0)
        unused = max(0.0, self.budget.seconds[group] - self.used.get(group, 0.0))
        if kind is None:                                   # all that is left, seconds too
            jobs, seconds = max(0, left), unused
        elif left <= 0:
            return
        else:
            jobs, seconds = 1, min(self.budget.cost(_Kind(kind), group), unused)
        self.done[group] = self.done.get(group, 0) + jobs
        self.used[group] = self.used.get(group, 0.0) + seconds
        self.credited += seconds
        self._advance(jobs)

    def phase(self, text: str) -> None:
        """A line for a finished phase, above the bar."""
        if self.enabled:
            self.bar.write(f"{text} ({hms(self.clock() - self.started)} in)")

    def close(self) -> None:
        """The end: every group's unused budget is credited, and the bar stops."""
        if self.budget is not None:
            for group in self.budget.jobs:
                self.skip(group)
        self.label = ""
        self._show()
        self.bar.close()

    # --- the numbers -------------------------------------------------------------------------------------
    def _count(self, job, result) -> None:
        self._tally(job, group_of(job, result))

    def _tally(self, job, group: str) -> None:
        """One planned piece of work of `group` done: its planned seconds spent, the bar one step on."""
        seconds = self.budget.cost(job, group) if self.budget else 0.0
        self.spent += seconds
        self.done[group] = self.done.get(group, 0) + 1
        self.used[group] = self.used.get(group, 0.0) + seconds
        self.kinds[job.kind] = self.kinds.get(job.kind, 0) + 1
        if self.budget is not None and self.n >= self.total:
            self._add(1)                                   # work the plan did not foresee: said, not hidden
        self._advance(1)
        if self.budget is not None and job.kind in self.phases \
                and self.kinds[job.kind] == self.budget.kinds.get(job.kind):
            self.phase(f"{self.phases.pop(job.kind)}: {self.kinds[job.kind]} {job.kind} jobs")

    def _add(self, jobs: int) -> None:
        self.total += jobs
        self.bar.total = self.total

    def _advance(self, jobs: int) -> None:
        self.n += jobs
        self.bar.update(jobs)

    def remaining(self) -> float | None:
        """Estimated wall seconds left: planned seconds still to do over the measured rate (planned seconds done
        per second), that rate started from the plan's own (total over its wall-time estimate) and moved by
        what is measured."""
        b = self.budget
        if b is None:
            return None
        left = max(0.0, b.total_seconds - self.spent - self.credited)
        if left == 0.0:
            return 0.0
        elapsed = self.clock() - self.started
        prior_rate = b.total_seconds / b.wall if b.wall > 0 else 1.0
        prior = min(60.0, 0.05 * b.wall)                  # the plan's rate weighs as this many seconds measured
        rate = (self.spent + prior_rate * prior) / (elapsed + prior) if elapsed + prior > 0 else prior_rate
        return left / max(rate, 1e-9)

    def _show(self) -> None:
        left = self.remaining()
        eta = "" if left is None else f"{hms(left)} left"
        self.bar.set_postfix_str(", ".join(x for x in (eta, self.label) if x), refresh=True)


@dataclass(frozen=True)
class _Kind:
    """Stands for a job known only by its kind (a planned job that will not run)."""
    kind: str


def _label(j) -> str:
    p = dict(j.params)
    name = p.get("name") or p.get("run_dir", "")
    if not name and p.get("config"):
        config = dict(p["config"])
        name = f"{config.get('arch')}-{config.get('task')}-d{config.get('d_model')}-s{config.get('seed')}"
    return f"{j.kind} {str(name).rsplit('/', 1)[-1]}"[:60]
