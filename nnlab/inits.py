"""Weight initialisers by name, applied to every Linear and Conv layer of a model.

Add one: a function `(weight, activation, **params)` in WEIGHT_INITS and a yaml in conf/init/.
`activation` is the model's activation factory (nnlab.activations) or its name; its parameters'
defaults and type hints are the option's schema (nnlab.config checks values against them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from nnlab.activations import describe

INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
OWN_INIT = "nnlab_own_init"  # set on a layer a model initialised itself; apply_init skips it

Mode = Literal["fan_in", "fan_out"]
Distribution = Literal["normal", "uniform"]


def nonlinearity(activation: Any) -> tuple[str, float]:
    """(nn.init's nonlinearity name, leaky slope) for an activation factory or name."""
    spec = getattr(activation, "spec", None) or describe(str(activation))
    params = getattr(activation, "params", {})
    return spec.gain, float(params.get("negative_slope", 0.01))


def kaiming(w: torch.Tensor, activation: Any, distribution: Distribution = "normal",
            mode: Mode = "fan_in") -> None:
    """He et al. 2015: std = gain / sqrt(fan), the gain of the activation in use."""
    family, slope = nonlinearity(activation)
    fill = nn.init.kaiming_normal_ if distribution == "normal" else nn.init.kaiming_uniform_
    fill(w, a=slope, mode=mode, nonlinearity=family)


def xavier(w: torch.Tensor, activation: Any, distribution: Distribution = "uniform",
           gain: float = 1.0) -> None:
    """Glorot & Bengio 2010: variance 2 / (fan_in + fan_out), times gain^2."""
    fill = nn.init.xavier_normal_ if distribution == "normal" else nn.init.xavier_uniform_
    fill(w, gain)


def kaiming_normal(w: torch.Tensor, activation: Any, mode: Mode = "fan_in") -> None:
    kaiming(w, activation, "normal", mode)


def kaiming_uniform(w: torch.Tensor, activation: Any, mode: Mode = "fan_in") -> None:
    kaiming(w, activation, "uniform", mode)


def xavier_normal(w: torch.Tensor, activation: Any, gain: float = 1.0) -> None:
    xavier(w, activation, "normal", gain)


def xavier_uniform(w: torch.Tensor, activation: Any, gain: float = 1.0) -> None:
    xavier(w, activation, "uniform", gain)


def zeros(w: torch.Tensor, activation: Any) -> None:
    nn.init.zeros_(w)


def ones(w: torch.Tensor, activation: Any) -> None:
    nn.init.ones_(w)


def constant(w: torch.Tensor, activation: Any, value: float = 0.1) -> None:
    nn.init.constant_(w, value)


def uniform(w: torch.Tensor, activation: Any, a: float = -0.05, b: float = 0.05) -> None:
    nn.init.uniform_(w, a, b)


def normal(w: torch.Tensor, activation: Any, mean: float = 0.0, std: float = 0.01) -> None:
    nn.init.normal_(w, mean, std)


def standard(w: torch.Tensor, activation: Any) -> None:
    """Glorot & Bengio 2010's "standard" init: U[-1/sqrt(fan_in), 1/sqrt(fan_in)]."""
    fan_in = w[0].numel()
    nn.init.uniform_(w, -fan_in ** -0.5, fan_in ** -0.5)


def eye(w: torch.Tensor, activation: Any) -> None:
    """Identity for Linear weights, Dirac delta for convolutions."""
    if w.dim() == 2:
        nn.init.eye_(w)
    else:
        nn.init.dirac_(w)


def orthogonal(w: torch.Tensor, activation: Any, gain: float = 1.0) -> None:
    nn.init.orthogonal_(w, gain)


WEIGHT_INITS: dict[str, Callable[..., None]] = {
    f.__name__: f for f in (
        zeros, ones, constant, uniform, normal, standard, eye, xavier, xavier_uniform,
        xavier_normal, kaiming, kaiming_uniform, kaiming_normal, orthogonal,
    )
}

BIAS_INITS: dict[str, Callable[[torch.Tensor], Any]] = {
    "zeros": nn.init.zeros_,
    "default": lambda b: None,
    "constant": lambda b: nn.init.constant_(b, 0.1),
}

INIT_NAMES = ["default", *WEIGHT_INITS]


def _init(layer: nn.Module, name: str, activation: Any, bias: str, params: dict) -> None:
    WEIGHT_INITS[name](layer.weight, activation, **params)
    if getattr(layer, "bias", None) is not None:
        BIAS_INITS[bias](layer.bias)


@torch.no_grad()
def apply_init(model: nn.Module, name: str, activation: Any = "relu", bias: str = "zeros",
               **params: Any) -> nn.Module:
    """Initialise every Linear/Conv weight with `name` and every bias with `bias`.

    Layers a model initialised itself (`init_layer`, marked with OWN_INIT) are skipped.
    `default` keeps PyTorch's own initialisation of weights and biases alike.
    """
    if name == "default":
        return model
    for layer in model.modules():
        if isinstance(layer, INIT_LAYERS) and not getattr(layer, OWN_INIT, False):
            _init(layer, name, activation, bias, params)
    return model


@torch.no_grad()
def init_layer(layer: nn.Module, name: str, activation: Any = "relu", bias: str = "zeros",
               **params: Any) -> nn.Module:
    """Initialise one layer (a per-layer override) and mark it so apply_init leaves it alone."""
    if name != "default":
        _init(layer, name, activation, bias, params)
    setattr(layer, OWN_INIT, True)
    return layer
