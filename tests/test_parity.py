"""nnlab's `tiny` model reproduces the courses' hand-written NumPy network number for number."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.numpy_reference import NumpyNetwork
from mlflow.tracking import MlflowClient

from nnlab import load_model
from nnlab.data.people import NEW_PEOPLE, PEOPLE, SHIFT
from nnlab.engine import build, train_one

EPOCHS = 1000
COURSE = ["model=tiny", "activation=sigmoid", "dataset=gender", "loss=mse", "init=constant",
          "init.value=0.1", "init.bias=constant", "optimizer=sgd", "optimizer.lr=0.1",
          "optimizer.momentum=0", "batch_size=1", "scheduler=none", "accelerator=cpu"]


def table(rows: dict) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([[w - SHIFT[0], h - SHIFT[1]] for w, h, _ in rows.values()])
    return x, np.array([float(sex) for *_, sex in rows.values()])


@pytest.fixture(scope="module")
def reference() -> tuple[NumpyNetwork, list[float]]:
    net = NumpyNetwork(value=0.1)
    running, _ = net.train(*table(PEOPLE), lr=0.1, epochs=EPOCHS)
    return net, running


def test_numpy_reference_learns_the_table(reference) -> None:
    net, running = reference
    assert running[-1] < 0.01 < running[0]  # it learned (the course's loss curve)
    emily, frank = net.predict(table(NEW_PEOPLE)[0])
    assert emily > 0.5 > frank  # the course's answer: Emily F, Frank M


@pytest.mark.parametrize("epochs", [
    40,  # the default suite: a real run is ~0.1-0.2 s per epoch on a busy 2-core machine
    pytest.param(EPOCHS, marks=pytest.mark.slow),  # the full lesson (about 1-3 minutes)
])
def test_run_matches_numpy_every_epoch(compose_cfg, epochs, tmp_path) -> None:
    """A real `run` (Trainer, MLflow logger); its logged per-epoch loss is read back from MLflow
    and compared with the NumPy network's, then both predict two new people."""
    net = NumpyNetwork(value=0.1)
    running, _ = net.train(*table(PEOPLE), lr=0.1, epochs=epochs)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = compose_cfg([*COURSE, f"trainer.max_epochs={epochs}", "instruments.enabled=false",
                       "trainer.enable_progress_bar=false", f"mlflow.tracking_uri={uri}",
                       f"mlflow.artifact_root={tmp_path}/artifacts",
                       "mlflow.experiment_name=parity"])
    train_one(cfg, output_dir=tmp_path)

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("parity").experiment_id])
    history = sorted(client.get_metric_history(run.info.run_id, "train/loss_epoch"),
                     key=lambda m: m.step)
    logged = np.array([m.value for m in history])
    assert len(logged) == epochs
    np.testing.assert_allclose(logged, running, rtol=0, atol=1e-6)

    x_new, _ = table(NEW_PEOPLE)
    model = load_model(run.info.run_id, uri)  # the trained network, as the run stored it
    with torch.no_grad():
        ours = model(torch.tensor(x_new, dtype=torch.float32)).flatten().double().numpy()
    np.testing.assert_allclose(ours, net.predict(x_new), rtol=0, atol=1e-6)
    if epochs == EPOCHS:
        assert ours[0] > 0.5 > ours[1]  # Emily F, Frank M


def test_training_step_loop_matches_numpy(compose_cfg, reference) -> None:
    """The same 1000 epochs driven through LabModule.training_step by hand (no Trainer)."""
    net, running = reference
    cfg = compose_cfg(COURSE)
    torch.manual_seed(0)
    datamodule, module = build(cfg)
    optimizer = module.configure_optimizers()
    losses = []
    for _ in range(EPOCHS):
        epoch = []
        for i, batch in enumerate(datamodule.train_dataloader()):
            optimizer.zero_grad()
            loss = module.training_step(batch, i)
            loss.backward()
            optimizer.step()
            epoch.append(loss.item())
        losses.append(np.mean(epoch))
    np.testing.assert_allclose(losses, running, rtol=0, atol=1e-6)
