"""Job machinery: a graph of idempotent jobs (`engine`, on local processes or Ray), the cache of their results
on run directories (`cache`), and what they cost (`costs`). Below `explain`, `analysis` and `reproduce`."""
from .engine import ENGINES, Job, check_jobs, default_jobs, job, run_graph

__all__ = ["ENGINES", "Job", "check_jobs", "default_jobs", "job", "run_graph"]
