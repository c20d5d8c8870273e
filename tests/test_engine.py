"""The engine's pieces in-process: every option composes and builds; inits and activations are
what their formulas say."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class
from torch import nn

from nnlab.activations import ACTIVATIONS, activation_factory, derivative
from nnlab.config import GROUPS, validate
from nnlab.engine.build import build, build_model, build_module
from nnlab.inits import apply_init

ROOT = Path(__file__).resolve().parents[1]
ACTIVATION_OPTIONS = sorted(p.stem for p in (ROOT / "conf" / "activation").glob("*.yaml"))
INIT_OPTIONS = sorted(p.stem for p in (ROOT / "conf" / "init").glob("*.yaml"))
DIGITS_SHAPE = (1, 28, 28)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


EXACT = {"zeros": 0.0, "ones": 1.0, "constant": 0.1}  # conf/init/constant.yaml: value 0.1


def first_layer(net: nn.Module) -> nn.Module:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear))


@pytest.mark.parametrize("model", ["lenet5", "mlp"])
@pytest.mark.parametrize("activation", ACTIVATION_OPTIONS)
def test_every_activation_and_init_builds_a_working_model(
    compose_cfg, model: str, activation: str,
) -> None:
    x = torch.randn(4, *DIGITS_SHAPE)
    torch.manual_seed(0)
    pytorch_default = first_layer(build_model(compose_cfg([f"model={model}"]), DIGITS_SHAPE, 10))
    for init in INIT_OPTIONS:
        cfg = compose_cfg([f"model={model}", f"activation={activation}", f"init={init}"])
        validate(cfg)
        torch.manual_seed(0)
        net = build_model(cfg, DIGITS_SHAPE, 10)
        out = net(x)
        assert out.shape == (4, 10), (model, activation, init)
        first = first_layer(net)
        if init in EXACT:
            assert torch.all(first.weight == EXACT[init]), init
        if init != "default":  # the chosen init, not PyTorch's, drew the first layer
            assert not torch.equal(first.weight, pytorch_default.weight), init
            assert torch.all(first.bias == 0), init
        else:
            assert torch.equal(first.weight, pytorch_default.weight)
        built = [m for m in net.modules() if getattr(m, "nnlab_activation", None) is not None]
        assert len(built) >= 2, "the activation must be used by every hidden layer"
        assert all(isinstance(m, type(built[0])) for m in built)


@pytest.mark.parametrize("group", [g for g in GROUPS if g not in ("model", "activation", "init")])
def test_every_option_of_the_other_groups_composes_and_builds(compose_cfg, group: str) -> None:
    for option in options(group):
        if group == "accelerator" and option == "gpu" and not torch.cuda.is_available():
            continue
        overrides = [f"{group}={option}"]
        if group == "dataset":
            data_cls = get_class(compose_cfg(overrides).dataset._target_)
            if not getattr(data_cls, "is_image", True):
                overrides.append("model=mlp")  # flat toy / regression data need an MLP
            if data_cls.task == "regression":
                overrides.append("loss=mse")
        cfg = compose_cfg(overrides)
        validate(cfg)
        if group == "dataset" and "root" in cfg.dataset:
            continue  # needs files on disk: covered by the real-data tests
        datamodule, module = build(cfg)
        x, y = next(iter(datamodule.train_dataloader()))
        assert torch.isfinite(module.objective(module(x), y)), overrides
        optimizer = module.optimizer_factory(module.parameters())
        assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr


def test_build_module_applies_the_chosen_optimizer_and_scheduler(compose_cfg) -> None:
    cfg = compose_cfg(["optimizer=adamw", "optimizer.lr=0.003", "scheduler=step"])
    module = build_module(cfg, build_model(cfg, DIGITS_SHAPE, 10), "classification", 10)
    configured = module.configure_optimizers()
    assert isinstance(configured["optimizer"], torch.optim.AdamW)
    assert configured["optimizer"].param_groups[0]["lr"] == pytest.approx(0.003)
    assert isinstance(configured["lr_scheduler"], torch.optim.lr_scheduler.StepLR)


# -- initialisation statistics on a large layer ---------------------------------------------------
FAN_IN, FAN_OUT = 800, 1200


def init_layer(name: str, activation: str = "relu", **params) -> nn.Linear:
    torch.manual_seed(0)
    layer = nn.Linear(FAN_IN, FAN_OUT)
    apply_init(nn.Sequential(layer), name, activation=activation, **params)
    return layer


@pytest.mark.parametrize(("name", "params", "value"), [
    ("zeros", {}, 0.0), ("ones", {}, 1.0), ("constant", {"value": 0.37}, 0.37),
])
def test_constant_inits_are_exact(name: str, params: dict, value: float) -> None:
    layer = init_layer(name, **params)
    assert torch.all(layer.weight == value)
    assert torch.all(layer.bias == 0)


def test_uniform_and_normal_moments() -> None:
    w = init_layer("uniform", a=-0.3, b=0.1).weight
    assert w.min() >= -0.3 and w.max() <= 0.1
    assert w.mean().item() == pytest.approx(-0.1, abs=2e-3)
    assert w.var().item() == pytest.approx(0.4**2 / 12, rel=0.02)
    w = init_layer("normal", mean=0.5, std=0.2).weight
    assert w.mean().item() == pytest.approx(0.5, abs=2e-3)
    assert w.std().item() == pytest.approx(0.2, rel=0.02)


@pytest.mark.parametrize(("name", "activation", "expected_std"), [
    ("xavier_normal", "relu", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("xavier_uniform", "relu", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("kaiming_normal", "relu", math.sqrt(2 / FAN_IN)),
    ("kaiming_uniform", "relu", math.sqrt(2 / FAN_IN)),
    ("kaiming_normal", "tanh", (5 / 3) / math.sqrt(FAN_IN)),
    ("kaiming_normal", "sigmoid", 1 / math.sqrt(FAN_IN)),
    ("kaiming_normal", "leaky_relu", math.sqrt(2 / (1 + 0.01**2)) / math.sqrt(FAN_IN)),
])
def test_glorot_and_he_std_match_the_formula(name: str, activation: str,
                                             expected_std: float) -> None:
    w = init_layer(name, activation=activation).weight
    assert w.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert w.std().item() == pytest.approx(expected_std, rel=0.03)


def test_eye_is_identity_and_orthogonal_is_orthogonal() -> None:
    square = nn.Linear(64, 64)
    apply_init(nn.Sequential(square), "eye")
    assert torch.equal(square.weight, torch.eye(64))
    conv = nn.Conv2d(8, 8, 3, padding=1)
    apply_init(nn.Sequential(conv), "eye")
    x = torch.randn(2, 8, 10, 10)
    assert torch.allclose(conv(x), x)  # dirac: a conv that passes its input through
    w = init_layer("orthogonal").weight  # 1200 x 800: orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(FAN_IN), atol=1e-4)


def test_default_keeps_pytorch_init_and_nonzero_biases() -> None:
    torch.manual_seed(0)
    reference = nn.Linear(FAN_IN, FAN_OUT)
    layer = init_layer("default")
    assert torch.equal(layer.weight, reference.weight)
    assert layer.bias.abs().sum() > 0


# -- activations: autograd derivative == closed form ----------------------------------------------
@pytest.mark.parametrize("name", sorted(n for n, a in ACTIVATIONS.items() if a.derivative))
def test_activation_derivative_matches_closed_form(name: str) -> None:
    x = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    x = x[x.abs() > 1e-6].requires_grad_(True)  # ReLU-like kinks at 0 have no derivative
    params = {"negative_slope": 0.1} if name == "leaky_relu" else {}
    params = {"alpha": 0.7} if name == "elu" else params
    y = activation_factory(name, **params)()(x)
    (autograd,) = torch.autograd.grad(y.sum(), x)
    closed = ACTIVATIONS[name].derivative(x.detach(), **params)
    assert torch.allclose(autograd, closed, atol=1e-9), name


def test_sigmoid_derivative_peaks_at_a_quarter() -> None:
    x = torch.linspace(-8, 8, 1601)
    grad = derivative("sigmoid", x)
    assert grad.max().item() == pytest.approx(0.25)
    assert grad[0].item() < 1e-3  # saturated tails: the vanishing-gradient lesson


def test_validation_fills_in_the_defaults_a_run_uses(compose_cfg) -> None:
    """A key removed with ~ (or never written) is logged with the value the run really uses."""
    cfg = compose_cfg(["init=constant", "~init.value", "optimizer=sgd", "~optimizer.momentum"])
    assert "value" not in cfg.init and "momentum" not in cfg.optimizer
    validate(cfg)
    assert cfg.init.value == 0.1  # nnlab.inits.constant's default
    assert cfg.optimizer.momentum == 0  # torch.optim.SGD's default
    assert cfg.loss.reduction == "mean"  # torch.nn.CrossEntropyLoss's


def test_he_and_glorot_are_the_papers_schemes(compose_cfg) -> None:
    """init=he is kaiming (normal, fan_in, the activation's gain); init=glorot is xavier
    (uniform, variance 2 / (fan_in + fan_out))."""
    expected = {"kaiming": math.sqrt(2 / FAN_IN), "xavier": math.sqrt(2 / (FAN_IN + FAN_OUT))}
    for alias, name in (("he", "kaiming"), ("glorot", "xavier")):
        cfg = compose_cfg([f"init={alias}", "model=mlp", f"model.hidden=[{FAN_OUT}]"])
        assert cfg.init.name == name
        w = build_model(cfg, (FAN_IN,), 10).net[1].weight
        assert w.shape == (FAN_OUT, FAN_IN)
        assert w.std().item() == pytest.approx(expected[name], rel=0.03), name
        if name == "xavier":  # uniform: bounded by sqrt(3) std
            assert w.abs().max().item() <= math.sqrt(3) * expected[name] + 1e-6
