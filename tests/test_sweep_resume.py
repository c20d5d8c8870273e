"""sweep.resume=true: a 4-job sweep killed mid-way (the whole process group, SIGKILL) and run again
lands exactly one FINISHED run per job; finished runs are skipped untouched, the interrupted one
continues from its checkpoint into the same run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

QUIET = ["trainer.enable_progress_bar=false"]


SWEEP = ["-m", "seed=0,1,2,3", "trainer.max_epochs=2", "trainer.limit_train_batches=10",
         "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
         "checkpoint.every_n_steps=2", "instruments.plots=false"]


def runs_now(all_runs, store_uri, cwd: Path) -> list:
    from nnlab.tracking import store_lock

    with store_lock(store_uri(cwd)):
        return all_runs(cwd)


def has_checkpoint(run) -> bool:
    return Path(run.data.tags.get("nnlab.checkpoint", "/nonexistent")).is_file()


def kill_after_two_jobs(all_runs, store_uri, cwd: Path) -> None:
    """Start the sweep; SIGKILL its process group once 2 runs are FINISHED and the third has
    a checkpoint (it is training)."""
    sweep = subprocess.Popen([sys.executable, "-m", "nnlab", *SWEEP, *QUIET], cwd=cwd,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 300
    try:
        while True:
            assert sweep.poll() is None, f"the sweep ended before it was killed: {sweep.stderr}"
            assert time.monotonic() < deadline, "the sweep never reached its third job"
            runs = runs_now(all_runs, store_uri, cwd)
            finished = [r for r in runs if r.info.status == "FINISHED"]
            if len(finished) >= 2 and any(has_checkpoint(r) for r in runs
                                          if r.info.status == "RUNNING"):
                break
            time.sleep(0.05)
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()


def test_a_killed_sweep_resumed_lands_one_finished_run_per_job(
    all_runs, run_cli, store_uri, tmp_path: Path,
) -> None:
    kill_after_two_jobs(all_runs, store_uri, tmp_path)
    before = {r.info.run_id: r for r in runs_now(all_runs, store_uri, tmp_path)}
    done = {i: r for i, r in before.items() if r.info.status == "FINISHED"}
    cut = {i: r for i, r in before.items() if r.info.status != "FINISHED" and has_checkpoint(r)}
    assert (len(done), len(cut)) == (2, 1), [r.info.status for r in before.values()]

    result = run_cli(tmp_path, *SWEEP, "sweep.resume=true", timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert ("4 of 4 jobs finished (2 skipped as already FINISHED, 1 resumed, 1 run)"
            in result.stdout), result.stdout[-2000:]

    after = {r.info.run_id: r for r in all_runs(tmp_path)}
    finished = [r for r in after.values() if r.info.status == "FINISHED"]
    assert sorted(r.data.params["seed"] for r in finished) == ["0", "1", "2", "3"], "no duplicate"
    assert len(finished) == 4
    for run_id, run in done.items():  # untouched: same run, same end
        assert after[run_id].info.status == "FINISHED"
        assert after[run_id].info.end_time == run.info.end_time
    for run_id in cut:  # continued in the same run from its checkpoint
        assert after[run_id].info.status == "FINISHED"
        assert after[run_id].data.tags.get("nnlab.resumed_from") == "last.ckpt"
    assert "RUNNING" not in {r.info.status for r in after.values()}
    parents = {r.data.tags["nnlab.sweep_id"]: r.info.status
               for r in all_runs(tmp_path, parents=True)}
    assert sorted(parents.values()) == ["FINISHED", "KILLED"], parents  # nothing left RUNNING
    hashes = {r.data.tags["nnlab.config_hash"] for r in finished}
    assert len(hashes) == 4, "each job's config has its own hash"


def test_the_config_hash_ignores_where_a_run_goes_but_not_what_it_trains(compose_cfg) -> None:
    from nnlab.config import config_hash

    base = config_hash(compose_cfg(["seed=1"]))
    assert base == config_hash(compose_cfg(["seed=1", "sweep.resume=true",
                                            "mlflow.experiment_name=other",
                                            "trainer.enable_progress_bar=false"]))
    assert base != config_hash(compose_cfg(["seed=2"]))
    assert base != config_hash(compose_cfg(["seed=1", "optimizer.lr=0.01"]))
