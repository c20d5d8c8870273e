"""The model zoo: every valid model x data-set pair trains a step on the CPU through the real
builders, invalid pairs fail with a clear error, parameter counts are pinned, per-layer inits
survive the global init, and the course MLP runs from its experiment yaml alone."""

from __future__ import annotations

import math
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from test_data_sets import write_cifar10
from torch import nn

from nnlab.config import ConfigError, validate
from nnlab.data import DataError
from nnlab.engine.build import build, build_datamodule, build_model

SMALL = ["batch_size=8", "model.width=0.125"]  # tiny CNNs, one small batch
IMAGE_MODELS = [["model=mlp"], ["model=lenet5"], ["model=lenet5", "model.classic=true"],
                ["model=alexnet", *SMALL], ["model=vgg16", *SMALL],
                ["model=vgg16", "model.batch_norm=true", *SMALL]]
FLAT_SETS = [["dataset=moons"], ["dataset=circles"], ["dataset=spirals"], ["dataset=xor"],
             ["dataset=xor", "dataset.n_features=3"], ["dataset=sine", "loss=mse"],
             ["dataset=diabetes", "loss=mse"]]
CNNS = ["lenet5", "alexnet", "vgg16"]


def train_one_step(compose_cfg, overrides: list[str]) -> float:
    """Compose, validate, build with nnlab.engine.build, fit one step; return the loss."""
    cfg = compose_cfg([*overrides, "accelerator=cpu"])
    validate(cfg)
    pl.seed_everything(0, verbose=False)
    datamodule, module = build(cfg)
    before = [p.detach().clone() for p in module.parameters()]
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, datamodule=datamodule)
    changed = [not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True)]
    assert any(changed), f"{overrides}: one step changed no weight"
    loss = float(trainer.callback_metrics["train/loss_epoch"])  # the one step's loss
    assert math.isfinite(loss), overrides
    return loss


@pytest.mark.parametrize("model", IMAGE_MODELS, ids=" ".join)
@pytest.mark.parametrize("dataset", [["dataset=digits"],
                                     ["dataset=digits", "dataset.channels=3", "dataset.resize=32"]],
                         ids=" ".join)
def test_image_models_train_a_step_on_digits(
    compose_cfg, model: list[str], dataset: list[str],
) -> None:
    train_one_step(compose_cfg, [*model, *dataset])


@pytest.mark.parametrize("model", IMAGE_MODELS, ids=" ".join)
def test_image_models_train_a_step_on_cifar10(compose_cfg, model, tmp_path, monkeypatch) -> None:
    write_cifar10(tmp_path, monkeypatch)
    train_one_step(compose_cfg, [*model, "dataset=cifar10", f"dataset.root={tmp_path}",
                                 "dataset.download=false", "dataset.crop_padding=4",
                                 "dataset.hflip=true"])


@pytest.mark.parametrize("dataset", FLAT_SETS, ids=" ".join)
def test_mlp_trains_a_step_on_every_flat_set(compose_cfg, dataset: list[str]) -> None:
    train_one_step(compose_cfg, ["model=mlp", *dataset])


@pytest.mark.parametrize("model", CNNS)
@pytest.mark.parametrize("dataset", ["moons", "circles", "spirals", "xor", "sine", "diabetes"])
def test_a_cnn_on_flat_data_is_refused_clearly(compose_cfg, model: str, dataset: str) -> None:
    cfg = compose_cfg([f"model={model}", f"dataset={dataset}", "loss=mse"])
    with pytest.raises(ConfigError, match=f"model='{model}' is invalid: it is a CNN and needs "
                       f"image inputs .* dataset={dataset} has flat feature vectors"):
        validate(cfg)


def test_colour_images_cannot_be_made_grey_by_config(compose_cfg, tmp_path, monkeypatch) -> None:
    write_cifar10(tmp_path, monkeypatch)
    cfg = compose_cfg(["dataset=cifar10", f"dataset.root={tmp_path}", "dataset.download=false",
                       "dataset.channels=1"])
    with pytest.raises(DataError, match="dataset.channels=1 cannot be made from 3-channel"):
        build_datamodule(cfg)


def num_params(compose_cfg, overrides: list[str], shape: tuple[int, ...], outputs: int = 10) -> int:
    net = build_model(compose_cfg(overrides), shape, outputs)
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(("overrides", "shape", "expected"), [
    (["model=lenet5", "model.classic=true"], (1, 28, 28), 61_706),  # LeCun et al. 1998
    (["model=lenet5"], (1, 28, 28), 61_706),
    (["model=lenet5", "model.width=0.25"], (1, 28, 28), 4_157),
    (["model=alexnet"], (1, 28, 28), 36_051_658),
    (["model=alexnet"], (3, 32, 32), 36_054_858),
    (["model=alexnet", "model.width=0.25"], (1, 28, 28), 2_262_970),
    (["model=vgg16"], (3, 32, 32), 15_245_130),  # 14,714,688 conv (as at 224px) + 3 fc of 512
    (["model=vgg16"], (1, 28, 28), 15_243_978),  # padded to 32x32: only conv 1 shrinks
    (["model=vgg16", "model.batch_norm=true"], (3, 32, 32), 15_253_578),
    (["model=vgg16", "model.width=0.25"], (3, 32, 32), 955_098),
    (["model=mlp"], (1, 28, 28), 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10),
], ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_parameter_counts(
    compose_cfg, overrides: list[str], shape: tuple[int, ...], expected: int,
) -> None:
    assert num_params(compose_cfg, overrides, shape) == expected


def test_course_mlp_has_46_parameters_and_its_own_layers(compose_cfg) -> None:
    cfg = compose_cfg(["experiment=course_mlp"])
    net = build_model(cfg, (3,), 2)
    assert sum(p.numel() for p in net.parameters()) == 3 * 4 + 4 + 4 * 4 + 4 + 4 * 2 + 2
    kinds = [type(m).__name__ for m in net.net]
    assert kinds == ["Flatten", "Linear", "Tanh", "Linear", "ReLU", "Linear"]


def layer_kinds(net: nn.Module) -> list[str]:
    return [type(m).__name__ for m in net.modules() if not list(m.children())]


def test_cnns_use_the_chosen_activation_in_every_hidden_layer(compose_cfg) -> None:
    for model, convs, hidden in [("alexnet", 5, 7), ("vgg16", 13, 15), ("lenet5", 2, 4)]:
        net = build_model(compose_cfg([f"model={model}", "activation=tanh", "model.width=0.125"]),
                          (1, 28, 28), 10)
        kinds = layer_kinds(net)
        assert kinds.count("Conv2d") == convs and kinds.count("Linear") == 3
        assert kinds.count("Tanh") == hidden and "ReLU" not in kinds, model
    alex = layer_kinds(build_model(compose_cfg(["model=alexnet", "model.width=0.125"]),
                                   (3, 32, 32), 10))
    fc = [k for k in alex if k in ("Dropout", "Linear")]
    assert fc == ["Dropout", "Linear", "Dropout", "Linear", "Linear"]  # dropout before fc 1, 2
    classic = layer_kinds(build_model(compose_cfg(["model=lenet5", "model.classic=true"]),
                                      (1, 28, 28), 10))
    assert classic.count("AvgPool2d") == 2 and "MaxPool2d" not in classic
    assert classic.count("Conv2d") == 3  # C1, C3 and C5
    bn = layer_kinds(build_model(compose_cfg(["model=vgg16", "model.batch_norm=true",
                                              "model.width=0.125"]), (3, 32, 32), 10))
    assert bn.count("BatchNorm2d") == 13


def test_per_layer_inits_survive_the_global_init(compose_cfg) -> None:
    def hidden_and_head(init: str) -> tuple[list[torch.Tensor], nn.Linear]:
        torch.manual_seed(0)
        net = build_model(compose_cfg(["experiment=course_mlp", f"init={init}"]), (3,), 2)
        linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
        return [m.weight.detach().clone() for m in linears[:-1]], linears[-1]

    hidden_const, head_const = hidden_and_head("constant")
    hidden_orth, head_orth = hidden_and_head("orthogonal")
    for a, b in zip(hidden_const, hidden_orth, strict=True):
        assert torch.equal(a, b)  # the global init never touched the layers' own inits
        assert a.unique().numel() > 1
    assert torch.all(head_const.weight == 0.1)  # ... but did initialise the head
    assert not torch.equal(head_const.weight, head_orth.weight)


def test_course_mlp_experiment_trains_a_step(compose_cfg) -> None:
    loss = train_one_step(compose_cfg, ["experiment=course_mlp"])
    assert 0.3 < loss < 1.5  # cross-entropy of 2 classes near chance after one step


@pytest.mark.slow
def test_course_mlp_experiment_runs_from_the_cli_and_learns_parity(
    all_runs, run_cli, tmp_path: Path,
) -> None:
    out = run_cli(tmp_path, "experiment=course_mlp")
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = all_runs(tmp_path, "course_mlp")
    assert run.data.metrics["test/acc"] > 0.85, run.data.metrics  # 0.95 measured, 60 epochs


@pytest.mark.slow
def test_four_model_fashion_mnist_multirun(
    all_runs, run_cli, shared_data: Path, tmp_path: Path,
) -> None:
    """The issue's done-when sweep, one short epoch each (limit_train_batches keeps it quick)."""
    start = time.perf_counter()
    out = run_cli(tmp_path, "-m", "model=mlp,lenet5,alexnet,vgg16", "dataset=fashion_mnist",
                  f"dataset.root={shared_data}", "trainer.max_epochs=1", "model.width=0.25",
                  "trainer.limit_train_batches=50", "trainer.limit_val_batches=20",
                  "trainer.limit_test_batches=20", timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = all_runs(tmp_path)
    assert sorted(r.data.tags["nnlab.model"] for r in runs) == ["alexnet", "lenet5", "mlp", "vgg16"]
    assert all(r.info.status == "FINISHED" for r in runs)
    print(f"4-model multirun: {time.perf_counter() - start:.0f} s")
