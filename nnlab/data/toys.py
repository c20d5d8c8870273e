"""2-D toy data sets for MLPs and the non-linearity lessons.

All are flat feature vectors (is_image = False), generated with a fixed random_state (the data
never changes with the run's seed; the val split does), and standardised per feature with the
train split's mean/std by TensorDataModule.
"""

from __future__ import annotations

import math

import torch

from nnlab.data.base import Split, TensorDataModule, holdout


class ToyDataModule(TensorDataModule):
    """Base for toys: `make()` returns (x float (N, F), y long (N,))."""

    is_image = False
    classes: int | None = 2

    @property
    def bytes_per_sample(self) -> int:  # float64 features from numpy, and the tensor copies
        return 64 * (int(getattr(self, "n_features", 2)) + 1)

    def __init__(self, n_samples: int = 1000, noise: float = 0.2, test_fraction: float = 0.2,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.n_samples, self.noise, self.test_fraction = n_samples, noise, test_fraction

    def make(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def load(self) -> tuple[Split, Split]:
        x, y = self.make()
        return holdout(x.float(), y.long(), self.test_fraction)


class MoonsDataModule(ToyDataModule):
    """scikit-learn's two interleaving half-moons: 2 features, 2 classes."""

    name = "moons"

    def make(self) -> tuple[torch.Tensor, torch.Tensor]:
        from sklearn.datasets import make_moons

        x, y = make_moons(n_samples=self.n_samples, noise=self.noise, random_state=0)
        return torch.tensor(x), torch.tensor(y)


class CirclesDataModule(ToyDataModule):
    """scikit-learn's two concentric circles (inner radius `factor`): 2 features, 2 classes."""

    name = "circles"

    def __init__(self, factor: float = 0.5, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.factor = factor

    def make(self) -> tuple[torch.Tensor, torch.Tensor]:
        from sklearn.datasets import make_circles

        x, y = make_circles(n_samples=self.n_samples, noise=self.noise, factor=self.factor,
                            random_state=0)
        return torch.tensor(x), torch.tensor(y)


class SpiralsDataModule(ToyDataModule):
    """`classes` interleaved Archimedean spiral arms of `turns` turns: 2 features."""

    name = "spirals"

    def __init__(self, classes: int = 2, turns: float = 1.5, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.classes, self.turns = classes, turns

    def make(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        y = torch.arange(self.n_samples) % self.classes
        t = torch.rand(self.n_samples, generator=g)  # position along the arm, 0 = centre
        angle = 2 * math.pi * (self.turns * t + y / self.classes)
        x = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], dim=1)
        return x + self.noise * torch.randn(x.shape, generator=g), y


class XorDataModule(ToyDataModule):
    """Points in [-1, 1]^n_features labelled by the parity of their negative coordinates:
    n_features=2 is XOR (2 classes, not linearly separable), 3 the 3-bit parity. Points within
    `margin` of an axis are dropped so the classes do not touch; `noise` jitters the rest."""

    name = "xor"

    def __init__(self, n_features: int = 2, margin: float = 0.1, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.n_features, self.margin = n_features, margin

    def make(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        sign = torch.randint(0, 2, (self.n_samples, self.n_features), generator=g) * 2 - 1
        magnitude = self.margin + (1 - self.margin) * torch.rand(sign.shape, generator=g)
        x = sign * magnitude + self.noise * torch.randn(sign.shape, generator=g)
        y = (sign < 0).sum(dim=1) % 2
        return x, y
