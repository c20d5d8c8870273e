"""The jobs wing: what every launcher shares about a sweep's jobs. Each job's record in the
sweep folder and the summary after the last job (records), and the skip/resume decision and the
solo job (runner). (`nnlab.sweep` is the Python API's sweep function, nnlab/api/.)"""

from nnlab.jobs.records import SweepReport, read_jobs, record_job, summary
from nnlab.jobs.runner import Previous, look_up, run_job

__all__ = ["Previous", "SweepReport", "look_up", "read_jobs", "record_job", "run_job",
           "summary"]
