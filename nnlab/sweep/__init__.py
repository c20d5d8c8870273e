"""The sweep wing: what every launcher shares. Each job's record in the sweep folder and the
summary after the last job (records), and the skip/resume decision and the solo job (runner)."""

import sys
import types
from typing import Any

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


class _CallableSweep(types.ModuleType):
    """This package is also `nnlab.sweep(*overrides, launcher=None)`, the Python API's sweep:
    the two share the name, and a package attribute cannot be both, so the package forwards."""

    def __call__(self, *overrides: str, **options: Any) -> Any:
        """nnlab.sweep(*overrides, launcher=None, config_dir=None) -> SweepResult: a sweep as
        `python -m nnlab -m OVERRIDES` runs it (help(nnlab.api.sweep) says more)."""
        from nnlab.api import sweep  # lazy: the API sits above this wing

        return sweep(*overrides, **options)


sys.modules[__name__].__class__ = _CallableSweep
