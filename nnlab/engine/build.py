"""Config -> objects: the data module, the model, the LightningModule, the Trainer's parts.

Each function builds one thing from its config group; none of them touches the tracker. `build`
first checks what can only be checked by building: the parts built dry (nnlab.engine.dry), the
data's and the model's sizes against the memory at hand (nnlab.memory), a fraction of batches
that leaves none, and the model against the data's shape; all before any store opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig

from nnlab.activations import activation_factory
from nnlab.config import fail, group_params, plain
from nnlab.data.base import DataInfo
from nnlab.engine.dry import check_parts
from nnlab.engine.module import LabModule
from nnlab.errors import ConfigError, DataError
from nnlab.inits import apply_init
from nnlab.losses import Objective
from nnlab.memory import available_bytes, footprint, refuse_if_too_big
from nnlab.tracking.life import RunRecord


def build_datamodule(cfg: DictConfig):
    """The data module with its arrays loaded, so its shapes are known."""
    from hydra.utils import instantiate

    params = group_params(cfg.dataset)
    datamodule = instantiate({"_target_": cfg.dataset._target_, **params},
                             batch_size=cfg.batch_size, seed=cfg.seed)
    planned = getattr(datamodule, "planned_bytes", lambda: 0)()
    if planned:
        per_sample = planned // max(1, int(datamodule.n_samples))
        refuse_if_too_big(f"dataset={cfg.dataset.name} with {described('dataset', params)}",
                          planned, "cpu", "dataset.n_samples up to about "
                          f"{available_bytes('cpu') // max(1, per_sample):,}")
    prepare = getattr(datamodule, "prepare", None)
    if prepare is not None:
        prepare()
    return datamodule


def build_model(cfg: DictConfig, input_shape: Sequence[int], num_outputs: int,
                init: bool = True):
    """The network with the chosen activation in every hidden layer and the chosen init
    (`init=False`: PyTorch's own, as for measuring it on the meta device)."""
    from hydra.utils import get_class

    activation = activation_factory(cfg.activation.name, cfg.activation.get("_target_"),
                                    **group_params(cfg.activation))
    model_cls = get_class(cfg.model._target_)
    model = model_cls(tuple(input_shape), num_outputs, activation, **group_params(cfg.model))
    if not init:
        return model
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


def described(group: str, params: dict[str, Any]) -> str:
    """`group.key=value, ...` of a group's parameters, as a message names them."""
    return ", ".join(f"{group}.{k}={v!r}" for k, v in params.items()) or "its defaults"


def device_of(cfg: DictConfig) -> str:
    """Where the model will train: cuda for gpu (or auto with a GPU), else cpu."""
    import torch

    accelerator = str(cfg.accelerator.accelerator)
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and
                                                 torch.cuda.is_available())
    return "cuda" if on_gpu else "cpu"


def check_batches(cfg: DictConfig, datamodule: Any) -> None:
    """A fraction in limit_*_batches that leaves a split with no batch at all."""
    import math

    for split in ("train", "val", "test"):
        key = f"limit_{split}_batches"
        fraction = cfg.trainer.get(key)
        data = getattr(datamodule, "splits", {}).get(split)
        if not isinstance(fraction, float) or data is None:
            continue
        batches = math.ceil(len(data.y) / cfg.batch_size)
        if int(batches * fraction) == 0:
            fail(f"trainer.{key}", fraction, f"the {split} split has {batches} batches of "
                 f"{cfg.batch_size}, and that fraction of them is 0 batches",
                 f"a fraction >= {1 / batches:.3g}, or a count of batches >= 1")


def check_model(cfg: DictConfig, input_shape: Sequence[int], num_outputs: int) -> bool:
    """The model measured on the meta device (nothing allocated) fits the memory at hand; True
    when a meta forward pass ran, which also shows the model takes the data's shape."""
    found = footprint(lambda: build_model(cfg, input_shape, num_outputs, init=False),
                      input_shape)
    what = (f"model={cfg.model.name} with {described('model', group_params(cfg.model))} "
            f"({found.params:,} parameters) at batch_size={cfg.batch_size}")
    refuse_if_too_big(what, found.training_bytes(cfg.batch_size), device_of(cfg),
                      "a smaller model (fewer or narrower layers) or a smaller batch_size")
    return found.activations > 0


def shape_refused(cfg: DictConfig, input_shape: Sequence[int], err: BaseException) -> None:
    """ConfigError: the model cannot take the data's inputs (its layers do not fit the shape)."""
    resized = {k: cfg.dataset[k] for k in ("resize", "size", "channels")
               if cfg.dataset.get(k) is not None}
    shaped = f" ({described('dataset', resized)})" if resized else ""
    fail("model", cfg.model.name, f"it cannot take dataset={cfg.dataset.name}'s inputs of "
         f"shape {tuple(input_shape)}{shaped}: {' '.join(str(err).split())[:300]}",
         "inputs the model's layers fit (for LeNet-5 and the CNNs: images of at least "
         "28x28, e.g. dataset.resize=32), or another model")


def probe(cfg: DictConfig, model: Any, input_shape: Sequence[int]) -> None:
    """One sample of zeros through the model: a model that cannot take the data's shape says
    so now (no gradient, eval mode: no random draw, no statistics updated)."""
    import torch

    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    except Exception as err:  # noqa: BLE001 - worded for the user
        shape_refused(cfg, input_shape, err)
    finally:
        model.train()


def build(cfg: DictConfig):
    """Everything but the tracker and trainer: (datamodule, module). The parts are built dry
    first, and the data's and model's sizes estimated, so that what cannot run stops here."""
    from hydra.utils import get_class

    check_parts(cfg, getattr(get_class(cfg.dataset._target_), "task", "classification"))
    datamodule = build_datamodule(cfg)
    info = data_info(datamodule)
    check_batches(cfg, datamodule)
    try:
        shape_fits = check_model(cfg, info.input_shape, info.num_outputs)
        model = build_model(cfg, info.input_shape, info.num_outputs)
    except ValueError as err:  # a model that cannot take these shapes says why
        raise ConfigError(str(err)) from None
    except (RuntimeError, TypeError) as err:  # one that runs a sample to size itself
        shape_refused(cfg, info.input_shape, err)
    if not shape_fits:  # the meta forward pass failed: the real one says why, or passes
        probe(cfg, model, info.input_shape)
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
