"""A user's own model: any nn.Module whose constructor takes (input_shape, num_outputs,
activation, **its own params). `activation()` builds a fresh activation module."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch import nn


class TwoLayer(nn.Module):
    """Flatten -> Linear(hidden) -> activation -> Linear(num_outputs)."""

    needs_image = False  # any input shape works (True: nnlab refuses flat data sets)

    def __init__(self, input_shape: Sequence[int], num_outputs: int,
                 activation: Callable[[], nn.Module], hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden),
                                 activation(), nn.Linear(hidden, num_outputs))

    def forward(self, x):
        return self.net(x)
