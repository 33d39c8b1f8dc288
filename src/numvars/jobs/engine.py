"""Running a graph of idempotent jobs: in this process, on N local worker processes, or on Ray.

A job is a small frozen value (`Job`); `work(job)` computes it (in whatever process runs it) and
returns a small picklable result; `expand(job, result)`, called here, names the jobs that may
start once it is done (a model's alignments wait for its training). Every job writes its output
to disk atomically and finds it there on a rerun, so any engine, any number of workers and any
interruption end with the same results; callers assemble their tables from `results` in their own
fixed order, never in completion order.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..errors import NumvarsError
from .progress import Progress

ENGINES = ("local", "ray")
MAX_JOBS = 1024


@dataclass(frozen=True)
class Job:
    kind: str                               # what to run: "train", "das", ...
    params: tuple[tuple[str, Any], ...]     # everything `work` needs, as sorted (key, value) pairs
    gpu: float = 0.0                        # the share of a GPU it needs (Ray packs fractional shares)

    def get(self, key: str, default=None):
        return dict(self.params).get(key, default)


def job(kind: str, gpu: float = 0.0, **params) -> Job:
    return Job(kind, tuple(sorted(params.items())), gpu)


def default_jobs() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                   # not on Linux
        return max(1, os.cpu_count() or 1)


def check_jobs(jobs: int | None) -> None:
    """Worker processes: at least one (None: the default, one per core), at most MAX_JOBS."""
    if jobs is not None and not (isinstance(jobs, int) and 1 <= jobs <= MAX_JOBS):
        raise NumvarsError(f"--jobs {jobs} must be in 1..{MAX_JOBS}")


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)
    _die_with_parent()


def _die_with_parent() -> None:
    """On Linux, a worker gets SIGTERM when the process that started it dies, however it died (a plain
    `kill` included), so no orphaned worker keeps computing; elsewhere this does nothing."""
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_graph(roots: Iterable[Job], work: Callable[[Job], Any], expand: Callable[[Job, Any], list[Job]],
              jobs: int = 1, engine: str = "local", address: str | None = None, threads: int = 1,
              progress: bool | Progress = True, desc: str = "jobs") -> tuple[dict[Job, Any], dict[Job, list[Job]]]:
    """Run every job reachable from `roots`; returns (results, children) where children[j] lists the
    jobs `expand` named after j, in its order. progress: a `Progress` over the command's planned work (the
    caller closes it), or whether to show a bar whose total follows the jobs as they are named."""
    if engine not in ENGINES:
        raise NumvarsError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    check_jobs(jobs)
    roots = list(dict.fromkeys(roots))
    own = not isinstance(progress, Progress)
    bar = Progress(None, desc, enabled=bool(progress)) if own else progress
    bar.grow(len(roots))
    try:
        if engine == "ray":
            from .ray import run_on_ray
            return run_on_ray(roots, work, Expander(expand, bar), jobs, address, threads)
        if jobs == 1:
            return _serial(roots, work, Expander(expand, bar))
        return _pool(roots, work, Expander(expand, bar), jobs, threads)
    finally:
        if own:
            bar.close()


class Expander:
    """`expand`, telling the bar about each finished job, the jobs it names, and the planned ones it skips
    (an expander may list those as `skipped`, (group, kind) each)."""

    def __init__(self, expand, bar: Progress):
        self.expand, self.bar = expand, bar

    def __call__(self, done: Job, result) -> list[Job]:
        children = self.expand(done, result)
        self.bar.grow(len(children))
        self.bar.finished(done, result, getattr(self.expand, "skipped", ()))
        return children


def _serial(roots, work, expand):
    results, children, queue = {}, {}, list(roots)
    while queue:
        current = queue.pop(0)
        if current in results:
            continue
        results[current] = work(current)
        children[current] = expand(current, results[current])
        queue += children[current]
    return results, children


def _pool(roots, work, expand, jobs, threads):
    results, children, running = {}, {}, {}
    context = multiprocessing.get_context("spawn")       # never fork a process that holds torch's threads
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        def submit(batch):
            for j in batch:
                if j not in results and j not in running.values():
                    running[pool.submit(work, j)] = j
        try:
            submit(roots)
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    done = running.pop(future)
                    results[done] = _result(future)           # a job's error ends the run, here
                    children[done] = expand(done, results[done])
                    submit(children[done])
        except BaseException:
            for future in running:
                future.cancel()
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()                          # do not wait for long jobs: rerun to resume
            raise
    return results, children


def _result(future):
    try:
        return future.result()
    except BrokenProcessPool:
        raise NumvarsError("a worker process died before finishing its job (killed, out of memory, or it could not "
                           "start: a script that calls numvars with several workers must do so under `if __name__ == "
                           "'__main__':`, since each worker imports it again); rerun, or use one worker (jobs=1)") \
            from None

