"""MLflow: store set-up, the run's lifecycle, params/tags/artifacts, and a Lightning logger.

A run is opened only after the config is validated and the data and model are built, and
`Tracker.end` always leaves it in a final state (FINISHED, FAILED or KILLED).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

# A tracking server that does not answer must fail fast, not hang for minutes.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")

from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

MAX_PARAM_LENGTH = 6000


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay whole values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def sqlite_path(tracking_uri: str) -> Path | None:
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///"))
    return None


@contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Serialise store creation between processes (MLflow's sqlite schema set-up is not safe
    under concurrent first use: "duplicate column name")."""
    db = sqlite_path(tracking_uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.parent / ".nnlab-store.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Tracker:
    """One MLflow run: open, log, end."""

    def __init__(self, tracking_uri: str, experiment_name: str,
                 artifact_root: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        with store_lock(tracking_uri):
            self.client = MlflowClient(tracking_uri)
            self.experiment_id = self._experiment_id(artifact_root)
        self.run_id: str | None = None

    def _experiment_id(self, artifact_root: str | None) -> str:
        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return found.experiment_id
        location = None
        if artifact_root and sqlite_path(self.tracking_uri) is not None:
            location = Path(artifact_root).resolve().as_uri()
        try:
            return self.client.create_experiment(self.experiment_name, location)
        except MlflowException:  # created meanwhile by a parallel job
            return self.client.get_experiment_by_name(self.experiment_name).experiment_id

    def start(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])
        return self.run_id

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()]
        )

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def end(self, status: str, error: BaseException | None = None) -> None:
        """Close the run in a final state; on failure keep the error text as an artifact."""
        if self.run_id is None:
            return
        if error is not None:
            import traceback

            text = "".join(traceback.format_exception(error))
            self.set_tags({"nnlab.error": f"{type(error).__name__}: {error}"[:5000]})
            self.log_text(text, "error.txt")
        self.client.set_terminated(self.run_id, status)


class MlflowRunLogger(Logger):
    """Lightning logger that writes metrics into an already-open MLflow run, in batches."""

    def __init__(self, tracker: Tracker, flush_every: int = 50) -> None:
        super().__init__()
        self.tracker = tracker
        self.flush_every = flush_every
        self._pending: list[Metric] = []

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
            epoch_end |= not key.endswith("_step")
            self._pending.append(Metric(key, float(value), now, step or 0))
        if epoch_end or len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self.tracker.client.log_batch(self.tracker.run_id, metrics=batch)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Flush only: the run's final state is set by Tracker.end."""
        self.flush()
