"""AlexNet (Krizhevsky et al., 2012) adapted to 28x28 and 32x32 inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

CONV_CHANNELS = (64, 192, 384, 256, 256)
FC_UNITS = 4096


def scaled(units: int, width: float) -> int:
    """`units` times the width multiplier, at least 1."""
    return max(1, round(units * width))


class AlexNet(nn.Module):
    """5 conv + 3 fc. The 11x11/stride-4 stem becomes a 5x5/stride-1 conv (no 224px resize);
    overlapping 3x3/stride-2 max pools after conv 1, 2 and 5 (28 -> 14 -> 7 -> 4, 32 -> 16 ->
    8 -> 4); dropout before each of the first two fc layers."""

    needs_image = True

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        activation: Callable[[], nn.Module],
        width: float = 1.0,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        channels = input_shape[0]
        c1, c2, c3, c4, c5 = (scaled(c, width) for c in CONV_CHANNELS)
        fc = scaled(FC_UNITS, width)

        def pool() -> nn.Module:
            return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.features = nn.Sequential(
            nn.Conv2d(channels, c1, kernel_size=5, padding=2), activation(), pool(),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2), activation(), pool(),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), activation(),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1), activation(),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1), activation(), pool(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *input_shape)).shape[1]
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(flat, fc), activation(),
            nn.Dropout(dropout), nn.Linear(fc, fc), activation(),
            nn.Linear(fc, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
