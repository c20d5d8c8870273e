"""MLflow: store set-up, the run's lifecycle, params/tags/artifacts (no Lightning here).

A run is opened only after the config is validated and the data and model are built, and
`Tracker.end` always leaves it in a final state (FINISHED, FAILED or KILLED).
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# A tracking server that does not answer must fail fast, not hang for minutes.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from nnlab import tags  # noqa: E402

MAX_PARAM_LENGTH = 6000


class TrackingError(RuntimeError):
    """The MLflow store cannot be reached, created or written; the message says which and why."""


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
            _use_wal(db)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _use_wal(db: Path) -> None:
    """Write-ahead logging (a persistent setting of the file): readers no longer block the one
    writer, so parallel jobs wait less on each other."""
    import sqlite3

    if not db.exists():
        return
    with sqlite3.connect(db, timeout=30) as conn:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")


class Tracker:
    """One MLflow run: open, log, end."""

    def __init__(self, tracking_uri: str, experiment_name: str,
                 artifact_root: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_id: str | None = None
        from nnlab.store import StoreError, open_store, read_only_message

        db = sqlite_path(tracking_uri)
        try:
            with store_lock(tracking_uri):
                self.client = open_store(tracking_uri, db) if db else MlflowClient(tracking_uri)
                self.experiment_id = self._experiment_id(artifact_root)
        except StoreError as err:
            raise TrackingError(f"mlflow.tracking_uri={tracking_uri}: {err}") from err
        except OSError as err:
            if db is None or err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise TrackingError(store_message(tracking_uri, err)) from err
            # the folder, or the lock file beside the store, cannot be written
            raise TrackingError(f"mlflow.tracking_uri={tracking_uri}: "
                                f"{read_only_message(db)}") from err
        except Exception as err:
            raise TrackingError(store_message(tracking_uri, err)) from err

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

    def find_run(self, spec: str) -> Any:
        """The run `spec` names: a run id, or "last" (the newest unfinished run of this
        experiment that has a checkpoint)."""
        if spec != "last":
            try:
                return self.client.get_run(spec)
            except MlflowException:
                raise TrackingError(
                    f"resume={spec}: no run with that id in {self.tracking_uri}. Give the run "
                    "id MLflow shows (32 hex digits), or resume=last."
                ) from None
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.`{tags.CHECKPOINT}` != ''",
            order_by=["attributes.start_time DESC"], max_results=20,
        )
        for found in runs:
            if found.info.status != "FINISHED":
                return found
        raise TrackingError(
            f"resume=last: experiment '{self.experiment_name}' in {self.tracking_uri} has no "
            "unfinished run with a checkpoint to resume. Start a new run without resume=."
        )

    def reopen(self, run_id: str) -> dict[str, int]:
        """Mark a stopped run RUNNING again; return each metric's last logged step."""
        self.run_id = run_id
        self.client.update_run(run_id, status="RUNNING")
        keys = self.client.get_run(run_id).data.metrics
        return {key: max(m.step for m in self.client.get_metric_history(run_id, key))
                for key in keys}

    def start(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])
        return self.run_id

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_dataset(self, name: str, digest: str, source: str, profile: Mapping[str, Any],
                    context: str = "training") -> None:
        """The run's data set, shown in the UI's Dataset column (name, digest, sizes)."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name, digest, "code", json.dumps({"class": source}),
                          profile=json.dumps(dict(profile)))
        self.client.log_inputs(self.run_id, [DatasetInput(
            dataset, [InputTag("mlflow.data.context", context)])])

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
            self.set_tags({tags.ERROR: f"{type(error).__name__}: {error}"[:5000]})
            self.log_text(text, "error.txt")
        self.client.set_terminated(self.run_id, status)


def store_message(tracking_uri: str, err: BaseException) -> str:
    """One paragraph: which store failed, why, and what to do."""
    text = str(err).strip()
    cause = f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
    if tracking_uri.startswith(("http://", "https://")):
        import re

        found = re.search(r"\[Errno -?\d+\] [^'\"()]+", text)
        tries = int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) + 1
        cause = f"{found.group(0).strip() if found else cause[:200]}; gave up after {tries} tries"
        hint = ("Is the tracking server running and reachable? Start it (mlflow server ...) or "
                "set mlflow.tracking_uri to a local store, e.g. sqlite:///mlruns/mlflow.db.")
        what = "cannot reach the MLflow tracking server"
    else:
        hint = ("Check that the folder exists or can be created, or set mlflow.tracking_uri "
                "(and mlflow.artifact_root) to another place.")
        what = "cannot open or create the MLflow store"
    return f"mlflow.tracking_uri={tracking_uri}: {what} ({cause[:300]}). {hint}"


def resume_target(tracker: Tracker, spec: str, overrides: list[str]) -> tuple[Any, Path, Any]:
    """(run, checkpoint path, the run's logged config) for `resume=<run id>` or `resume=last`."""
    run = tracker.find_run(spec)
    name = f"resume={spec}"
    if run.info.experiment_id != tracker.experiment_id:
        tracker.experiment_id = run.info.experiment_id
    ckpt = run.data.tags.get(tags.CHECKPOINT)
    if not ckpt or not Path(ckpt).is_file():
        raise TrackingError(
            f"{name}: run {run.info.run_id} has no checkpoint to resume from "
            f"({ckpt or 'no ' + tags.CHECKPOINT + ' tag'} is not a file). Runs keep last.ckpt "
            "under their Hydra output folder; start a new run instead."
        )
    if run.info.status == "FINISHED":
        raise TrackingError(f"{name}: run {run.info.run_id} already FINISHED; nothing to resume.")
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.client.download_artifacts(run.info.run_id, "config.yaml", tmp)
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(path)
    ignored = [o for o in overrides if not o.startswith("resume=")]
    if ignored:
        print(f"nnlab: {name} continues with the run's own config; ignoring {' '.join(ignored)}",
              flush=True)
    cfg.resume = run.info.run_id
    return run, Path(ckpt), cfg
