"""The Ray engine: the same jobs as Ray tasks, on a local Ray started on demand or on a cluster.

Each job declares one CPU and its share of a GPU (`Job.gpu`, fractional, so several small jobs
share a card). On a cluster, every node needs numvars installed and the results folder on storage
that every node sees (jobs read and write their run directories there).
"""
from __future__ import annotations

from ..errors import NumvarsError


def _run(work, job, threads: int):
    import torch
    torch.set_num_threads(threads)
    return work(job)


def run_on_ray(roots, work, expand, jobs: int, address: str | None, threads: int):
    try:
        import ray
    except ImportError:
        raise NumvarsError("--engine ray needs Ray: pip install 'numvars[ray]' (or pip install ray)") from None
    started = not ray.is_initialized()
    if started:
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise NumvarsError(f"cannot start or join Ray ({' '.join(str(e).split())[:160]}); check --address") \
                from None
    task = ray.remote(_run)
    results, children, pending = {}, {}, {}

    def submit(batch):
        for j in batch:
            if j not in results and j not in pending.values():
                pending[task.options(num_cpus=1, num_gpus=j.gpu).remote(work, j, threads)] = j

    try:
        submit(roots)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                done = pending.pop(ref)
                try:
                    results[done] = ray.get(ref)
                except ray.exceptions.RayTaskError as e:        # a job's own error: raise it as itself
                    raise e.as_instanceof_cause() from None
                children[done] = expand(done, results[done])
                submit(children[done])
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
    return results, children
