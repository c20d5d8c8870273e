"""scikit-learn's bundled 8x8 handwritten digits: the offline default, upsampled to 28x28."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nnlab.data.base import Split, TensorDataModule, holdout
from nnlab.memory import refuse_if_too_big


class DigitsDataModule(TensorDataModule):
    """1,797 real 8x8 digits (UCI), resized to `size` so the MNIST CNNs run unchanged."""

    name = "digits"
    classes: int | None = 10

    def __init__(self, size: int = 28, test_fraction: float = 0.2, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.size = size
        self.test_fraction = test_fraction

    def load(self) -> tuple[Split, Split]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        if self.size != 8:
            refuse_if_too_big(f"dataset.size={self.size}", 2 * x.numel() * self.size**2 // 64 * 4,
                              "cpu", "a size whose 1,797 images fit, e.g. dataset.size=28")
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        y = torch.tensor(digits.target, dtype=torch.long)
        return holdout(x, y, self.test_fraction)
