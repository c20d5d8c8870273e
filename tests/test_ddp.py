"""Several processes, one job: Lightning's DDP on the CPU (gloo) lands exactly one MLflow run."""

from __future__ import annotations

from pathlib import Path

DDP = ["accelerator=cpu", "accelerator.devices=2"]


def test_a_two_process_run_lands_one_finished_run_and_one_checkpoint(
    all_runs, run_cli, tmp_path: Path,
) -> None:
    result = run_cli(tmp_path, *DDP, "trainer.max_epochs=6", "optimizer=adam",
                     "optimizer.lr=0.002")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = all_runs(tmp_path)  # not one per rank
    assert run.info.status == "FINISHED"
    assert run.data.params["accelerator.devices"] == "2"
    assert run.data.params["accelerator.strategy"] == "ddp"
    assert run.data.metrics["val/acc"] > 0.9, run.data.metrics
    checkpoints = list((tmp_path / "mlruns" / "hydra").rglob("*.ckpt*"))
    assert [c.name for c in checkpoints] == ["last.ckpt"], checkpoints
    assert Path(run.data.tags["nnlab.checkpoint"]) == checkpoints[0].resolve()
    assert "Traceback" not in result.stderr


def test_a_diverging_two_process_run_stops_every_rank_and_fails_once(
    all_runs, run_cli, tmp_path: Path,
) -> None:
    result = run_cli(tmp_path, *DDP, "optimizer.lr=1e4", "trainer.max_epochs=2", timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FAILED" and run.data.tags["diverged"] == "true"


def test_a_sweep_of_two_process_jobs_lands_one_run_per_job(all_runs, run_cli,
                                                           tmp_path: Path) -> None:
    result = run_cli(tmp_path, "-m", *DDP, "seed=0,1", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=6", "trainer.limit_val_batches=2",
                     "trainer.limit_test_batches=2")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = all_runs(tmp_path)
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_sigterm_stops_every_rank_and_resume_finishes_the_same_run(
    all_runs, store_uri, tmp_path: Path,
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from mlflow.tracking import MlflowClient

    args = [*DDP, "trainer.max_epochs=4", "checkpoint.every_n_steps=5",
            "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    job = subprocess.Popen([sys.executable, "-m", "nnlab", *args], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while True:  # wait for a checkpoint and a few logged steps, then stop rank 0
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()
        runs = all_runs(tmp_path) if (tmp_path / "mlruns" / "mlflow.db").exists() else []
        if runs and Path(runs[0].data.tags["nnlab.checkpoint"]).is_file():
            steps = MlflowClient(store_uri(tmp_path)).get_metric_history(
                runs[0].info.run_id, "train/loss_step")
            if len(steps) >= 8:
                break
        time.sleep(0.5)
    job.send_signal(signal.SIGTERM)
    out, err = job.communicate(timeout=300)
    assert job.returncode == 130, err[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "KILLED"

    resumed = subprocess.run([sys.executable, "-m", "nnlab", f"resume={run.info.run_id}"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
    epochs = MlflowClient(store_uri(tmp_path)).get_metric_history(run.info.run_id, "val/acc")
    assert len(epochs) == 4, "every epoch once, across the stop"
