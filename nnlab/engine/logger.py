"""nnlab's Lightning logger: metrics into the MLflow run nnlab opened, in batches."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from nnlab.tracking import Tracker, is_server
from nnlab.tracking.writer import MetricWriter

SERVER_FLUSH_S = 5.0  # a tracking server's request costs ~0.1 s: step values wait up to this


def is_curve(key: str) -> bool:
    """Whether a metric is drawn in the learning curves: train/ and val/ per-epoch values."""
    return key.split("/")[0] in ("train", "val") and not key.endswith("_step")


class MlflowRunLogger(Logger):
    """Lightning logger that writes metrics into an already-open MLflow run, in batches."""

    def __init__(self, tracker: Tracker, flush_every: int = 50,
                 logged: Mapping[str, int] | None = None, epoch_flush_s: float = 0.0,
                 writer: MetricWriter | None = None, keep_curves: bool = False) -> None:
        """`epoch_flush_s`: epoch values are written at once (0) or once this many seconds have
        passed since the last write, and so are `flush_every` pending values (a pack's members:
        one store write a member per epoch, or per 50 values of its per-layer instruments, is
        most of a small pack's time). `writer`: batches are written by its process, not
        waited for (a pack's members; `settle` waits). `keep_curves`: also keep the learning
        curves' values (`curves`), so they need not be read back from the store."""
        super().__init__()
        self.tracker = tracker
        self.flush_every = flush_every
        self.epoch_flush_s = epoch_flush_s
        self.writer = writer
        self.min_interval_s = SERVER_FLUSH_S if is_server(tracker.tracking_uri) else 0.0
        self._flushed = time.monotonic()
        self._pending: list[Metric] = []
        self._logged = dict(logged or {})  # a resumed run's last step per key: not logged twice
        # a resumed run's earlier values are in the store only: its curves are read back
        self._curves: dict[str, list[tuple[int, float]]] | None = \
            {} if keep_curves and not logged else None

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.tracker.run_id or ""

    @property
    @rank_zero_experiment
    def experiment(self) -> MlflowClient:
        return self.tracker.client

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Params are logged once by the Tracker from the resolved config."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        epoch_end = False
        for key, value in metrics.items():
            if key == "epoch":
                continue
            if (step or 0) <= self._logged.get(key, -1):
                continue
            epoch_end |= not key.endswith("_step")
            self._pending.append(Metric(key, float(value), now, step or 0))
            if self._curves is not None and is_curve(key):
                self._curves.setdefault(key, []).append((step or 0, float(value)))
        since = time.monotonic() - self._flushed
        due = len(self._pending) >= self.flush_every and \
            since >= max(self.min_interval_s, self.epoch_flush_s)
        if (epoch_end and since >= self.epoch_flush_s) or due or len(self._pending) >= 1000:
            self.flush()

    def flush(self) -> None:
        """Pending values written, or sent to the writer."""
        self._flushed = time.monotonic()
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            if self.writer is not None:
                self.writer.send(self.tracker, batch)
            else:
                self.tracker.log_batch(metrics=batch)  # retried while a server is briefly away

    def settle(self) -> None:
        """Every value logged so far in the store."""
        self.flush()
        if self.writer is not None:
            self.writer.settle(self.tracker.run_id)

    def curves(self) -> dict[str, list[tuple[int, float]]] | None:
        """The learning curves' values as logged (what the store's histories hold), or None
        when they were not kept (`keep_curves`, not for a resumed run)."""
        return None if self._curves is None else {k: list(v) for k, v in self._curves.items()}

    def unwritten(self) -> list[Metric]:
        """Values flushed and not yet known to be in the store (sent to the writer)."""
        return [] if self.writer is None else self.writer.unwritten(self.tracker.run_id)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Settle only: the run's final state is set by Tracker.end."""
        self.settle()
