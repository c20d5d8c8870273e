"""Reproducibility: the same config and seed give bit-identical metrics on the CPU; another seed
does not (so the comparison can fail)."""

from __future__ import annotations

from pathlib import Path

TIMING = ("time/",)


def metric_histories(store_uri, cwd: Path, run) -> dict[str, list[tuple[int, float]]]:
    """Every non-timing metric's full history as (step, value), exact floats."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store_uri(cwd))
    return {
        key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        for key in sorted(run.data.metrics) if not key.startswith(TIMING)
    }


def test_same_config_and_seed_give_identical_metrics_bit_for_bit(
    all_runs, run_cli, store_uri, tmp_path: Path,
) -> None:
    # Three jobs in one process: seed 3 twice (global state must not leak between runs), seed 4.
    result = run_cli(tmp_path, "-m", "seed=3,4,3", "accelerator=cpu", "trainer.max_epochs=2",
                     "trainer.limit_train_batches=6", "trainer.limit_val_batches=2",
                     "trainer.limit_test_batches=2", "trainer.log_every_n_steps=1",
                     "model.dropout=0.2")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(all_runs(tmp_path), key=lambda r: r.data.tags["nnlab.job_num"])
    first, other, again = (metric_histories(store_uri, tmp_path, r) for r in runs)
    assert len(first["train/loss_step"]) == 12 and "test/acc" in first
    assert first == again
    assert first["train/loss_step"] != other["train/loss_step"]

    # The epoch loss is summed on the device, not by Lightning: with 6 full batches an epoch it
    # must be the plain mean of that epoch's step losses.
    steps = sorted(first["train/loss_step"])
    for epoch, (_, value) in enumerate(sorted(first["train/loss_epoch"])):
        batch_losses = [v for _, v in steps[6 * epoch : 6 * epoch + 6]]
        assert abs(value - sum(batch_losses) / 6) < 1e-6
