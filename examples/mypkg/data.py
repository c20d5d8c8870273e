"""A user's own data set: a plain LightningDataModule. nnlab needs three attributes to build the
model (input_shape, num_outputs, task) and the usual *_dataloader methods; batch_size and seed
come from nnlab's top-level config."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class FlatDigits(pl.LightningDataModule):
    """scikit-learn's 8x8 digits as 64 features in [0, 1], the first `n_train` for training."""

    task = "classification"
    is_image = False  # flat vectors: nnlab refuses CNNs on it

    def __init__(self, n_train: int = 1200, batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        self.x = torch.tensor(x, dtype=torch.float32) / 16.0
        self.y = torch.tensor(y, dtype=torch.long)
        self.n_train, self.batch_size, self.seed = n_train, batch_size, seed
        self.input_shape, self.num_outputs = (64,), 10

    def _loader(self, start: int, end: int, shuffle: bool = False) -> DataLoader:
        data = TensorDataset(self.x[start:end], self.y[start:end])
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, generator=generator)

    def train_dataloader(self) -> DataLoader:
        return self._loader(0, self.n_train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.n_train, self.n_train + 300)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.n_train + 300, len(self.x))
