"""model.classic=true: AlexNet (2012) and VGG-16 (configuration D) as published, at 3x224x224.

Built on the meta device: the parameter counts and layouts are checked without allocating or
running the ~60M / ~138M parameter nets.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnlab.config import ConfigError
from nnlab.engine import train_one
from nnlab.engine.build import build_model

IMAGENET = (3, 224, 224)


def meta_model(compose_cfg, overrides: list[str], shape=IMAGENET, outputs: int = 1000) -> nn.Module:
    with torch.device("meta"):
        return build_model(compose_cfg(overrides), shape, outputs)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_classic_vgg16_is_torchvisions_vgg16(compose_cfg) -> None:
    from torchvision.models import vgg16

    ours = meta_model(compose_cfg, ["model=vgg16", "model.classic=true"])
    with torch.device("meta"):
        reference = vgg16()
    assert count(ours) == count(reference) == 138_357_544
    assert [p.shape for p in ours.parameters()] == [p.shape for p in reference.parameters()]
    assert sum(isinstance(m, nn.Dropout) for m in ours.modules()) == 2


def test_classic_alexnet_is_the_2012_single_tower_layout(compose_cfg) -> None:
    net = meta_model(compose_cfg, ["model=alexnet", "model.classic=true"])
    assert count(net) == 62_378_344  # the README's figure; the paper's two towers: ~61M
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [
        (96, 3, 11, 11), (256, 96, 5, 5), (384, 256, 3, 3), (384, 384, 3, 3), (256, 384, 3, 3)]
    assert convs[0].stride == (4, 4)
    names = [type(m).__name__ for m in net.features]
    assert names[:8] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d",
                         "Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 3 and p.stride == 2 for p in pools)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [m.weight.shape[0] for m in linears] == [4096, 4096, 1000]
    assert linears[0].in_features == 256 * 6 * 6
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 2


def test_the_adaptations_stay_the_default(compose_cfg) -> None:
    assert count(meta_model(compose_cfg, ["model=alexnet"], (1, 28, 28), 10)) == 36_051_658
    assert count(meta_model(compose_cfg, ["model=vgg16"], (3, 32, 32), 10)) == 15_245_130


def test_classic_alexnet_runs_a_real_forward_pass_at_224(compose_cfg) -> None:
    net = build_model(compose_cfg(["model=alexnet", "model.classic=true", "model.width=0.125"]),
                      IMAGENET, 10)
    assert net(torch.randn(2, *IMAGENET)).shape == (2, 10)


@pytest.mark.parametrize("model", ["alexnet", "vgg16"])
def test_classic_on_small_images_is_refused_clearly(compose_cfg, model: str, tmp_path) -> None:
    cfg = compose_cfg([f"model={model}", "model.classic=true", "dataset=digits",
                       f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db"])
    with pytest.raises(ConfigError, match=rf"model={model}: .* too small.*dataset.resize=224"):
        train_one(cfg, output_dir=tmp_path)
    assert not (tmp_path / "mlflow.db").exists()
