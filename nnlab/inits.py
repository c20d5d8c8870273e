"""Weight initialisers by name, applied to every Linear and Conv layer of a model.

Add one: a function `(weight, activation, **params)` in WEIGHT_INITS and a yaml in conf/init/.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nnlab.activations import KAIMING_NONLINEARITY

INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
OWN_INIT = "nnlab_own_init"  # set on a layer a model initialised itself; apply_init skips it


def _kaiming(fill: Callable[..., Any]) -> Callable[..., Any]:
    def init(
        w: torch.Tensor, activation: str, mode: str = "fan_in",
        negative_slope: float = 0.01, **_: Any,
    ) -> None:
        """He init whose gain follows the model's activation (leaky_relu uses its slope)."""
        nonlinearity = KAIMING_NONLINEARITY.get(activation, "relu")
        fill(w, a=negative_slope, mode=mode, nonlinearity=nonlinearity)

    return init


def _eye(w: torch.Tensor, activation: str, **_: Any) -> None:
    if w.dim() == 2:
        nn.init.eye_(w)
    else:
        nn.init.dirac_(w)


WEIGHT_INITS: dict[str, Callable[..., None]] = {
    "zeros": lambda w, activation, **_: nn.init.zeros_(w),
    "ones": lambda w, activation, **_: nn.init.ones_(w),
    "constant": lambda w, activation, value=0.1, **_: nn.init.constant_(w, value),
    "uniform": lambda w, activation, a=-0.05, b=0.05, **_: nn.init.uniform_(w, a, b),
    "normal": lambda w, activation, mean=0.0, std=0.01, **_: nn.init.normal_(w, mean, std),
    "eye": _eye,
    "xavier_uniform": lambda w, activation, gain=1.0, **_: nn.init.xavier_uniform_(w, gain),
    "xavier_normal": lambda w, activation, gain=1.0, **_: nn.init.xavier_normal_(w, gain),
    "kaiming_uniform": _kaiming(nn.init.kaiming_uniform_),
    "kaiming_normal": _kaiming(nn.init.kaiming_normal_),
    "orthogonal": lambda w, activation, gain=1.0, **_: nn.init.orthogonal_(w, gain),
}

BIAS_INITS: dict[str, Callable[[torch.Tensor], Any]] = {
    "zeros": nn.init.zeros_,
    "default": lambda b: None,
    "constant": lambda b: nn.init.constant_(b, 0.1),
}

INIT_NAMES = ["default", *WEIGHT_INITS]


@torch.no_grad()
def apply_init(
    model: nn.Module, name: str, activation: str = "relu", bias: str = "zeros", **params: Any
) -> nn.Module:
    """Initialise every Linear/Conv weight with `name` and every bias with `bias`.

    Layers a model initialised itself (`init_layer`, marked with OWN_INIT) are skipped.
    `default` keeps PyTorch's own initialisation of weights and biases alike.
    """
    if name == "default":
        return model
    fill_weight = WEIGHT_INITS[name]
    fill_bias = BIAS_INITS[bias]
    for layer in model.modules():
        if isinstance(layer, INIT_LAYERS) and not getattr(layer, OWN_INIT, False):
            fill_weight(layer.weight, activation, **params)
            if layer.bias is not None:
                fill_bias(layer.bias)
    return model


@torch.no_grad()
def init_layer(
    layer: nn.Module, name: str, activation: str = "relu", bias: str = "zeros", **params: Any
) -> nn.Module:
    """Initialise one layer (a per-layer override) and mark it so apply_init leaves it alone."""
    if name != "default":
        WEIGHT_INITS[name](layer.weight, activation, **params)
        if getattr(layer, "bias", None) is not None:
            BIAS_INITS[bias](layer.bias)
    setattr(layer, OWN_INIT, True)
    return layer


def kaiming_std(fan: int, nonlinearity: str, negative_slope: float = 0.01) -> float:
    """The std He et al. prescribe: gain / sqrt(fan)."""
    return nn.init.calculate_gain(nonlinearity, negative_slope) / math.sqrt(fan)
