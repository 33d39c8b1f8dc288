"""`explain`: which algorithm does this network run, how sure are we, and why?

For every program given (default: every built-in one) and each core variable: DAS at every site the model
names, both alignment maps, k = d/2 first and a k sweep where that finds something (`plan`); beside each, its
controls (the same DAS on an untrained copy per map; random subspaces of the same size), an isolation score
and the log-probability of the expected continuation; the rival programs compared on the pairs where their
predictions differ; the full-state swap and, for a Transformer, the attention test (`evidence`). `verdict`
names the program by a written rule and grades it: strong, partial, or no program fits.

`explain(model, task)` works on any model in memory and runs its jobs on `jobs` worker processes;
`explain_runs(run_dirs)` (in `runs`) works on trained run directories, reuses their cached results and
pools several runs of one condition.
"""
from __future__ import annotations

from functools import partial

from ..versions import note
from .evidence import Evidence, collect
from .explanation import Explanation, pool_alignments, verdict
from .options import BUILT_IN, ExplainOptions
from .plan import ExplainPlan, budget

__all__ = ["BUILT_IN", "ExplainOptions", "Explanation", "explain", "pool_alignments", "verdict"]


def explain(model, task, progress: bool = True, jobs: int | None = None, options: ExplainOptions | None = None,
            **opts) -> Explanation:
    """Explain a model in memory (nothing is cached): the same plan as `numvars explain`, its jobs on `jobs`
    worker processes (default: one per core; the model is sent to each), then the evidence and the verdict."""
    from ..jobs.engine import default_jobs, run_graph
    from ..jobs.progress import Progress
    from .runs import conclude, in_memory_work, records_of, swap_inputs

    o = options or ExplainOptions(**opts)
    programs = o.programs()
    plan = ExplainPlan(o, programs, model, ["model"], evidence_jobs=False)
    work, workers = partial(in_memory_work, model, task), default_jobs() if jobs is None else jobs
    if workers > 1 and not _sendable(work):
        note("explain runs in this process: the model cannot be sent to worker processes (its class is not "
             "importable by them, e.g. one defined in a notebook); define it in a module to run in parallel")
        workers = 1
    arch = getattr(getattr(model, "cfg", None), "arch", "gru")      # a model of its own is costed as a GRU
    bar = Progress(budget(plan, arch, workers), "explain", enabled=progress)
    try:
        results, _ = run_graph(plan.roots(), work, plan, jobs=workers, progress=bar)
        records = records_of(results)
        swap_frames, swap_summary, attention = swap_inputs(results)
        ev = Evidence.pool([collect(model, task, o, programs, records, swap_frames, swap_summary, attention)])
        bar.phase("alignments and evidence done")
        return conclude(plan, [records], ev, work, workers, bar)
    finally:
        bar.close()


def _sendable(work) -> bool:
    """Whether worker processes can receive the model (pickled, its class found by import)."""
    import pickle

    try:
        pickle.dumps(work)
    except Exception:            # any failure to pickle: the class, a lambda inside, an open handle
        return False
    return True


