"""A sweep's own MLflow run: made by its first job that passes validation, the jobs nest under it
in the UI, and it ends FINISHED, FAILED or KILLED with the sweep. Its id lives in a file in the
sweep folder, so jobs in other processes or on other hosts find it."""

from __future__ import annotations

import fcntl
import json
import sys
from pathlib import Path
from typing import Any

from nnlab.tracking import tags

PARENT = ".nnlab-parent"  # the sweep's own MLflow run: tracking URI and run id
OPENED_HERE: set[Path] = set()  # sweep folders whose parent run this process made or joined


def parent_run_id(tracker: Any, sweep_dir: str | Path) -> str:
    """The sweep's parent run, made by its first job that passes validation (so a sweep whose
    every job is refused leaves nothing behind); the jobs nest under it in the MLflow UI."""
    folder = Path(sweep_dir)
    folder.mkdir(parents=True, exist_ok=True)
    OPENED_HERE.add(folder)
    with open(folder / ".nnlab-parent.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = folder / PARENT
        if path.is_file():
            return json.loads(path.read_text())["run_id"]
        run = tracker.client.create_run(
            tracker.experiment_id, run_name=f"sweep {folder.name}",
            tags={tags.SWEEP_ID: folder.name, tags.SOURCE: "nnlab sweep"})
        path.write_text(json.dumps({"tracking_uri": tracker.tracking_uri,
                                    "run_id": run.info.run_id}))
        return run.info.run_id


def end_parent_run(sweep_dir: str | Path, status: str) -> None:
    """Close the sweep's parent run with `status` (FINISHED, FAILED or KILLED)."""
    path = Path(sweep_dir) / PARENT
    if not path.is_file():
        return
    from mlflow.tracking import MlflowClient

    found = json.loads(path.read_text())
    MlflowClient(found["tracking_uri"]).set_terminated(found["run_id"], status)


def kill_open_parent_runs() -> None:
    """Ctrl-C / SIGTERM ended the sweep: the parent runs this process opened end KILLED (the
    jobs' own runs are already KILLED with their checkpoints; sweep.resume=true goes on)."""
    for folder in sorted(OPENED_HERE):
        try:
            end_parent_run(folder, "KILLED")
        except Exception as err:  # never hide the interrupt behind a store error
            print(f"nnlab: could not close the sweep's run in {folder}: {err}", file=sys.stderr)
    OPENED_HERE.clear()
