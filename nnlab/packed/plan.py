"""Which jobs can train together: a config's pack key, why a config or model cannot pack, and
how many members fit the device's memory."""

from __future__ import annotations

import json
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from nnlab.memory import available_bytes, footprint_of
from nnlab.packed.optim import OFF_BY_DEFAULT, OPTIMIZER_KEYS

# Keys whose values may differ inside a pack (dotted paths of the resolved config).
PACKABLE = ("seed", "init", "optimizer.lr", "optimizer.momentum", "optimizer.weight_decay",
            "model.dropout", "mlflow.run_name")


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def unpackable(cfg: DictConfig) -> str | None:
    """Why this config cannot train in a pack (None: it can)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    if tree.get("resume"):
        return "resume= continues one run from its checkpoint"
    if int(_get(tree, "accelerator.devices") or 1) > 1:
        return "accelerator.devices > 1 trains one job over several devices (DDP); a pack uses one"
    if _get(tree, "trainer.gradient_clip_val"):
        return "gradient clipping (trainer.gradient_clip_val) is not vectorised"
    if _get(tree, "scheduler._target_"):
        return f"scheduler={_get(tree, 'scheduler.name')} is not vectorised"
    target = _get(tree, "optimizer._target_")
    if target not in OPTIMIZER_KEYS:
        return (f"optimizer={_get(tree, 'optimizer.name')} has no vectorised version "
                "(sgd, sgd_plain, adam, adamw have)")
    extra = {key for key, value in tree["optimizer"].items()
             if key not in OPTIMIZER_KEYS[target] | {"_target_", "_partial_", "name"}
             and OFF_BY_DEFAULT.get(key, object()) != value}
    if extra:
        return f"optimizer keys {sorted(extra)} are not vectorised"
    if _get(tree, "dataset.crop_padding") or _get(tree, "dataset.hflip"):
        return "training augmentation draws from the global random stream"
    return None


def pack_key(cfg: DictConfig) -> str:
    """Equal for configs that differ only in PACKABLE keys (dropout: only in its rate)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    dropout = _get(tree, "model.dropout") or 0.0
    for dotted in PACKABLE:
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    tree["_dropout_on"] = dropout > 0  # models build Dropout layers only for a rate > 0
    return json.dumps(tree, sort_keys=True, default=str)


def model_unpackable(model: nn.Module, device: torch.device, pack_convs_on_cpu: bool) -> str | None:
    """Why this model cannot (or should not) pack."""
    if any(isinstance(m, _NormBase) for m in model.modules()):
        return "BatchNorm layers keep batch statistics that vmap cannot stack"
    convs = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    if convs and device.type == "cpu" and not pack_convs_on_cpu:
        return ("convolutions are compute-bound on a CPU: a pack is no faster than solo runs "
                "(bench/results.md; hydra.launcher.pack_convs_on_cpu=true packs them anyway)")
    return None


def members_that_fit(built: tuple[list[Any], list[Any], list[torch.Generator]],
                     device: torch.device) -> int:
    """How many members fit half the device's free memory: per member what one solo training
    step takes (nnlab.memory's estimate, the one a solo run is refused by) and its own copy of
    the data splits."""
    datamodules, modules, _ = built
    dm = datamodules[0]
    per_member = footprint_of(modules[0].model, dm.info.input_shape).training_bytes(
        dm.batch_size) + dm.nbytes()
    return max(1, available_bytes(device) // 2 // per_member)
