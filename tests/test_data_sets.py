"""Data sets: the real loaders (CIFAR-10 through torchvision's own class, on a file the test
writes in CIFAR-10's on-disk format), toys, regression, adaptation, augmentation, and the
in-memory batching path against the DataLoader path."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from nnlab.config import ConfigError, validate
from nnlab.data import DataError
from nnlab.data.base import TensorBatches, augment_images
from nnlab.data.digits import DigitsDataModule
from nnlab.data.regression import DiabetesDataModule, SineDataModule
from nnlab.data.toys import CirclesDataModule, MoonsDataModule, SpiralsDataModule, XorDataModule
from nnlab.data.vision import CIFAR10DataModule, MNISTDataModule
from nnlab.engine.build import build_datamodule

CIFAR_PER_BATCH = 3  # images per data_batch_i (5 of them) and in test_batch
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar10(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """A tiny CIFAR-10 in its own format: cifar-10-batches-py/{data_batch_1..5, test_batch,
    batches.meta}, pickled dicts of uint8 rows (N, 3072: R, G, B planes of 32x32) and labels.

    torchvision md5-checks every file against CIFAR10.train_list/test_list/meta, which name the
    real files' md5s; the test points those at the md5s of the files it wrote, so the check runs
    for real (a changed byte still fails) and so does the loading code.
    """
    import torchvision

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    written = {}
    for i, name in enumerate(names):
        data = rng.integers(0, 256, (CIFAR_PER_BATCH, 3072), dtype=np.uint8)
        labels = [(i * CIFAR_PER_BATCH + k) % 10 for k in range(CIFAR_PER_BATCH)]
        entry = {"batch_label": f"batch {i}", "labels": labels, "data": data,
                 "filenames": [f"img_{i}_{k}.png" for k in range(CIFAR_PER_BATCH)]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        written[name] = data
    meta = folder / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": CIFAR_CLASSES, "num_cases_per_batch": 3,
                                   "num_vis": 3072}, protocol=2))
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[n, _md5(folder / n)] for n in names[:5]])
    monkeypatch.setattr(cls, "test_list", [["test_batch", _md5(folder / "test_batch")]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(meta)})
    return written


def test_cifar10_fixture_loads_through_torchvisions_class(tmp_path, monkeypatch) -> None:
    written = write_cifar10(tmp_path, monkeypatch)
    data = CIFAR10DataModule(root=str(tmp_path), download=False, normalize=False, val_fraction=0.2,
                             batch_size=4)
    assert data.info.input_shape == (3, 32, 32) and data.num_classes == 10
    n_train = 5 * CIFAR_PER_BATCH
    assert len(data.splits["train"].x) + len(data.splits["val"].x) == n_train
    test = data.splits["test"]
    expected = torch.from_numpy(written["test_batch"]).view(-1, 3, 32, 32).float() / 255
    assert torch.allclose(test.x, expected)  # R, G, B planes -> channels, in file order
    assert test.y.tolist() == [5, 6, 7]  # (5 * 3 + k) % 10, as written


def test_cifar10_normalises_per_channel_and_rejects_a_changed_file(tmp_path, monkeypatch) -> None:
    write_cifar10(tmp_path, monkeypatch)
    data = CIFAR10DataModule(root=str(tmp_path), download=False)
    data.prepare()
    train = data.splits["train"].x
    assert data.mean.shape == (3,)
    assert torch.allclose(train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(train.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-1] + b"\x00")
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        CIFAR10DataModule(root=str(tmp_path), download=False).prepare()


TOYS = [(MoonsDataModule, {}, 2), (CirclesDataModule, {}, 2), (SpiralsDataModule, {}, 2),
        (SpiralsDataModule, {"classes": 3}, 2), (XorDataModule, {}, 2),
        (XorDataModule, {"n_features": 3}, 3)]


@pytest.mark.parametrize(("cls", "options", "features"), TOYS)
def test_toys_are_fixed_standardised_and_split_by_seed(cls, options, features) -> None:
    a, b, other = (cls(seed=seed, **options) for seed in (0, 0, 1))
    for data in (a, b, other):
        data.prepare()
    classes = options.get("classes", 2)
    assert a.info.input_shape == (features,) and a.num_classes == classes
    assert not cls.is_image and cls.task == "classification"
    train = a.splits["train"]
    assert torch.allclose(train.x.mean(0), torch.zeros(features), atol=1e-5)
    assert torch.allclose(train.x.std(0), torch.ones(features), atol=1e-4)
    assert torch.bincount(train.y).min() > 0.3 * len(train.y) / classes  # every class present
    assert torch.equal(a.splits["val"].x, b.splits["val"].x)  # same seed, same split
    assert not torch.equal(a.splits["val"].x, other.splits["val"].x)  # the seed draws the split
    def raw_test(data):  # the test points before standardising with the (seeded) train split
        return data.splits["test"].x * data.std + data.mean

    assert torch.allclose(raw_test(a), raw_test(other), atol=1e-5)  # the test set never moves


def test_xor_labels_are_the_parity_of_the_signs() -> None:
    data = XorDataModule(n_features=3, normalize=False, noise=0.0)
    data.prepare()
    for split in data.splits.values():
        assert torch.equal((split.x < 0).sum(1) % 2, split.y)


def test_regression_sets_are_regression_tasks_with_float_targets() -> None:
    diabetes, sine = DiabetesDataModule(), SineDataModule()
    assert diabetes.info.input_shape == (10,) and diabetes.info.num_outputs == 1
    assert sine.info.input_shape == (1,) and sine.info.task == "regression"
    pool = torch.cat([diabetes.splits[s].y for s in ("train", "val", "test")])
    assert len(pool) == 442 and pool.dtype == torch.float32
    assert abs(pool.mean()) < 1e-5 and abs(pool.std() - 1) < 1e-4  # standardised target
    assert sine.splits["train"].x.abs().max() <= torch.pi  # sine keeps x in radians


@pytest.mark.parametrize("dataset", ["sine", "diabetes"])
def test_regression_sets_accept_only_regression_losses(compose_cfg, dataset: str) -> None:
    validate(compose_cfg([f"dataset={dataset}", "model=mlp", "loss=mse"]))
    with pytest.raises(ConfigError, match=f"dataset={dataset} is a regression task.*'mse'"):
        validate(compose_cfg([f"dataset={dataset}", "model=mlp", "loss=cross_entropy"]))


def test_regression_run_logs_r2_to_mlflow(all_runs, run_cli, tmp_path: Path) -> None:
    """A real CLI run of the sine fit: R^2 for val and test lands in the store."""
    out = run_cli(tmp_path, "dataset=sine", "model=mlp", "loss=mse", "trainer.max_epochs=2")
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = all_runs(tmp_path)
    metrics = run.data.metrics
    assert {"val/r2", "test/r2", "test/mse", "test/mae"} <= set(metrics)
    assert "val/acc" not in metrics
    assert metrics["test/r2"] > 0.9, metrics  # two epochs already fit most of the sine


def test_one_channel_images_adapt_to_a_three_channel_32px_model(compose_cfg) -> None:
    cfg = compose_cfg(["dataset=digits", "dataset.channels=3", "dataset.resize=32"])
    data = build_datamodule(cfg)
    assert data.info.input_shape == (3, 32, 32)
    x = data.splits["train"].x
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey repeated
    with pytest.raises(DataError, match="only 1-channel images can be repeated"):
        DigitsDataModule(channels=1)._adapt(torch.zeros(2, 3, 8, 8))  # colour -> grey: refused


def _epochs(loader, n: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    return [list(loader) for _ in range(n)]


def test_in_memory_and_dataloader_paths_give_identical_batches() -> None:
    paths = {}
    for in_memory in (True, False):
        data = DigitsDataModule(batch_size=50, seed=7, in_memory=in_memory)
        data.setup("fit")
        loaders = (data.train_dataloader(), data.val_dataloader())
        paths[in_memory] = [_epochs(loaders[0], 3), _epochs(loaders[1], 1)]
    kinds = {}
    for in_memory in (True, False):
        data = DigitsDataModule(in_memory=in_memory)
        data.setup("fit")
        kinds[in_memory] = type(data.train_dataloader()).__name__
    assert kinds == {True: "TensorBatches", False: "DataLoader"}, "two different paths compared"
    fast, slow = paths[True], paths[False]
    for fast_epochs, slow_epochs in zip(fast, slow, strict=True):
        for fast_batches, slow_batches in zip(fast_epochs, slow_epochs, strict=True):
            assert len(fast_batches) == len(slow_batches) > 1
            for (xa, ya), (xb, yb) in zip(fast_batches, slow_batches, strict=True):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)
    first, second = fast[0][0][0][1], fast[0][1][0][1]
    assert not torch.equal(first, second)  # each epoch reshuffles


def test_in_memory_auto_is_on_for_cpu_tensors_unless_workers_are_asked_for() -> None:
    data = DigitsDataModule()
    data.setup("fit")
    assert isinstance(data.train_dataloader(), TensorBatches)
    data.num_workers = 2
    assert not data.use_in_memory()
    data.in_memory = True
    assert data.use_in_memory()


def test_augmentation_crops_and_flips_each_sample_batch_wise() -> None:
    x = torch.arange(64 * 3 * 8 * 8, dtype=torch.float32).view(64, 3, 8, 8)
    torch.manual_seed(0)
    flipped = augment_images(x, crop_padding=0, hflip=True)
    same = [torch.equal(a, b) for a, b in zip(flipped, x, strict=True)]
    mirrored = [torch.equal(a, b.flip(-1)) for a, b in zip(flipped, x, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 10 < sum(mirrored) < 54  # about half
    torch.manual_seed(0)
    cropped = augment_images(x, crop_padding=2, hflip=False)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = set()
    for out, src in zip(cropped, padded, strict=True):
        windows = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(out, src[:, dy:dy + 8, dx:dx + 8])]
        assert windows, "every crop is a window of the zero-padded image"
        shifts.add(windows[0])
    assert len(shifts) > 10  # offsets drawn per sample
    torch.manual_seed(0)
    assert torch.equal(augment_images(x, 2, False), cropped)  # the seed fixes them


def test_augmentation_applies_to_training_batches_only() -> None:
    class Training:
        training = True

    data = DigitsDataModule(crop_padding=4, hflip=True)
    batch = (torch.randn(16, 1, 28, 28), torch.zeros(16, dtype=torch.long))
    assert data.on_after_batch_transfer(batch, 0) is batch  # no trainer: untouched
    data.trainer = Training()
    x, y = data.on_after_batch_transfer(batch, 0)
    assert x.shape == batch[0].shape and not torch.equal(x, batch[0]) and y is batch[1]
    Training.training = False
    assert data.on_after_batch_transfer(batch, 0) is batch


def test_mnist_loads_from_a_root_that_holds_only_the_gz_files(shared_data, tmp_path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in (shared_data / "MNIST" / "raw").glob("*.gz"):
        os.symlink(gz, raw / gz.name)
    from_gz = MNISTDataModule(root=str(tmp_path), download=False)
    from_raw = MNISTDataModule(root=str(shared_data), download=False)
    from_raw.prepare()
    assert from_gz.info.input_shape == (1, 28, 28) and from_gz.num_classes == 10
    assert len(from_gz.splits["test"].x) == 10_000
    assert torch.equal(from_gz.splits["test"].x, from_raw.splits["test"].x)
    assert abs(float(from_raw.mean) - 0.1307) < 2e-3  # the known MNIST statistics
