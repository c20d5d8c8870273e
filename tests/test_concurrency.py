"""Parallel writers on one sqlite store: 4 joblib jobs, 4 processes creating a store that does not
exist yet at the same instant, and 4 processes creating the same experiment at the same instant."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

# Imports first (the slow part), says it is ready, waits for "go", then opens the store, creates
# the experiment if needed, logs one run and ends it: the first use happens at once in all of them.
RACER = """
import sys, time
from pathlib import Path
from nnlab.tracking import Tracker
uri, experiment, folder, n = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
(folder / f"ready-{n}").touch()
while not (folder / "go").exists():
    time.sleep(0.002)
tracker = Tracker(uri, experiment)
tracker.start(f"racer-{n}", {"n": n}, {})
tracker.log_metrics({"x": float(n)})
tracker.end("FINISHED")
"""


def race(folder: Path, uri: str, experiment: str, n: int = 4) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen([sys.executable, "-c", RACER, uri, experiment, str(folder), str(i)],
                              cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(n)]
    deadline = time.monotonic() + 180
    while len(list(folder.glob("ready-*"))) < n:
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    (folder / "go").touch()
    return [subprocess.CompletedProcess(p.args, p.wait(120), *p.communicate()) for p in procs]


def finished_runs(all_runs, folder: Path, experiment: str) -> list:
    return [r for r in all_runs(folder, experiment) if r.info.status == "FINISHED"]


def test_four_processes_creating_a_new_store_at_once_all_succeed(all_runs, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert not (tmp_path / "mlruns").exists()
    results = race(tmp_path, uri, "nnlab")
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
        assert "duplicate column name" not in result.stderr
    assert len(finished_runs(all_runs, tmp_path, "nnlab")) == 4


def test_four_processes_creating_the_same_experiment_at_once_share_it(
    all_runs, tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    from nnlab.tracking import Tracker

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    Tracker(uri, "other")  # the store exists; the experiment does not
    results = race(tmp_path, uri, "shared")
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    names = [e.name for e in MlflowClient(uri).search_experiments()]
    assert names.count("shared") == 1
    assert len(finished_runs(all_runs, tmp_path, "shared")) == 4


@pytest.mark.slow  # four Lightning processes at once on 2 cores
def test_four_joblib_jobs_log_every_run_to_one_fresh_store(
    all_runs, run_cli, tmp_path: Path,
) -> None:
    result = run_cli(tmp_path, "-m", "seed=0,1,2,3", "hydra/launcher=joblib",
                     "hydra.launcher.n_jobs=4", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
                     "trainer.limit_test_batches=2", "trainer.log_every_n_steps=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "database is locked" not in result.stderr
    assert "4 of 4 jobs finished" in result.stdout
    runs = all_runs(tmp_path)
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1", "2", "3"]
    assert all(r.info.status == "FINISHED" and "test/acc" in r.data.metrics for r in runs)
    assert len({r.data.tags["nnlab.sweep_id"] for r in runs}) == 1
