"""Multirun bookkeeping: each job records how it ended in the sweep folder; after the sweep a Hydra
callback prints which jobs failed and exits non-zero when any did (or when there were none)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

RECORDS = ".nnlab-jobs"
PARENT = ".nnlab-parent"  # the sweep's own MLflow run: tracking URI and run id


def parent_run_id(tracker: Any, sweep_dir: str | Path) -> str:
    """The sweep's parent run, made by its first job that passes validation (so a sweep whose
    every job is refused leaves nothing behind); the jobs nest under it in the MLflow UI."""
    import fcntl

    from nnlab import tags

    folder = Path(sweep_dir)
    folder.mkdir(parents=True, exist_ok=True)
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


def end_parent_run(sweep_dir: str | Path, failed: bool) -> None:
    """Close the sweep's parent run, FAILED when a job failed."""
    path = Path(sweep_dir) / PARENT
    if not path.is_file():
        return
    from mlflow.tracking import MlflowClient

    found = json.loads(path.read_text())
    MlflowClient(found["tracking_uri"]).set_terminated(found["run_id"],
                                                      "FAILED" if failed else "FINISHED")


def record_job(sweep_dir: str | Path, num: int, overrides: list[str], error: str | None) -> None:
    """Write one job's outcome (error None: it finished) where the sweep's callback finds it."""
    folder = Path(sweep_dir) / RECORDS
    folder.mkdir(parents=True, exist_ok=True)
    record = {"num": num, "overrides": overrides, "error": error}
    (folder / f"{num}.json").write_text(json.dumps(record))


def read_jobs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    folder = Path(sweep_dir) / RECORDS
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted(records, key=lambda r: r["num"])


def summary(records: list[dict[str, Any]]) -> tuple[str, bool]:
    """(the text to print, whether the sweep failed)."""
    if not records:
        return ("nnlab: error: the sweep launched no jobs: a swept value list is empty (e.g. "
                "seed='range(0,0)' or an experiment whose sweeper params list nothing). Give "
                "each swept key at least one value, e.g. seed=0,1,2.", True)
    failed = [r for r in records if r["error"] is not None]
    lines = [f"nnlab: sweep done: {len(records) - len(failed)} of {len(records)} jobs finished"
             + (f", {len(failed)} failed:" if failed else ".")]
    for r in failed:
        lines.append(f"  job {r['num']} ({' '.join(r['overrides']) or 'no overrides'}): "
                     f"{r['error'].splitlines()[0][:300]}")
    return "\n".join(lines), bool(failed)


class SweepReport(Callback):
    """Prints the sweep's summary; a failed job makes the command exit 1."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        text, failed = summary(read_jobs(config.hydra.sweep.dir))
        end_parent_run(config.hydra.sweep.dir, failed)
        print(text, file=sys.stderr if failed else sys.stdout, flush=True)
        if failed:
            raise SystemExit(1)
