"""The sweep wing: what every launcher shares. Each job's record in the sweep folder and the
summary after the last job (records), and the skip/resume decision and the solo job (runner)."""

import sys
import types
from typing import Any

from nnlab.sweep.records import SweepReport, read_jobs, record_job, summary
from nnlab.sweep.runner import Previous, look_up, run_job

__all__ = ["Previous", "SweepReport", "look_up", "read_jobs", "record_job", "run_job",
           "summary"]
