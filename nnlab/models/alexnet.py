"""AlexNet (Krizhevsky et al., 2012): adapted to 28x28 and 32x32 inputs, or as published."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

CONV_CHANNELS = (64, 192, 384, 256, 256)
CLASSIC_CHANNELS = (96, 256, 384, 384, 256)  # the 2012 paper's kernels, one tower
FC_UNITS = 4096


def scaled(units: int, width: float) -> int:
    """`units` times the width multiplier, at least 1."""
    return max(1, round(units * width))


@torch.no_grad()
def flat_size(features: nn.Module, input_shape: Sequence[int], model: str) -> int:
    """Features per sample after `features`, found on the meta device (no real compute, so a
    224px probe costs nothing); a clear error when the image is too small for the layout."""
    probe = copy.deepcopy(features).to("meta")
    try:
        out = probe(torch.zeros(1, *input_shape, device="meta"))
    except RuntimeError as err:
        raise ValueError(
            f"model={model}: input images of shape {tuple(input_shape)} are too small for this "
            f"layout ({str(err).splitlines()[0]}). Resize the data (e.g. dataset.resize=224 for "
            "model.classic=true) or use the default small-input layout (model.classic=false)."
        ) from None
    if out.numel() == 0:
        raise ValueError(f"model={model}: input images of shape {tuple(input_shape)} shrink to "
                         "nothing in this layout; resize them (e.g. dataset.resize=224).")
    return out.numel()


class AlexNet(nn.Module):
    """5 conv + 3 fc.

    Default (small inputs): the 11x11/stride-4 stem becomes a 5x5/stride-1 conv with 64
    kernels (no 224px resize); overlapping 3x3/stride-2 max pools after conv 1, 2 and 5 (28 ->
    14 -> 7 -> 4, 32 -> 16 -> 8 -> 4); dropout before each of the first two fc layers.

    `classic=True`: the 2012 paper as one tower, for 3x224x224 inputs: 96 11x11/4 kernels, 256
    5x5, 384, 384 and 256 3x3; local response normalisation (size 5, alpha 1e-4, beta 0.75,
    k 2) after the activation of conv 1 and 2; overlapping 3x3/2 max pools after conv 1, 2 and
    5 (55 -> 27 -> 13 -> 6); fc 4096-4096 with dropout. 62,378,344 parameters with 1000 classes
    (the paper's two-tower split has ~61M).
    """

    needs_image = True

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        activation: Callable[[], nn.Module],
        width: float = 1.0,
        dropout: float = 0.5,
        classic: bool = False,
    ) -> None:
        super().__init__()
        channels = input_shape[0]
        c1, c2, c3, c4, c5 = (scaled(c, width)
                              for c in (CLASSIC_CHANNELS if classic else CONV_CHANNELS))
        fc = scaled(FC_UNITS, width)

        def pool() -> nn.Module:
            return nn.MaxPool2d(kernel_size=3, stride=2, padding=0 if classic else 1)

        if classic:
            def lrn() -> nn.Module:
                return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)

            layers: list[nn.Module] = [
                nn.Conv2d(channels, c1, kernel_size=11, stride=4, padding=2), activation(),
                lrn(), pool(),
                nn.Conv2d(c1, c2, kernel_size=5, padding=2), activation(), lrn(), pool(),
            ]
        else:
            layers = [
                nn.Conv2d(channels, c1, kernel_size=5, padding=2), activation(), pool(),
                nn.Conv2d(c1, c2, kernel_size=5, padding=2), activation(), pool(),
            ]
        self.features = nn.Sequential(
            *layers,
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), activation(),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1), activation(),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1), activation(), pool(),
            nn.Flatten(),
        )
        flat = flat_size(self.features, input_shape, "alexnet")
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(flat, fc), activation(),
            nn.Dropout(dropout), nn.Linear(fc, fc), activation(),
            nn.Linear(fc, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
