"""LeNet-5 (LeCun et al., 1998): the modern variant by default, or the 1998 layout (`classic`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn


class LeNet5(nn.Module):
    """conv 6@5x5 pad 2 -> pool -> conv 16@5x5 -> pool -> fc 120 -> fc 84 -> head.

    `classic=True` is the 1998 layout: average pooling (the paper's subsampling layers, here
    without their trainable coefficients), C5 as a 16->120 5x5 convolution and no dropout. The
    activation stays the `activation` group's choice in every hidden layer: the paper's
    squashing function is a scaled tanh, so pair classic with activation=tanh (or sigmoid).
    With 10 outputs on 1x28x28 both variants have 61,706 parameters. `width` multiplies the
    channel and unit counts (6, 16, 120, 84).
    """

    needs_image = True

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        activation: Callable[[], nn.Module],
        pool: Literal["max", "avg"] = "max",
        dropout: float = 0.0,
        classic: bool = False,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        channels = input_shape[0]
        c1, c2, f1, f2 = (max(1, round(n * width)) for n in (6, 16, 120, 84))
        if classic:
            pool, dropout = "avg", 0.0
        pool_layer = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pool]
        features: list[nn.Module] = [
            nn.Conv2d(channels, c1, kernel_size=5, padding=2), activation(), pool_layer(2),
            nn.Conv2d(c1, c2, kernel_size=5), activation(), pool_layer(2),
        ]
        if classic:  # C5: a convolution over the 5x5 maps, equal to a fc layer at 28/32 px
            size = self._out_size(features, input_shape)
            features += [nn.Conv2d(c2, f1, kernel_size=size[-2:]), activation()]
        features.append(nn.Flatten())
        self.features = nn.Sequential(*features)
        flat = self._out_size(features, input_shape)[0]
        drop = [nn.Dropout(dropout)] if dropout > 0 else []
        head: list[nn.Module] = [] if classic else [nn.Linear(flat, f1), activation(), *drop]
        self.classifier = nn.Sequential(
            *head,
            nn.Linear(f1, f2), activation(), *drop,
            nn.Linear(f2, num_outputs),
        )

    @staticmethod
    @torch.no_grad()
    def _out_size(layers: list[nn.Module], input_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(nn.Sequential(*layers)(torch.zeros(1, *input_shape)).shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
