"""The courses' pictures: first-layer kernels at init and trained, feature maps per conv layer,
the decision boundary over training (strip + GIF), all from real runs logged to MLflow; and the
pure figure functions of nnlab.figures."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from nnlab.engine import train_one
from nnlab.figures import kernel_grid, png_bytes

PNG = b"\x89PNG\r\n\x1a\n"


def one_run(compose_cfg, tmp: Path, overrides: list[str]) -> tuple[MlflowClient, str, Path]:
    """Train one tiny run; return (client, run id, its downloaded instruments/ folder)."""
    uri = f"sqlite:///{tmp}/mlflow.db"
    cfg = compose_cfg([*overrides, "accelerator=cpu", "trainer.enable_progress_bar=false",
                       f"mlflow.tracking_uri={uri}", f"mlflow.artifact_root={tmp}/artifacts",
                       "mlflow.experiment_name=pictures"])
    train_one(cfg, output_dir=tmp)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("pictures").experiment_id])
    folder = client.download_artifacts(run.info.run_id, "instruments", str(tmp))
    return client, run.info.run_id, Path(folder)


def image(path: Path) -> Image.Image:
    data = path.read_bytes()
    assert 3_000 < len(data) < 3_000_000, f"{path.name}: {len(data)} bytes"
    return Image.open(io.BytesIO(data))


def test_a_conv_run_logs_its_kernels_and_feature_maps(compose_cfg, tmp_path) -> None:
    _, _, folder = one_run(compose_cfg, tmp_path, ["model=lenet5", "trainer.max_epochs=1",
                                      "trainer.limit_train_batches=3",
                                      "trainer.limit_val_batches=1"])
    for name in ("kernels_init.png", "kernels_trained.png", "feature_maps.png"):
        assert (folder / name).read_bytes().startswith(PNG)
        width, height = image(folder / name).size
        assert width > 150 and height > 80
    assert (folder / "kernels_init.png").read_bytes() != (folder / "kernels_trained.png"
                                                          ).read_bytes()
    width, height = image(folder / "feature_maps.png").size
    assert width > height  # rows of 8 maps: the input, then LeNet-5's two conv layers


def test_feature_maps_follow_every_conv_layer() -> None:
    from torch import nn

    from nnlab.engine.instruments import conv_feature_maps
    from nnlab.models.lenet import LeNet5

    net = LeNet5((1, 28, 28), 10, nn.ReLU).train()
    maps = conv_feature_maps(net, torch.randn(1, 1, 28, 28))
    assert [(name, tuple(m.shape)) for name, m in maps] == [
        ("features.0", (6, 28, 28)), ("features.3", (16, 10, 10))]
    assert net.training  # put back as it was


def test_an_mlp_run_draws_no_conv_pictures(compose_cfg, tmp_path) -> None:
    _, _, folder = one_run(compose_cfg, tmp_path, ["model=mlp", "dataset=digits",
                                                   "trainer.max_epochs=1",
                                                   "trainer.limit_train_batches=2"])
    assert not list(folder.glob("kernels_*")) and not (folder / "feature_maps.png").exists()


def test_the_decision_boundary_is_drawn_over_training(compose_cfg, tmp_path) -> None:
    _, _, folder = one_run(compose_cfg, tmp_path, ["model=mlp", "model.hidden=[16,16]",
                                                   "dataset=moons", "trainer.max_epochs=4",
                                                   "optimizer.lr=0.1"])
    gif = Image.open(folder / "decision_boundary.gif")
    assert gif.format == "GIF" and gif.n_frames == 5  # init + after each of 4 epochs
    strip = image(folder / "decision_boundary_frames.png")
    assert strip.size[0] > 4 * strip.size[1]  # five frames side by side


def test_alexnets_96_colour_kernels_as_one_grid() -> None:
    data = png_bytes(kernel_grid(torch.randn(96, 3, 11, 11), "conv 1"))
    assert data.startswith(PNG) and 20_000 < len(data) < 2_000_000
    width, height = Image.open(io.BytesIO(data)).size
    assert width > height  # 12 x 8 tiles


@pytest.mark.parametrize(("epochs", "frames"), [(1, {1}), (4, {1, 2, 3, 4}),
                                                (40, {6, 11, 17, 23, 29, 34, 40})])
def test_boundary_snapshots_are_spread_over_training(epochs: int, frames: set[int]) -> None:
    from nnlab.engine.instruments import frame_epochs

    assert frame_epochs(epochs) == frames
