"""Activation functions by name: a factory of fresh nn.Modules, plus closed-form derivatives.

Add one: a line in ACTIVATIONS (and in DERIVATIVES) and a yaml in conf/activation/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
    "softmax": lambda dim=-1: nn.Softmax(dim=dim),
}

# The gain family each activation belongs to, for Kaiming/Xavier initialisation.
KAIMING_NONLINEARITY: dict[str, str] = {
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
    "leaky_relu": "leaky_relu",
    "elu": "relu",
    "gelu": "relu",
    "silu": "relu",
    "identity": "linear",
    "softmax": "linear",
}


def _sigmoid_grad(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _gelu_grad(x: torch.Tensor) -> torch.Tensor:
    normal = torch.distributions.Normal(0.0, 1.0)
    return normal.cdf(x) + x * torch.exp(normal.log_prob(x))


# Closed-form derivatives f'(x), as the courses write them (elementwise activations only).
DERIVATIVES: dict[str, Callable[..., torch.Tensor]] = {
    "sigmoid": _sigmoid_grad,
    "tanh": lambda x: 1 - torch.tanh(x) ** 2,
    "relu": lambda x: (x > 0).to(x.dtype),
    "leaky_relu": lambda x, negative_slope=0.01: torch.where(x > 0, 1.0, negative_slope).to(
        x.dtype
    ),
    "elu": lambda x, alpha=1.0: torch.where(x > 0, 1.0, alpha * torch.exp(x)).to(x.dtype),
    "gelu": _gelu_grad,
    "silu": lambda x: _sigmoid_grad(x) * x + torch.sigmoid(x),
    "identity": torch.ones_like,
}


def activation_factory(name: str, **params: Any) -> Callable[[], nn.Module]:
    """Return a zero-argument callable that builds a fresh activation module each call."""
    if name not in ACTIVATIONS:
        raise KeyError(name)
    build = ACTIVATIONS[name]

    def make() -> nn.Module:
        return build(**params)

    make.activation_name = name  # type: ignore[attr-defined]
    make.params = dict(params)  # type: ignore[attr-defined]
    return make
