"""The GPU path, run wherever a CUDA device is visible (skipped cleanly elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_a_gpu_run_trains_on_the_device_and_finishes(all_runs, run_cli, tmp_path: Path,
                                                     precision: str) -> None:
    result = run_cli(tmp_path, "accelerator=gpu", f"accelerator.precision={precision}",
                     "trainer.max_epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.params["accelerator.accelerator"] == "gpu"
    assert run.data.metrics["val/acc"] > 0.5


def test_a_diverging_gpu_run_stops_and_fails(all_runs, run_cli, tmp_path: Path) -> None:
    result = run_cli(tmp_path, "accelerator=gpu", "optimizer.lr=1e4", "trainer.max_epochs=1")
    assert result.returncode == 1
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FAILED" and run.data.tags["diverged"] == "true"
