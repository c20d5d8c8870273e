"""Config -> objects: the data module, the model, the LightningModule, the Trainer's parts.

Each function builds one thing from its config group; none of them touches the tracker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig

from nnlab.activations import activation_factory
from nnlab.config import group_params, plain
from nnlab.data.base import DataError, DataInfo
from nnlab.engine.module import LabModule
from nnlab.errors import ConfigError
from nnlab.inits import apply_init
from nnlab.losses import Objective
from nnlab.tracking.life import RunRecord


def build_datamodule(cfg: DictConfig):
    """The data module with its arrays loaded, so its shapes are known."""
    from hydra.utils import instantiate

    params = group_params(cfg.dataset)
    datamodule = instantiate({"_target_": cfg.dataset._target_, **params},
                             batch_size=cfg.batch_size, seed=cfg.seed)
    prepare = getattr(datamodule, "prepare", None)
    if prepare is not None:
        prepare()
    return datamodule


def build_model(cfg: DictConfig, input_shape: Sequence[int], num_outputs: int):
    """The network with the chosen activation in every hidden layer and the chosen init."""
    from hydra.utils import get_class

    activation = activation_factory(cfg.activation.name, cfg.activation.get("_target_"),
                                    **group_params(cfg.activation))
    model_cls = get_class(cfg.model._target_)
    model = model_cls(tuple(input_shape), num_outputs, activation, **group_params(cfg.model))
    return apply_init(model, cfg.init.name, activation=activation, **group_params(cfg.init))


def build_module(cfg: DictConfig, model, task: str, num_classes: int):
    from hydra.utils import instantiate

    objective = Objective(cfg.loss.name, task, num_classes, **group_params(cfg.loss))
    optimizer = instantiate({k: v for k, v in plain(cfg.optimizer).items() if k != "name"})
    scheduler = None
    if cfg.scheduler.get("_target_"):
        scheduler = instantiate({k: v for k, v in plain(cfg.scheduler).items() if k != "name"})
    return LabModule(model, objective, optimizer, scheduler)


def data_info(datamodule) -> DataInfo:
    """What the model needs to know: nnlab's data modules say it in `info`; any other
    LightningDataModule gives `input_shape`, `num_outputs` and optionally `task`."""
    info = getattr(datamodule, "info", None)
    if isinstance(info, DataInfo):
        return info
    try:
        return DataInfo(tuple(datamodule.input_shape), int(datamodule.num_outputs),
                        getattr(datamodule, "task", "classification"))
    except AttributeError as err:
        raise DataError(f"dataset: {type(datamodule).__qualname__} must tell nnlab its shapes: "
                        "subclass nnlab.data.TensorDataModule, or give it the attributes "
                        f"input_shape, num_outputs and task ({err}).") from None


def build(cfg: DictConfig):
    """Everything but the tracker and trainer: (datamodule, module)."""
    datamodule = build_datamodule(cfg)
    info = data_info(datamodule)
    try:
        model = build_model(cfg, info.input_shape, info.num_outputs)
    except ValueError as err:  # a model that cannot take these shapes says why
        raise ConfigError(str(err)) from None
    num_classes = info.num_outputs if info.task == "classification" else 0
    return datamodule, build_module(cfg, model, info.task, num_classes)


def user_parts(cfg: DictConfig, group: str) -> list[Any]:
    """The extra callbacks or loggers the config names (callbacks.<name>, logger.<name>)."""
    from hydra.utils import instantiate

    return [instantiate(node) for node in (cfg.get(group) or {}).values() if node]


def model_summary(model, input_shape: Sequence[int]) -> str:
    from torchinfo import summary

    stats = summary(model, input_size=(1, *input_shape), verbose=0, device="cpu",
                    col_names=("output_size", "num_params"), row_settings=("var_names",))
    return str(stats)


def data_profile(datamodule, info: DataInfo) -> tuple[str, dict[str, Any]]:
    """(a digest of the data, its sizes and shapes) for the run's data set entry in MLflow."""
    import hashlib

    profile: dict[str, Any] = {"input_shape": list(info.input_shape),
                               "outputs": info.num_outputs, "task": info.task}
    digest = hashlib.sha1(repr(profile).encode())
    for split, data in sorted(getattr(datamodule, "splits", {}).items()):
        profile[f"{split}_samples"] = len(data.y)
        digest.update(data.y.cpu().numpy().tobytes())  # labels and a sample of the inputs
        digest.update(data.x[:: max(1, len(data.x) // 64)].cpu().numpy().tobytes())
    return digest.hexdigest()[:8], profile


def run_record(cfg: DictConfig, datamodule: Any, model: Any) -> RunRecord:
    """What the run records about its model and data before training (nnlab.tracking.open_run)."""
    info = data_info(datamodule)
    digest, profile = data_profile(datamodule, info)
    return RunRecord(summary=model_summary(model, info.input_shape),
                     num_params=sum(p.numel() for p in model.parameters()),
                     dataset=str(cfg.dataset.name), source=str(cfg.dataset._target_),
                     digest=digest, profile=profile)
