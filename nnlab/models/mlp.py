"""Fully connected networks (multi-layer perceptrons), with optional per-layer overrides."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from nnlab.activations import activation_factory
from nnlab.inits import init_layer

# A hidden layer: its size, or {size, activation?, init?} where activation/init are a name or a
# mapping {name, **params} (e.g. {name: leaky_relu, negative_slope: 0.2}).
LayerSpec = int | Mapping[str, Any]


def _named(spec: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """'tanh' or {name: tanh, ...} -> ('tanh', {...})."""
    if isinstance(spec, str):
        return spec, {}
    params = dict(spec)
    return params.pop("name"), params


class MLP(nn.Module):
    """Flatten -> [Linear -> activation -> Dropout] per hidden layer -> Linear head [-> output].

    `hidden` gives the sizes, each layer using the `activation` group's function and the `init`
    group's scheme. `layers` (it replaces `hidden`) may override both per layer:
    `[{size: 4, activation: tanh, init: xavier_normal}, 8, ...]`. A layer with its own `init` is
    initialised here, with the gain of its own activation, and marked so the global init skips
    it. `output` is an activation applied after the head (null: raw scores, which every loss in
    conf/loss expects). `width` multiplies every hidden size.
    """

    needs_image = False

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        activation: Callable[[], nn.Module],
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.0,
        layers: Sequence[LayerSpec] | None = None,
        output: str | Mapping[str, Any] | None = None,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        specs = [s if isinstance(s, Mapping) else {"size": s} for s in (layers or hidden)]
        modules: list[nn.Module] = [nn.Flatten()]
        features = math.prod(input_shape)
        for spec in specs:
            unknown = set(spec) - {"size", "activation", "init"}
            if unknown:
                raise ValueError(f"model.layers: unknown key(s) {sorted(unknown)} in {dict(spec)}; "
                                 "a layer takes size, activation and init")
            size = max(1, round(spec["size"] * width))
            linear = nn.Linear(features, size)
            act = activation
            if spec.get("activation") is not None:
                act_name, act_params = _named(spec["activation"])
                act = activation_factory(act_name, **act_params)
            if spec.get("init") is not None:
                init_name, init_params = _named(spec["init"])
                init_layer(linear, init_name, activation=act, **init_params)
            modules += [linear, act()]
            if dropout > 0:
                modules.append(nn.Dropout(dropout))
            features = size
        modules.append(nn.Linear(features, num_outputs))
        if output is not None:
            out_name, out_params = _named(output)
            modules.append(activation_factory(out_name, **out_params)())
        self.net = nn.Sequential(*modules)

    def forward(self, x):
        return self.net(x)


class DeepMLP(MLP):
    """A deep plain net: `depth` hidden layers of `width` units each (no BatchNorm), so one
    sweep walks the depth: `model=deep_mlp model.depth=5,10,30 model.width=128`."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        activation: Callable[[], nn.Module],
        depth: int = 10,
        width: int = 64,
        dropout: float = 0.0,
        output: str | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(input_shape, num_outputs, activation, hidden=[width] * depth,
                         dropout=dropout, output=output)
