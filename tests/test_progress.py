"""Progress bars that tell the truth: the planned total from the start, credits for planned jobs that will not
run, and a time left read from the plan's costs and the speed measured so far."""
import pytest

from numvars.jobs.engine import job, run_graph
from numvars.jobs.progress import Budget, Progress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def two_runs():
    """Run a: a train job (60 s) and two das jobs (10 s each); run b: the same; one cross-model map (20 s)."""
    rows = []
    for run in ("a", "b"):
        rows.append((run, "train", job("train", name=run), False, 60.0))
        rows += [(run, "das", job("das", run_dir=run, k=k), False, 10.0) for k in (1, 2)]
    rows.append(("align_models", "align_models", None, False, 20.0))
    return Budget.of(rows, wall=100.0)


def test_a_budget_counts_jobs_and_seconds_per_group_and_costs_a_job_it_cannot_name_by_its_kind():
    b = two_runs()
    assert b.jobs == {"a": 3, "b": 3, "align_models": 1} and b.total_jobs == 7
    assert b.seconds == {"a": 80.0, "b": 80.0, "align_models": 20.0} and b.total_seconds == 180.0
    assert b.cost(job("das", run_dir="a", k=2), "a") == 10.0
    assert b.cost(job("align_models", run_a="a", run_b="b"), "align_models") == 20.0     # by its kind
    assert b.kinds == {"train": 2, "das": 4, "align_models": 1}


def test_the_time_left_starts_at_the_plans_wall_time_and_follows_the_measured_speed():
    clock = Clock()
    bar = Progress(two_runs(), "t", enabled=False, clock=clock)
    assert bar.total == 7
    assert bar.remaining() == pytest.approx(100.0)             # the plan's own estimate, before anything ran
    clock.now += 30.0                                          # the first training run took 30 s: twice as fast
    bar.finished(job("train", name="a"), {"run_dir": "a"})
    prior_rate, prior = 180.0 / 100.0, min(60.0, 0.05 * 100.0)
    rate = (60.0 + prior_rate * prior) / (30.0 + prior)
    assert bar.remaining() == pytest.approx(120.0 / rate)
    assert bar.remaining() < 100.0 - 30.0                      # faster than planned: less left than the plan said
    assert bar.total == 7 and bar.n == 1


def test_planned_jobs_that_will_not_run_are_credited_and_the_total_never_moves():
    clock = Clock()
    bar = Progress(two_runs(), "t", enabled=False, clock=clock)
    bar.finished(job("train", name="b"), {"run_dir": "b"}, skipped=[("b", None)])   # b missed its criterion
    assert bar.n == 3 and bar.done["b"] == 3
    skipped = [("a", "das")]                                   # one of a's alignments was not needed
    bar.finished(job("train", name="a"), {"run_dir": "a"}, skipped=skipped)
    bar.finished(job("das", run_dir="a", k=1), {}, skipped=skipped)             # the same list: credited once
    assert bar.n == 6 and bar.credited == 20.0 + 10.0            # b's two alignments, a's third
    assert bar.remaining() == pytest.approx(20.0 / ((60.0 + 60.0 + 10.0 + 1.8 * 5.0) / 5.0))
    bar.close()                                                 # the cross-model map never came: credited
    assert bar.n == bar.total == 7 and bar.remaining() == 0.0


def test_a_job_the_plan_did_not_foresee_raises_the_total_once_the_plan_is_spent():
    bar = Progress(Budget.of([("a", "train", None, False, 5.0)], wall=5.0), "t", enabled=False)
    bar.finished(job("train", name="a"), {"run_dir": "a"})
    bar.finished(job("das", run_dir="a", k=9), {})
    assert bar.n == bar.total == 2


def test_a_phase_line_is_printed_when_every_planned_job_of_its_kind_is_done(capsys):
    bar = Progress(two_runs(), "t", enabled=True, phases={"train": "training done"})
    bar.finished(job("train", name="a"), {"run_dir": "a"})
    assert "training done" not in capsys.readouterr().out
    bar.finished(job("train", name="b"), {"run_dir": "b"})
    bar.close()
    assert "training done: 2 train jobs" in capsys.readouterr().out


def _work(j):
    return {"run_dir": j.get("run_dir")}


class Expand:
    """Each root names two alignments, of which the planned third is skipped."""

    def __init__(self):
        self.skipped = []

    def __call__(self, done, result):
        if done.kind != "train":
            return []
        run = done.get("name")
        self.skipped.append((run, "das"))
        return [job("das", run_dir=run, k=k) for k in (1, 2)]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_engine_feeds_a_planned_bar_and_leaves_its_total_alone(workers):
    rows = []
    for run in ("a", "b"):
        rows.append((run, "train", job("train", name=run), False, 1.0))
        rows += [(run, "das", None, False, 1.0)] * 3
    bar = Progress(Budget.of(rows, wall=4.0), "t", enabled=False)
    roots = [job("train", name="a"), job("train", name="b")]
    results, _ = run_graph(roots, _work, Expand(), jobs=workers, progress=bar)
    assert len(results) == 6
    assert bar.total == 8 and bar.n == 8                   # 6 ran, 2 credited, before any close
    assert bar.kinds == {"train": 2, "das": 4}
