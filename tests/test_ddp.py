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
