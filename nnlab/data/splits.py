"""A data set's splits and `prepare`'s steps: label checks, channels/size, val split, mean/std."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from nnlab.errors import DataError
from nnlab.memory import refuse_if_too_big


@dataclass
class Split:
    """One split's inputs and labels."""

    x: torch.Tensor
    y: torch.Tensor


def data_source(data: Any) -> str:
    """How an error names a data set: its config key, and its root folder when it has one."""
    root = getattr(data, "root", None)
    return f"dataset={data.name}" + (f" (root '{root}')" if root is not None else "")


def check_labels(pool: Split, test: Split, task: str, classes: int | None, source: str) -> None:
    """One label per input, and class labels within the classes the data set declares."""
    for split, data in (("train", pool), ("test", test)):
        if len(data.x) != len(data.y):
            raise DataError(f"{source}: its {split} split has {len(data.x)} inputs "
                            f"but {len(data.y)} labels; the files do not belong together "
                            "(truncated or mixed up). Restore the data set's files.")
    if task != "classification" or not len(pool.y):
        return
    labels = torch.cat([pool.y, test.y])
    bad = labels[(labels < 0) | (labels >= classes)] if classes else labels[labels < 0]
    if len(bad):
        valid = f"0..{classes - 1}" if classes else "integers >= 0"
        raise DataError(f"{source}: {len(bad)} labels are outside its classes "
                        f"{valid} (e.g. {int(bad[0])}); the label files are corrupt. "
                        "Restore the data set's files.")


def adapt_images(x: torch.Tensor, channels: int | None, resize: int | None) -> torch.Tensor:
    """Resize images and repeat grey channels when the config asks for it (vectors pass)."""
    if x.dim() != 4:
        return x
    if resize and resize != x.shape[-1]:
        wanted = max(x.shape[1], channels or 0)
        refuse_if_too_big(f"dataset.resize={resize}",
                          2 * len(x) * wanted * resize**2 * x.element_size(), "cpu",
                          f"a size whose {len(x)} images fit, e.g. dataset.resize=32")
        x = F.interpolate(x, size=(resize, resize), mode="bilinear", align_corners=False)
    if channels and channels != x.shape[1]:
        if x.shape[1] != 1:
            raise DataError(
                f"dataset.channels={channels} cannot be made from {x.shape[1]}-channel "
                "images; only 1-channel images can be repeated to more channels."
            )
        x = x.repeat(1, channels, 1, 1)
    return x


def seeded_split(pool: Split, val_fraction: float, seed: int,
                 train_size: int | None) -> tuple[Split, Split]:
    """(train, val): a val fraction of the pool drawn by the run's seed; train keeps the first
    `train_size` of the rest (all of it when None)."""
    n_val = max(1, round(len(pool.x) * val_fraction))
    order = torch.randperm(len(pool.x), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val], order[n_val:][:train_size]
    return Split(pool.x[train_idx], pool.y[train_idx]), Split(pool.x[val_idx], pool.y[val_idx])


def standardise(train: Split, *others: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise every split's inputs, in place, with the train split's mean/std (per channel
    for images, per feature for vectors); (mean, std) flattened."""
    dims = [0, 2, 3] if train.x.dim() == 4 else [0]
    mean = train.x.mean(dim=dims, keepdim=True)
    std = train.x.std(dim=dims, keepdim=True).clamp_min(1e-6)
    for split in (train, *others):
        split.x = (split.x - mean) / std
    return mean.flatten(), std.flatten()
