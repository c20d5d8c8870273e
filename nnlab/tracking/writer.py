"""A pack's metric batches written by a second process (nnlab.away), on the core the pack's
one-thread training leaves idle: MLflow's store spends ~0.25 ms of Python per value (an ORM
object and a latest-metric update each), which the pack's process would otherwise wait for.

Every batch sent is kept here until the process says it is in the store. A checkpoint keeps a
run's batches still away (`unwritten`): a resumed pack writes them again, and MLflow skips a
value its store holds already, so a value is neither lost nor doubled by a kill. `settle` waits
until a run's batches are in the store (before its learning curves are read back and before it
ends), writing in the caller's process whatever the writing process could not write or lost.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from nnlab.away import Away
from nnlab.away import serve as serve_jobs
from nnlab.tracking.tracker import Tracker, sqlite_path

WAIT_S = 120.0  # a writing process silent this long with batches away is ended: written here


class MetricWriter:
    """A writing process, started at once (its MLflow import overlaps the caller's work)."""

    def __init__(self) -> None:
        self.process = Away("nnlab.tracking.writer")
        self._away: dict[int, tuple[Tracker, list[Metric]]] = {}  # key -> batch not yet confirmed
        self._next = 0

    def send(self, tracker: Tracker, metrics: Sequence[Metric]) -> None:
        """Write `metrics` into the tracker's run, without waiting."""
        self._confirm(self.process.results(0))
        if self.process.ended:
            tracker.log_batch(metrics=list(metrics))
            return
        key, self._next = self._next, self._next + 1
        self._away[key] = (tracker, list(metrics))
        self.process.submit(key, write_batch, absolute_uri(tracker.tracking_uri),
                            tracker.run_id, list(metrics))

    def unwritten(self, run_id: str) -> list[Metric]:
        """The run's values sent and not yet known to be in the store."""
        self._confirm(self.process.results(0))
        return [m for tracker, batch in self._away.values() if tracker.run_id == run_id
                for m in batch]

    def settle(self, run_id: str | None = None) -> None:
        """Return once every batch of the run (None: of every run) is in the store."""
        def waiting() -> bool:
            return any(run_id in (None, tracker.run_id) for tracker, _ in self._away.values())

        while waiting():
            if self.process.ended:
                self._write_here(run_id)
                return
            back = self.process.results(WAIT_S)
            if not back and not self.process.ended:
                self.process.close()  # silent too long: what it holds is written here
            self._confirm(back)

    def close(self) -> None:
        """End the process; write here whatever it did not confirm."""
        self._confirm(self.process.results(0))
        self.process.close()
        self._confirm(self.process.results(0))
        self._write_here(None)

    def _confirm(self, back: list[tuple[Any, bytes | None]]) -> None:
        for key, done in back:
            tracker, batch = self._away.pop(key)
            if done is None:  # it could not: written here, where an error is raised
                tracker.log_batch(metrics=batch)

    def _write_here(self, run_id: str | None) -> None:
        for key in [k for k, (t, _) in self._away.items() if run_id in (None, t.run_id)]:
            tracker, batch = self._away.pop(key)
            tracker.log_batch(metrics=batch)


def absolute_uri(tracking_uri: str) -> str:
    """The URI with a relative sqlite path made absolute: the caller may have changed folder
    since the writing process started."""
    db = sqlite_path(tracking_uri)
    return tracking_uri if db is None else f"sqlite:///{db.absolute()}"


_clients: dict[str, MlflowClient] = {}
_caller = os.getppid()  # in the writing process: the pack's


def write_batch(tracking_uri: str, run_id: str, metrics: list[Metric]) -> bytes:
    """In the writing process: the batch into the run's store (b"": written). Once the caller
    is gone (killed) nothing more is written: its resume reads the store and goes on from it."""
    if os.getppid() != _caller:
        sys.exit(0)
    if tracking_uri not in _clients:
        _clients[tracking_uri] = MlflowClient(tracking_uri)
    _clients[tracking_uri].log_batch(run_id, metrics=metrics)
    return b""


def serve() -> None:
    """The writing process: batches from stdin, b"" (written) or None (could not) to stdout."""
    serve_jobs(_warm_up, "metric-writing")


def _warm_up() -> Callable[[Callable[..., Any], tuple], bytes]:
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (what the first batch needs)

    return lambda write, args: write(*args)
