"""Activation functions: one description each (module, derivative, init gain, what to measure).

Add a built-in one: an `Activation` entry in ACTIVATIONS and `conf/activation/<name>.yaml` with
`name: <name>` and its parameters. A user's own: any `nn.Module` class named by `_target_` in
their `activation/<name>.yaml`; its derivative is then taken from autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Activation:
    """What nnlab knows about one activation function."""

    module: Callable[..., nn.Module]  # builds a fresh module from the yaml's parameters
    derivative: Callable[..., torch.Tensor] | None = None  # closed form f'(x); None: autograd
    gain: str = "linear"  # its family for nn.init.calculate_gain (Kaiming / Xavier)
    # f'(x) from the output y, where the function saturates (sigmoid, tanh): instruments count
    # the outputs whose derivative is below a threshold
    saturation: Callable[[torch.Tensor], torch.Tensor] | None = None
    dies: bool = False  # zero for every negative input: instruments count dead units


def _sigmoid_grad(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _gelu_grad(x: torch.Tensor) -> torch.Tensor:
    normal = torch.distributions.Normal(0.0, 1.0)
    return normal.cdf(x) + x * torch.exp(normal.log_prob(x))


def _step(x: torch.Tensor, below: float | torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, torch.ones_like(x), below).to(x.dtype)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(nn.Sigmoid, _sigmoid_grad, "sigmoid", saturation=lambda y: y * (1 - y)),
    "tanh": Activation(nn.Tanh, lambda x: 1 - torch.tanh(x) ** 2, "tanh",
                       saturation=lambda y: 1 - y * y),
    "relu": Activation(nn.ReLU, lambda x: _step(x, 0.0), "relu", dies=True),
    "leaky_relu": Activation(
        nn.LeakyReLU, lambda x, negative_slope=0.01: _step(x, negative_slope), "leaky_relu"),
    "elu": Activation(nn.ELU, lambda x, alpha=1.0: _step(x, alpha * torch.exp(x)), "relu"),
    "gelu": Activation(nn.GELU, _gelu_grad, "relu"),
    "silu": Activation(nn.SiLU, lambda x: _sigmoid_grad(x) * x + torch.sigmoid(x), "relu"),
    "identity": Activation(nn.Identity, torch.ones_like, "linear"),
    "softmax": Activation(lambda dim=-1: nn.Softmax(dim=dim), None, "linear"),
}

SPEC_ATTR = "nnlab_activation"  # set on every module activation_factory builds


def describe(name: str, target: str | None = None) -> Activation:
    """The description of a built-in activation, or of a user's class named by `_target_`."""
    if target:
        from hydra.utils import get_class

        return Activation(get_class(target))
    if name not in ACTIVATIONS:
        raise KeyError(name)
    return ACTIVATIONS[name]


def activation_factory(name: str, _target_: str | None = None,
                       **params: Any) -> Callable[[], nn.Module]:
    """A zero-argument callable that builds a fresh activation module each call; it carries
    `name`, `params` and `spec` (its Activation) for the init and the instruments."""
    spec = describe(name, _target_)

    def make() -> nn.Module:
        module = spec.module(**params)
        setattr(module, SPEC_ATTR, spec)
        return module

    make.name = name  # type: ignore[attr-defined]
    make.params = dict(params)  # type: ignore[attr-defined]
    make.spec = spec  # type: ignore[attr-defined]
    return make


def spec_of(module: nn.Module) -> Activation | None:
    """The description of an activation module (None for any other module)."""
    found = getattr(module, SPEC_ATTR, None)
    if found is not None:
        return found
    return next((s for s in ACTIVATIONS.values() if type(module) is s.module), None)


def derivative(name: str, x: torch.Tensor, _target_: str | None = None,
               **params: Any) -> torch.Tensor:
    """f'(x): the closed form where nnlab has one, else autograd through the module."""
    spec = describe(name, _target_)
    if spec.derivative is not None:
        return spec.derivative(x, **params)
    x = x.detach().clone().requires_grad_(True)
    y = spec.module(**params)(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    return grad
