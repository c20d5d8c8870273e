"""VGG-16 (Simonyan & Zisserman, 2014, configuration D): for 32x32 inputs, or as published."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnlab.models.alexnet import flat_size, scaled

# 13 conv layers (3x3, padding 1) in 5 blocks, each block closed by a 2x2 max pool.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
MIN_SIZE = 32  # five 2x2 pools: 32 -> 1
CLASSIC_FC = 4096


class VGG16(nn.Module):
    """13 conv + 3 fc. Inputs smaller than 32x32 (MNIST's 28x28) are zero-padded to 32x32;
    the fc layers are 512 wide (the CIFAR variant) times `width`.

    `classic=True` is configuration D as published, for 3x224x224 inputs: no padding, fc
    4096-4096 with dropout (7x7x512 = 25,088 features in), 138,357,544 parameters with 1000
    classes, the same as torchvision's vgg16. `batch_norm` still adds BatchNorm (vgg16_bn)."""

    needs_image = True

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        activation: Callable[[], nn.Module],
        width: float = 1.0,
        batch_norm: bool = False,
        dropout: float = 0.5,
        fc_units: int = 512,
        classic: bool = False,
    ) -> None:
        super().__init__()
        channels, height, width_px = input_shape
        self.padding = (0, 0, 0, 0) if classic else _padding(height, width_px)
        if classic:
            fc_units = CLASSIC_FC
        layers: list[nn.Module] = []
        for block in VGG16_BLOCKS:
            for units in block:
                out = scaled(units, width)
                layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out))
                layers.append(activation())
                channels = out
            layers.append(nn.MaxPool2d(2))
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        padded = (input_shape[0], height + sum(self.padding[2:]), width_px + sum(self.padding[:2]))
        flat = flat_size(self.features, padded, "vgg16")
        fc = scaled(fc_units, width)
        self.classifier = nn.Sequential(
            nn.Linear(flat, fc), activation(), nn.Dropout(dropout),
            nn.Linear(fc, fc), activation(), nn.Dropout(dropout),
            nn.Linear(fc, num_outputs),
        )

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.padding) if any(self.padding) else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.pad(x)))


def _padding(height: int, width: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding that brings a smaller image up to 32x32."""
    dh, dw = max(0, MIN_SIZE - height), max(0, MIN_SIZE - width)
    return dw // 2, dw - dw // 2, dh // 2, dh - dh // 2
