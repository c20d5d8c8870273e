"""Every nnlab exception: one base that carries the process's exit code.

2 for what the user can fix in a config or a data set, 1 for anything that broke while running.
`python -m nnlab` and the other commands catch `NnlabError` and exit with its `exit_code`.
A leaf module: it imports nothing, so any layer may raise these.
"""

from __future__ import annotations


class NnlabError(Exception):
    """The base of nnlab's exceptions; its message is one paragraph for the user."""

    exit_code = 1


class ConfigError(NnlabError, ValueError):
    """A config that cannot run; its message names the bad value and the valid choices."""

    exit_code = 2


class DataError(NnlabError, RuntimeError):
    """A data set that cannot be loaded (missing files offline, corrupt files)."""

    exit_code = 2


class ReportError(NnlabError, RuntimeError):
    """A report with nothing to report: no such experiment, no finished run, no shared metric."""

    exit_code = 2


class TrackingError(NnlabError, RuntimeError):
    """The MLflow store cannot be reached, created or written; the message says which and why."""


class StoreError(NnlabError, RuntimeError):
    """The sqlite store cannot be used; the message names the cause and what to do."""


class ServerError(NnlabError, RuntimeError):
    """The team server cannot start; the message says why and what to do."""


class Diverged(NnlabError, RuntimeError):
    """The training loss became NaN or infinite."""
