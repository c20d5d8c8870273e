"""The sweep wing: what every launcher shares. Each job's record in the sweep folder and the
summary after the last job (records), and the skip/resume decision and the solo job (runner)."""

from nnlab.sweep.records import SweepReport, read_jobs, record_job, summary
from nnlab.sweep.runner import (
    earlier_unfinished,
    monitored_value,
    previous_runs,
    run_job,
    supersede,
)

__all__ = ["SweepReport", "earlier_unfinished", "monitored_value", "previous_runs",
           "read_jobs", "record_job", "run_job", "summary", "supersede"]
