"""MLflow: store set-up, the run's lifecycle, params/tags/artifacts (no Lightning here).

A run is opened only after the config is validated and the data and model are built, and
`Tracker.end` always leaves it in a final state (FINISHED, FAILED or KILLED).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
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

from nnlab.errors import ConfigError, StoreError, TrackingError  # noqa: E402
from nnlab.tracking import tags  # noqa: E402
from nnlab.tracking.secrets import redact_items, redact_text, redact_value  # noqa: E402
from nnlab.tracking.store import open_store, read_only_message  # noqa: E402

MAX_PARAM_LENGTH = 6000
# Mid-run, a tracking server that stops answering is retried this long before the run gives up.
RETRY_ENV = "NNLAB_TRACKING_RETRY_S"
# Runs a lost server could not close; the next job against that server closes them.
UNFINISHED = Path("mlruns") / "unfinished-runs.jsonl"


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


def is_server(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def http_status(err: BaseException) -> int | None:
    """The HTTP status a tracking server answered (None: no answer, or not a server error)."""
    if not isinstance(err, MlflowException):
        return None
    if "failed with exception" in str(err):  # no HTTP answer at all (refused, timed out, ...)
        return None
    return err.get_http_status_code()


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
        self._lost = False  # the server stopped answering mid-run: no more long retries
        db = sqlite_path(tracking_uri)
        try:  # against a server: reachable, credentials accepted, experiment readable (bounded)
            with store_lock(tracking_uri):
                self.client = open_store(tracking_uri, db) if db else MlflowClient(tracking_uri)
                self.experiment_id = self._experiment_id(artifact_root)
        except StoreError as err:
            raise TrackingError(f"mlflow.tracking_uri={tracking_uri}: {err}") from err
        except OSError as err:
            if db is None or err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise TrackingError(store_message(tracking_uri, err, experiment_name)) from err
            # the folder, or the lock file beside the store, cannot be written
            raise TrackingError(f"mlflow.tracking_uri={tracking_uri}: "
                                f"{read_only_message(db)}") from err
        except Exception as err:
            raise TrackingError(store_message(tracking_uri, err, experiment_name)) from err
        if is_server(tracking_uri):
            close_unfinished(self)

    def _experiment_id(self, artifact_root: str | None) -> str:
        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return found.experiment_id
        location = None
        if artifact_root and sqlite_path(self.tracking_uri) is not None:
            location = Path(artifact_root).resolve().as_uri()
        try:
            return self.client.create_experiment(self.experiment_name, location,
                                                 {tags.EXPERIMENT_KIND: tags.MODEL_TRAINING})
        except MlflowException:  # created meanwhile by a parallel job
            return self.client.get_experiment_by_name(self.experiment_name).experiment_id

    def reopen(self, run_id: str) -> dict[str, int]:
        """Mark a stopped run RUNNING again; return each metric's last logged step."""
        self.run_id = run_id
        self.client.update_run(run_id, status="RUNNING")
        keys = self.client.get_run(run_id).data.metrics
        return {key: max(m.step for m in self.client.get_metric_history(run_id, key))
                for key in keys}

    def write(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """`call(*args)`, a write to the store. Against a server, a failure with no answer or a
        5xx is retried for $NNLAB_TRACKING_RETRY_S (30 s) before TrackingError; a refusal
        (401, 403, ...) is a TrackingError at once."""
        if not is_server(self.tracking_uri):
            return call(*args, **kwargs)
        window = 0.0 if self._lost else float(os.environ.get(RETRY_ENV, "30"))
        deadline, pause = time.monotonic() + window, 1.0
        while True:
            try:
                return call(*args, **kwargs)
            except MlflowException as err:
                status = http_status(err)
                if status is not None and status < 500 or time.monotonic() >= deadline:
                    self._lost = status is None or status >= 500
                    raise TrackingError(store_message(
                        self.tracking_uri, err, self.experiment_name, self.run_id, window)) from err
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 8.0)

    def start(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Open the run; every param's and tag's value passes nnlab.tracking.secrets first."""
        run = self.write(self.client.create_run, self.experiment_id,
                         run_name=redact_text(run_name), tags=redact_items(tags))
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.log_batch(params=items[start : start + 100])
        return self.run_id

    def log_batch(self, **items: Any) -> None:
        """metrics=, params=, tags= lists, in one request (params and tags without secrets)."""
        if items.get("params"):
            items["params"] = [Param(p.key, redact_value(p.key, p.value)) for p in items["params"]]
        if items.get("tags"):
            items["tags"] = [RunTag(t.key, redact_value(t.key, t.value)) for t in items["tags"]]
        self.write(self.client.log_batch, self.run_id, **items)

    def log_text(self, text: str, artifact_file: str) -> None:
        """A text artifact (config.yaml, overrides.txt, ...), without secrets."""
        self.write(self.client.log_text, self.run_id, redact_text(text), artifact_file)

    def log_dataset(self, name: str, digest: str, source: str, profile: Mapping[str, Any],
                    context: str = "training") -> None:
        """The run's data set, shown in the UI's Dataset column (name, digest, sizes)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name, digest, "code", json.dumps({"class": source}),
                          profile=json.dumps(dict(profile)))
        self.write(self.client.log_inputs, self.run_id,
                   [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self.log_batch(metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.log_batch(tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def end(self, status: str, error: BaseException | None = None) -> None:
        """Close the run in a final state; on failure keep the error text as an artifact. A
        server that is gone is noted in mlruns/unfinished-runs.jsonl: the next job against it
        closes the run."""
        if self.run_id is None:
            return
        try:
            self.close_run(self.run_id, status, error)
        except TrackingError:
            if not is_server(self.tracking_uri):
                raise
            remember_unfinished(self.tracking_uri, self.run_id, status, error)
            print(f"nnlab: run {self.run_id} could not be marked {status}: the tracking server "
                  f"{self.tracking_uri} does not answer. Noted in {UNFINISHED.resolve()}; the "
                  "next nnlab job against that server marks it.", file=sys.stderr, flush=True)

    def close_run(self, run_id: str, status: str, error: BaseException | str | None) -> None:
        """Set a run's final state first, then keep the error's text: a failing upload (an
        unwritable artifact root) can no longer leave the run RUNNING."""
        if error is None:
            self.write(self.client.set_terminated, run_id, status)
            return
        import traceback

        if isinstance(error, str):
            text, first = error, error.strip().splitlines()[-1]
        else:
            text = "".join(traceback.format_exception(error))
            first = f"{type(error).__name__}: {error}"
        self.write(self.client.log_batch, run_id,
                   tags=[RunTag(tags.ERROR, redact_text(first)[:5000])])
        self.write(self.client.set_terminated, run_id, status)
        try:
            self.write(self.client.log_text, run_id, redact_text(text), "error.txt")
        except Exception as err:  # the status is set; the text is a bonus
            print(f"nnlab: run {run_id} is {status}; its error.txt could not be stored "
                  f"({type(err).__name__}: {err})", file=sys.stderr, flush=True)


def remember_unfinished(tracking_uri: str, run_id: str, status: str,
                        error: BaseException | None) -> None:
    import traceback

    text = "".join(traceback.format_exception(error)) if error is not None else None
    UNFINISHED.parent.mkdir(parents=True, exist_ok=True)
    with open(UNFINISHED, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps({"uri": tracking_uri, "run_id": run_id, "status": status,
                                 "error": text}) + "\n")



def close_unfinished(tracker: Tracker) -> None:
    """Close the runs of this server that a job could not close when it lost the server:
    those still RUNNING get the final state and error text that job meant to give them."""
    if not UNFINISHED.exists():
        return
    with open(UNFINISHED, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        notes = [json.loads(line) for line in handle if line.strip()]
        keep = [note for note in notes
                if note["uri"] != tracker.tracking_uri or not _close(tracker, note)]
        handle.seek(0)
        handle.truncate()
        handle.writelines(json.dumps(note) + "\n" for note in keep)

def _close(tracker: Tracker, note: dict[str, Any]) -> bool:
    """True when the noted run is settled (closed now, already closed, or deleted)."""
    try:
        if tracker.client.get_run(note["run_id"]).info.status != "RUNNING":
            return True
        tracker.close_run(note["run_id"], note["status"], note["error"])
    except MlflowException as err:
        return http_status(err) == 404
    except TrackingError:
        return False
    print(f"nnlab: run {note['run_id']} marked {note['status']} (its job lost the tracking "
          "server earlier)", file=sys.stderr, flush=True)
    return True


def store_message(tracking_uri: str, err: BaseException, experiment: str | None = None,
                  run_id: str | None = None, retried_s: float = 0.0) -> str:
    """One paragraph: which store failed, why, and what to do (no credentials in it)."""
    return redact_text(_store_message(tracking_uri, err, experiment, run_id, retried_s))


def _store_message(tracking_uri: str, err: BaseException, experiment: str | None,
                   run_id: str | None, retried_s: float) -> str:
    text = str(err).strip()
    cause = f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
    if is_server(tracking_uri):
        return server_message(tracking_uri, err, experiment, run_id, retried_s)
    else:
        hint = ("Check that the folder exists or can be created, or set mlflow.tracking_uri "
                "(and mlflow.artifact_root) to another place.")
        what = "cannot open or create the MLflow store"
    return f"mlflow.tracking_uri={tracking_uri}: {what} ({cause[:300]}). {hint}"


def server_message(tracking_uri: str, err: BaseException, experiment: str | None,
                   run_id: str | None, retried_s: float) -> str:
    """One paragraph for a tracking server: unreachable, credentials refused (401), or the user
    lacks a permission (403)."""
    import re

    status = http_status(err)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    where = f"mlflow.tracking_uri={tracking_uri}"
    if status == 401:
        who = f"user '{user}' with the password given" if user else \
            "no credentials (MLFLOW_TRACKING_USERNAME is not set)"
        return (f"{where}: the tracking server refused {who} (HTTP 401: not authenticated). "
                "Set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account on that "
                "server (its admin creates accounts), then start again.")
    if status == 403:
        action = "write to" if run_id or "runs/create" in str(err) else "read"
        return (f"{where}: user '{user}' may not {action} experiment '{experiment}' (HTTP 403: "
                "permission denied; new users get READ on others' experiments). Ask the "
                "experiment's owner or the server's admin for EDIT on it, or log to an "
                "experiment of your own: mlflow.experiment_name=<new name> (its creator may "
                "manage it).")
    errno = re.search(r"\[Errno -?\d+\] [^'\"()]+", str(err))
    if status is None or status >= 500:
        tries = int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) + 1
        cause = errno.group(0).strip() if errno else f"HTTP {status}" if status else \
            str(err).strip()[:200]
        if run_id:
            return (f"{where}: lost the MLflow tracking server while logging run {run_id} "
                    f"({cause}; retried for {retried_s:.0f} s, ${RETRY_ENV}). The run stopped; "
                    "it is marked FAILED once the server answers again. Is the server running "
                    "(python -m nnlab.server ...)?")
        return (f"{where}: cannot reach the MLflow tracking server ({cause}; gave up after "
                f"{tries} tries). Is the tracking server running and reachable? Start it "
                "(python -m nnlab.server ...) or set mlflow.tracking_uri to a local store, e.g. "
                "sqlite:///mlruns/mlflow.db.")
    first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
    return f"{where}: the tracking server answered HTTP {status}: {first}"


def find_run(tracker: Tracker, spec: str) -> Any:
    """The run `spec` names: a run id, or "last" (the newest unfinished run of this
    experiment that has a checkpoint)."""
    if spec != "last":
        try:
            return tracker.client.get_run(spec)
        except MlflowException:
            raise TrackingError(
                f"resume={spec}: no run with that id in {tracker.tracking_uri}. Give the run "
                "id MLflow shows (32 hex digits), or resume=last."
            ) from None
    runs = tracker.client.search_runs(
        [tracker.experiment_id], f"tags.`{tags.CHECKPOINT}` != ''",
        order_by=["attributes.start_time DESC"], max_results=20,
    )
    for found in runs:
        if found.info.status != "FINISHED":
            return found
    raise TrackingError(
        f"resume=last: experiment '{tracker.experiment_name}' in {tracker.tracking_uri} has no "
        "unfinished run with a checkpoint to resume. Start a new run without resume=."
    )


def resume_target(tracker: Tracker, spec: str, overrides: list[str]) -> tuple[Any, Path, Any]:
    """(run, checkpoint path, the run's logged config) for `resume=<run id>` or `resume=last`."""
    run = find_run(tracker, spec)
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
    cfg.mlflow.tracking_uri = tracker.tracking_uri  # its logged copy has the credentials redacted
    ignored = [o for o in overrides if not o.startswith("resume=")]
    if ignored:
        print(f"nnlab: {name} continues with the run's own config; ignoring {' '.join(ignored)}",
              flush=True)
    cfg.resume = run.info.run_id
    return run, Path(ckpt), cfg


def open_tracker(cfg: Any) -> Tracker:
    """The MLflow store and experiment; a store that cannot be used is a config error."""
    try:
        return Tracker(cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name,
                       cfg.mlflow.artifact_root)
    except TrackingError as err:
        raise ConfigError(str(err)) from None
