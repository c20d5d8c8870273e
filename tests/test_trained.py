"""The trained model as run artifacts on the default (sqlite) store: `nnlab.load_model` gives back
the network that scored the run's test accuracy, from another folder; bad run ids are named."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = ["dataset=moons", "model=mlp", "trainer.max_epochs=2", "instruments.plots=false", "seed=3"]


def test_load_model_returns_the_trained_network_with_its_logged_accuracy(
    all_runs, compose_cfg, run_cli, store_uri, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    import nnlab
    from nnlab.engine.build import build_datamodule
    from nnlab.tracking import TrackingError

    result = run_cli(tmp_path, *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.data.tags["nnlab.checkpoint"].endswith("last.ckpt")  # the resumable one stays
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri(tmp_path))
    monkeypatch.chdir(tmp_path.parent)  # not the run's folder
    model = nnlab.load_model(run.info.run_id)
    assert not model.training

    datamodule = build_datamodule(compose_cfg(TINY))
    test = datamodule.splits["test"]
    with torch.no_grad():
        accuracy = (model(test.x).argmax(-1) == test.y).float().mean().item()
        raw = nnlab.load_model(run.info.run_id, raw_inputs=True)
        raw_accuracy = (raw(test.x * datamodule.std + datamodule.mean).argmax(-1) == test.y) \
            .float().mean().item()
    assert accuracy == pytest.approx(run.data.metrics["test/acc"], abs=1e-6)
    assert raw_accuracy == pytest.approx(accuracy, abs=1e-6)

    with pytest.raises(TrackingError, match="run '0123' does not exist"):
        nnlab.load_model("0123")
