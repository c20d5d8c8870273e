"""Instruments: per-layer metrics in MLflow from a real run, their values checked against a
hand computation, dead/saturated fractions on networks built to have them, and the PNG plots."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers.logger import Logger
from mlflow.tracking import MlflowClient
from torch import nn

from nnlab.activations import ACTIVATIONS
from nnlab.engine import train_one
from nnlab.engine.instruments import Instruments, instrument_callbacks
from nnlab.engine.logger import is_curve
from nnlab.figures import learning_curves
from nnlab.plot import activation_curves, main
from nnlab.tracking.tags import LAYERS as LAYERS_TAG

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def moons_run(compose_cfg, tmp_path_factory):
    """One real 2-epoch run: sigmoid MLP on moons, instruments every 4 steps."""
    tmp = tmp_path_factory.mktemp("instruments")
    uri = f"sqlite:///{tmp}/mlflow.db"
    cfg = compose_cfg(["model=mlp", "model.hidden=[16,8]", "activation=sigmoid", "dataset=moons",
                       "trainer.max_epochs=2", "instruments.every_n_steps=4",
                       "trainer.enable_progress_bar=false", "accelerator=cpu",
                       f"mlflow.tracking_uri={uri}", f"mlflow.artifact_root={tmp}/artifacts",
                       "mlflow.experiment_name=instruments"])
    train_one(cfg, output_dir=tmp)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("instruments").experiment_id])
    return client, run, tmp


def test_per_layer_metrics_reach_mlflow(compose_cfg, moons_run) -> None:
    client, run, _ = moons_run
    metrics = run.data.metrics
    assert run.data.tags[LAYERS_TAG] == "net.1,net.3,net.5"  # Linear layers, input to output
    for layer in ("net.1", "net.3", "net.5"):
        history = client.get_metric_history(run.info.run_id, f"grad_norm/{layer}")
        assert len(history) == 2  # once per epoch
        assert all(m.value > 0 for m in history)
        assert metrics[f"weight_norm/{layer}"] > 0
        steps = client.get_metric_history(run.info.run_id, f"grad_norm/{layer}_step")
        assert sorted(m.step for m in steps) == [4, 8, 12, 16, 20]  # 10 batches x 2 epochs
    for act in ("net.2", "net.4"):  # sigmoid outputs lie in (0, 1)
        assert 0 < metrics[f"act_mean/{act}"] < 1
        assert 0 < metrics[f"act_std/{act}"] < 0.5
        assert 0 <= metrics[f"saturated/{act}"] <= 1
        assert f"dead/{act}" not in metrics  # a sigmoid unit cannot die


def test_plots_are_logged_as_png_artifacts(compose_cfg, moons_run) -> None:
    client, run, tmp = moons_run
    names = {a.path for a in client.list_artifacts(run.info.run_id, "instruments")}
    expected = {"weights_at_init", "learning_curves", "confusion_matrix", "decision_boundary",
                "decision_boundary_frames"}
    assert names == {f"instruments/{n}.png" for n in expected} | {
        "instruments/decision_boundary.gif"}  # the boundary over training (tests/test_pictures)
    folder = client.download_artifacts(run.info.run_id, "instruments", str(tmp))
    for name in expected:
        data = Path(folder, f"{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    # the learning curves, drawn from the values the run's logger kept, are the picture the
    # run's metric histories in the store give
    curves = {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
              for key in run.data.metrics if is_curve(key)}
    assert Path(folder, "learning_curves.png").read_bytes() == learning_curves(curves)


class ListLogger(Logger):
    """Keeps every logged metric: (name, step) -> value."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[tuple[str, int], float] = {}

    name, version = "list", "0"

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.values.update({(k, step): float(v) for k, v in metrics.items()})

    def log_hyperparams(self, *args, **kwargs) -> None:
        pass


class HandGradNorms(pl.Callback):
    """Computes each layer's gradient norm by hand at every step, for comparison."""

    def __init__(self) -> None:
        self.norms: dict[tuple[str, int], float] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        for name, layer in pl_module.model.named_modules():
            params = list(layer.parameters(recurse=False))
            if params:
                squares = sum(p.grad.pow(2).sum() for p in params)
                self.norms[(name, trainer.global_step + 1)] = squares.sqrt().item()


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, callbacks: list, epochs: int = 1):
    from torch.utils.data import DataLoader, TensorDataset

    from nnlab.engine.module import LabModule
    from nnlab.losses import Objective

    module = LabModule(model, Objective("cross_entropy", "classification", 2),
                       lambda params: torch.optim.SGD(params, lr=0.1))
    logger = ListLogger()
    trainer = pl.Trainer(max_epochs=epochs, logger=logger, callbacks=callbacks,
                         accelerator="cpu", enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True))
    return logger.values


def test_grad_norms_equal_a_hand_computation() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
    hand = HandGradNorms()
    logged = fit(model, torch.randn(64, 2), torch.randint(0, 2, (64,)),
                 [Instruments(every_n_steps=1, plots=False), hand], epochs=2)
    for layer in ("0", "2"):
        per_step = [hand.norms[(layer, s)] for s in range(1, 9)]
        for step in range(1, 9):
            assert logged[(f"grad_norm/{layer}_step", step)] == pytest.approx(per_step[step - 1])
        epoch2 = logged[(f"grad_norm/{layer}", 8)]
        assert epoch2 == pytest.approx(sum(per_step[4:]) / 4)  # epoch value: mean over its steps
        weight = torch.cat([p.detach().flatten() for p in model[int(layer)].parameters()]).norm()
        assert logged[(f"weight_norm/{layer}", 8)] == pytest.approx(weight.item())


def test_dead_relu_and_saturated_units_are_counted() -> None:
    torch.manual_seed(0)
    relu_net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():  # kill 3 of 8 units: they output 0 for every input
        relu_net[0].weight[:3] = 0.0
        relu_net[0].bias[:3] = -1.0
        relu_net[0].bias[3:] = 10.0  # the other 5 always fire
    x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    logged = fit(relu_net, x, y, [Instruments(every_n_steps=100, plots=False)])
    assert logged[("dead/1", 4)] == pytest.approx(3 / 8)

    sig_net = nn.Sequential(nn.Linear(2, 8), nn.Sigmoid(), nn.Linear(8, 2))
    with torch.no_grad():  # pre-activations of +-1000: every unit saturated, f'(x) ~ 0
        sig_net[0].weight.zero_()
        sig_net[0].bias.copy_(torch.tensor([1000.0, -1000.0] * 4))
    logged = fit(sig_net, x, y, [Instruments(every_n_steps=100, saturation_threshold=0.01,
                                             plots=False)])
    assert logged[("saturated/1", 4)] == 1.0
    assert logged[("act_mean/1", 4)] == pytest.approx(0.5)


def test_instruments_can_be_switched_off(compose_cfg) -> None:
    assert instrument_callbacks(compose_cfg(["instruments.enabled=false"])) == []
    (on,) = instrument_callbacks(compose_cfg(["instruments.every_n_steps=7"]))
    assert isinstance(on, Instruments) and on.every_n_steps == 7


def test_activation_figure_derivatives_match_closed_forms(tmp_path) -> None:
    for name, (x, _, grad) in activation_curves().items():
        nonzero = x.abs() > 1e-6  # relu-like kinks at 0
        expected = ACTIVATIONS[name].derivative(x)
        torch.testing.assert_close(grad[nonzero], expected[nonzero], atol=1e-6, rtol=1e-6)
    out = tmp_path / "acts.png"
    assert main(["activations", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(PNG) and out.stat().st_size > 20000
