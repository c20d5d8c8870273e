"""Sweeps through hydra-submitit-launcher: locally, and on a real one-node SLURM cluster started
on this machine (tests/helpers/local_slurm.py); a job cancelled with scancel ends FAILED in
the summary."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.local_slurm import LocalSlurm, missing

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2", "instruments.plots=false"]

QUIET = ["trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    why = missing()
    if why:
        pytest.skip(f"no local SLURM cluster: {why}")
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    yield cluster
    cluster.stop()


def by_job(all_runs, store_uri, cwd: Path) -> dict[int, object]:
    """The sweep's runs by job number; safe while jobs are still creating the store."""
    from nnlab.tracking import store_lock

    with store_lock(store_uri(cwd)):
        return {int(r.data.tags["nnlab.job_num"]): r for r in all_runs(cwd)}


def test_submitit_local_sweep_lands_two_finished_runs_and_the_summary(
    all_runs, run_cli, store_uri, tmp_path: Path,
) -> None:
    result = run_cli(tmp_path, "-m", "seed=0,1", "hydra/launcher=submitit_local", *TINY,
                     timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "nnlab: sweep done: 2 of 2 jobs finished." in result.stdout
    runs = by_job(all_runs, store_uri, tmp_path)
    assert sorted(runs) == [0, 1]
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    assert {r.data.params["seed"] for r in runs.values()} == {"0", "1"}
    assert len({r.data.tags["nnlab.sweep_id"] for r in runs.values()}) == 1


def test_submitit_slurm_sweep_runs_each_job_on_the_cluster(
    all_runs, run_cli, store_uri, slurm: LocalSlurm, tmp_path: Path,
) -> None:
    result = run_cli(tmp_path, "-m", "seed=0,1", "hydra/launcher=submitit_slurm", *TINY,
                     timeout=300, env=slurm.env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "nnlab: sweep done: 2 of 2 jobs finished." in result.stdout
    runs = by_job(all_runs, store_uri, tmp_path)
    assert sorted(runs) == [0, 1]
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    # the jobs really ran under SLURM: one job array whose 2 tasks end COMPLETED there (a task
    # may still be exiting when its result is in)
    tasks = sorted(p.name for p in tmp_path.glob("mlruns/hydra/multirun/*/.submitit/[0-9]*_*"))
    assert len(tasks) == 2 and tasks[0].endswith("_0") and tasks[1].endswith("_1"), tasks
    deadline = time.monotonic() + 60
    while True:
        lines = slurm.run("squeue", "-h", "-t", "all", "-o", "%i %T", "-j",
                          tasks[0].split("_")[0]).stdout.split()
        array = dict(zip(lines[::2], lines[1::2], strict=True))
        if set(array.values()) == {"COMPLETED"} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(array) == tasks and set(array.values()) == {"COMPLETED"}, array


def test_a_cancelled_slurm_job_ends_failed_in_the_summary_and_nothing_hangs(all_runs, store_uri,
        slurm: LocalSlurm, tmp_path: Path) -> None:
    # job 0: one short epoch; job 1: long enough to be cancelled while it trains
    args = ["-m", "trainer.max_epochs=1,500", "hydra/launcher=submitit_slurm",
            "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2", "instruments.plots=false", *QUIET]
    sweep = subprocess.Popen([sys.executable, "-m", "nnlab", *args], cwd=tmp_path,
                             env={**slurm.env, "PYTHONUNBUFFERED": "1"}, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while (1 not in by_job(all_runs, store_uri, tmp_path)
               or by_job(all_runs, store_uri, tmp_path)[1].info.status != "RUNNING"):
            assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()
            time.sleep(0.5)
        tasks = slurm.run("squeue", "-h", "-o", "%i").stdout.split()
        task = next(t for t in tasks if t.endswith("_1"))
        assert slurm.run("scancel", task).returncode == 0
        out, err = sweep.communicate(timeout=180)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 1, out[-2000:] + err[-3000:]
    assert "1 of 2 jobs finished, 1 failed:" in err
    assert "job 1 (trainer.max_epochs=500" in err and "CANCELLED" in err, err[-3000:]
    runs = by_job(all_runs, store_uri, tmp_path)
    assert runs[0].info.status == "FINISHED"
    assert runs[1].info.status == "KILLED", "SLURM's SIGTERM ends the run KILLED, not RUNNING"
