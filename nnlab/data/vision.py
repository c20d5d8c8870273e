"""torchvision's image data sets (MNIST, Fashion-MNIST, CIFAR-10), read once into memory as
tensors scaled to [0, 1] (then standardised per channel by TensorDataModule)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import torch

from nnlab.data.base import Split, TensorDataModule
from nnlab.errors import DataError

IDX_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def default_root() -> str:
    """$NNLAB_DATA, else ./data."""
    return os.environ.get("NNLAB_DATA", "data")


def idx_root(root: Path, dataset_class: str) -> Path:
    """A root whose <class>/raw holds the uncompressed IDX files torchvision reads.

    `root` itself when they are there; when only the `.gz` files are, they are decompressed
    once into a cache folder under the system temp dir (so a read-only root works offline).
    """
    raw = root / dataset_class / "raw"
    if all((raw / name).exists() for name in IDX_FILES):
        return root
    if not all((raw / f"{name}.gz").exists() for name in IDX_FILES):
        return root  # torchvision's own error (or download) takes over
    key = hashlib.sha1(str(raw.resolve()).encode()).hexdigest()[:12]
    cache = Path(tempfile.gettempdir()) / "nnlab-idx" / key
    target = cache / dataset_class / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        if not (target / name).exists():
            partial = target / f"{name}.part"
            try:
                with gzip.open(raw / f"{name}.gz", "rb") as src, open(partial, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError, zlib.error) as err:  # truncated, or not gzip at all
                partial.unlink(missing_ok=True)
                for folder in (target, target.parent, cache, cache.parent):  # when empty
                    with contextlib.suppress(OSError):
                        folder.rmdir()
                raise DataError(
                    f"dataset: {raw / f'{name}.gz'} is truncated or not a gzip file "
                    f"({type(err).__name__}: {err}). Restore it from the original download, or "
                    "delete it and set dataset.download=true to fetch it again.") from None
            partial.replace(target / name)
    return cache


class TorchvisionDataModule(TensorDataModule):
    """Loads a torchvision data set by class name and keeps its uint8 tensors, scaled to [0, 1]."""

    dataset_class = "MNIST"
    classes: int | None = 10
    idx_format = True  # MNIST-family IDX files (gzip accepted); False for other layouts

    def __init__(self, root: str | None = None, download: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.root = Path(root or default_root()).expanduser()
        self.download = download

    def missing_message(self, reason: str) -> str:
        raw = self.root / self.dataset_class / "raw"
        return (
            f"dataset={self.name}: cannot load {self.dataset_class} from root '{self.root}' "
            f"({reason}). nnlab expects the four IDX files {', '.join(IDX_FILES)} in '{raw}' "
            "(torchvision's layout; their .gz files alone also work, offline and read-only). "
            "Point dataset.root (or $NNLAB_DATA) at a folder that has them, or choose the "
            "offline dataset=digits."
        )

    def load(self) -> tuple[Split, Split]:
        import torchvision

        cls = getattr(torchvision.datasets, self.dataset_class)
        root = idx_root(self.root, self.dataset_class) if self.idx_format else self.root
        try:
            train = cls(str(root), train=True, download=self.download)
            test = cls(str(root), train=False, download=self.download)
        except RuntimeError as err:
            raise DataError(self.missing_message(str(err).strip().rstrip("."))) from err
        except (AssertionError, ValueError, EOFError) as err:  # torchvision's IDX checks
            raise DataError(self.missing_message(
                f"a file there is corrupt or truncated: {type(err).__name__} {err}".strip()
            )) from err
        except Exception as err:  # network errors, permissions
            raise DataError(self.missing_message(f"{type(err).__name__}: {err}")) from err

        return self.to_split(train), self.to_split(test)

    @staticmethod
    def to_split(ds: torch.utils.data.Dataset) -> Split:
        """(N, H, W) uint8 grey images -> (N, 1, H, W) floats in [0, 1]."""
        x = torch.as_tensor(ds.data).unsqueeze(1).float().div_(255.0)
        return Split(x, torch.as_tensor(ds.targets, dtype=torch.long))


class MNISTDataModule(TorchvisionDataModule):
    """Handwritten digits: 1x28x28, 10 classes, 60,000 train (val split from it) + 10,000 test."""

    name = "mnist"
    dataset_class = "MNIST"


class FashionMNISTDataModule(TorchvisionDataModule):
    """Zalando clothing: 1x28x28, 10 classes, 60,000 train (val split from it) + 10,000 test."""

    name = "fashion_mnist"
    dataset_class = "FashionMNIST"


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10: 3x32x32 colour images, 10 classes, 50,000 train (val split from it) + 10,000
    test, read by torchvision's CIFAR10 from `<root>/cifar-10-batches-py` (md5-checked)."""

    name = "cifar10"
    dataset_class = "CIFAR10"
    idx_format = False

    def missing_message(self, reason: str) -> str:
        folder = self.root / "cifar-10-batches-py"
        return (
            f"dataset={self.name}: cannot load CIFAR10 from root '{self.root}' ({reason}). "
            f"nnlab expects torchvision's layout: data_batch_1..5, test_batch and batches.meta in "
            f"'{folder}' (or cifar-10-python.tar.gz in '{self.root}' with download=true). "
            "Point dataset.root (or $NNLAB_DATA) at a folder that has them."
        )

    @staticmethod
    def to_split(ds: torch.utils.data.Dataset) -> Split:
        """(N, 32, 32, 3) uint8 -> (N, 3, 32, 32) floats in [0, 1]."""
        x = torch.as_tensor(ds.data).permute(0, 3, 1, 2).float().div_(255.0)
        return Split(x.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long))
