"""The courses' smallest network: 2 inputs -> 2 hidden units -> 1 output, sigmoid everywhere."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from nnlab.activations import activation_factory


class Tiny(nn.Module):
    """Linear(in, hidden_units) -> activation -> Linear(hidden_units, out) -> output activation.

    With activation=sigmoid and the default `output: sigmoid` this is the 2-2-1 network the
    courses train by hand (h1, h2 = sigmoid(w.x + b); o1 = sigmoid(w5 h1 + w6 h2 + b3)).
    """

    needs_image = False

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        activation: Callable[[], nn.Module],
        hidden_units: int = 2,
        output: str | None = "sigmoid",
    ) -> None:
        super().__init__()
        self.hidden = nn.Linear(math.prod(input_shape), hidden_units)
        self.act = activation()
        self.out = nn.Linear(hidden_units, num_outputs)
        self.out_act = activation_factory(output)() if output else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.out(self.act(self.hidden(x.flatten(1)))))
