"""LeNet-5 (LeCun et al., 1998) with a choice of activation and pooling."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


class LeNet5(nn.Module):
    """conv 6@5x5 pad 2 -> pool -> conv 16@5x5 -> pool -> fc 120 -> fc 84 -> head."""

    needs_image = True

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        activation: Callable[[], nn.Module],
        pool: str = "max",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        pool_layer = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pool]
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, kernel_size=5, padding=2), activation(), pool_layer(2),
            nn.Conv2d(6, 16, kernel_size=5), activation(), pool_layer(2),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, channels, height, width)).shape[1]
        drop = [nn.Dropout(dropout)] if dropout > 0 else []
        self.classifier = nn.Sequential(
            nn.Linear(flat, 120), activation(), *drop,
            nn.Linear(120, 84), activation(), *drop,
            nn.Linear(84, num_outputs),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
