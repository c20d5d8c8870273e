"""Fully connected networks (multi-layer perceptrons)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch import nn


class MLP(nn.Module):
    """Flatten -> [Linear -> activation -> Dropout] x len(hidden) -> Linear head."""

    needs_image = False

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        activation: Callable[[], nn.Module],
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), activation()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
