"""Regression data sets: fit a function, report MSE / MAE / R^2 (only regression losses fit)."""

from __future__ import annotations

import math

import torch

from nnlab.data.base import Split, TensorDataModule, holdout


class SineDataModule(TensorDataModule):
    """y = sin(x) + noise on [-pi, pi]: "a net is a universal function fitter".

    1 feature, 1 target; inputs are not standardised by default (x already spans [-pi, pi]).
    """

    name = "sine"
    task = "regression"
    is_image = False
    bytes_per_sample = 128  # x and y, their noise and the split copies

    def __init__(self, n_samples: int = 2000, noise: float = 0.05, test_fraction: float = 0.2,
                 outliers: float = 0.0, **kwargs: object) -> None:
        kwargs.setdefault("normalize", False)
        super().__init__(**kwargs)
        self.n_samples, self.noise, self.test_fraction = n_samples, noise, test_fraction
        self.outliers = outliers  # fraction of train/val targets replaced by gross errors

    def load(self) -> tuple[Split, Split]:
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(self.n_samples, 1, generator=g) * 2 - 1) * math.pi
        y = torch.sin(x) + self.noise * torch.randn(self.n_samples, 1, generator=g)
        pool, test = holdout(x, y, self.test_fraction)
        if self.outliers > 0:  # the test set stays clean: it scores the fit to sin(x)
            bad = torch.randperm(len(pool.y), generator=g)[: round(len(pool.y) * self.outliers)]
            pool.y[bad] += 5 * torch.randn(len(bad), 1, generator=g)
        return pool, test


class DiabetesDataModule(TensorDataModule):
    """scikit-learn's diabetes progression: 442 patients, 10 features, 1 target.

    Features are standardised by TensorDataModule; the target (a disease progression score,
    25-346) is standardised with the whole set's mean 152.1 and std 77.1 so SGD's steps suit
    it. R^2 is the same in either unit (an affine map of both predictions and targets).
    """

    name = "diabetes"
    task = "regression"
    is_image = False

    def __init__(self, test_fraction: float = 0.2, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    def load(self) -> tuple[Split, Split]:
        from sklearn.datasets import load_diabetes

        x, y = load_diabetes(return_X_y=True)
        x = torch.tensor(x, dtype=torch.float32)
        y = torch.tensor(y, dtype=torch.float32).unsqueeze(1)
        return holdout(x, (y - y.mean()) / y.std(), self.test_fraction)
