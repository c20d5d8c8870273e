"""Config schemas (registered in Hydra's ConfigStore) and the semantic checks run before training.

Top-level keys are typed at composition time by `NnlabSchema`. Each group's node is checked after
composition against a small dataclass of the parameters whose type we know (`GROUP_SCHEMAS`);
parameters a new option adds pass through untouched, so a new option needs no edit here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

GROUPS = ("model", "activation", "init", "loss", "optimizer", "scheduler", "dataset", "accelerator")


class ConfigError(ValueError):
    """A config that cannot run; its message names the bad value and the valid choices."""


@dataclass
class TrainerSchema:
    max_epochs: int = 10
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    log_every_n_steps: int = 10
    enable_progress_bar: bool = True
    deterministic: bool = False
    gradient_clip_val: float | None = None


@dataclass
class MlflowSchema:
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_root: str | None = "mlruns/artifacts"
    experiment_name: str = "nnlab"
    run_name: str = MISSING
    log_every_n_steps: int = 10


@dataclass
class InstrumentsSchema:
    """Per-layer measurements and plots during training (nnlab/instruments.py)."""

    enabled: bool = True
    every_n_steps: int = 50
    saturation_threshold: float = 0.01
    plots: bool = True


@dataclass
class CheckpointSchema:
    every_n_steps: int = 100


@dataclass
class SweepSchema:
    resume: bool = False  # skip jobs already FINISHED, resume killed ones (nnlab/sweep.py)


@dataclass
class NnlabSchema:
    model: Any = MISSING
    activation: Any = MISSING
    init: Any = MISSING
    loss: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    dataset: Any = MISSING
    accelerator: Any = MISSING
    seed: int = 0
    batch_size: int = 64
    trainer: TrainerSchema = field(default_factory=TrainerSchema)
    mlflow: MlflowSchema = field(default_factory=MlflowSchema)
    checkpoint: CheckpointSchema = field(default_factory=CheckpointSchema)
    resume: str | None = None
    instruments: InstrumentsSchema = field(default_factory=InstrumentsSchema)
    sweep: SweepSchema = field(default_factory=SweepSchema)
    study: Any = None  # run-length modes of a study (experiments/study_modes.yaml)


# Known parameter types per group (a subset: options may add others).
@dataclass
class ModelParams:
    name: str = MISSING
    dropout: float = 0.0
    hidden: list[int] | None = None
    pool: str = "max"
    width: float = 1.0
    classic: bool = False
    batch_norm: bool = False
    fc_units: int = 512


@dataclass
class ActivationParams:
    name: str = MISSING
    negative_slope: float = 0.01
    alpha: float = 1.0


@dataclass
class InitParams:
    name: str = MISSING
    bias: str = "zeros"
    value: float = 0.1
    a: float = -0.05
    b: float = 0.05
    mean: float = 0.0
    std: float = 0.01
    gain: float = 1.0
    mode: str = "fan_in"


@dataclass
class LossParams:
    name: str = MISSING
    label_smoothing: float = 0.0
    beta: float = 1.0


@dataclass
class OptimizerParams:
    name: str = MISSING
    lr: float = MISSING
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    betas: list[float] | None = None


@dataclass
class DatasetParams:
    name: str = MISSING
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    num_workers: int = 0
    download: bool = True
    channels: int | None = None
    resize: int | None = None
    crop_padding: int = 0
    hflip: bool = False


@dataclass
class SchedulerParams:
    name: str = MISSING


@dataclass
class AcceleratorParams:
    name: str = MISSING
    accelerator: str = "auto"
    precision: str = "32"


GROUP_SCHEMAS: dict[str, type] = {
    "model": ModelParams,
    "activation": ActivationParams,
    "init": InitParams,
    "loss": LossParams,
    "optimizer": OptimizerParams,
    "scheduler": SchedulerParams,
    "dataset": DatasetParams,
    "accelerator": AcceleratorParams,
}

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("32", "64", "16-mixed", "bf16-mixed", "16-true", "bf16-true")


def register_configs() -> None:
    ConfigStore.instance().store(name="nnlab_schema", node=NnlabSchema)


def _check_types(cfg: DictConfig) -> None:
    for group, schema in GROUP_SCHEMAS.items():
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            raise ConfigError(
                f"'{group}' must be a config group; choose one with {group}=<option>."
            )
        typed = OmegaConf.structured(schema)
        OmegaConf.set_struct(typed, False)
        try:
            OmegaConf.merge(typed, node)
        except OmegaConfBaseException as err:
            key = getattr(err, "full_key", None) or getattr(err, "key", "?")
            raise ConfigError(
                f"{group}.{key}: {str(err).splitlines()[0]}. Check the value given for "
                f"{group}.{key}; its expected type is set in nnlab/config.py "
                f"({schema.__name__})."
            ) from None


def _fail(key: str, value: Any, why: str, choices: Any) -> None:
    raise ConfigError(f"{key}={value!r} is invalid: {why}. Valid: {choices}.")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for anything that cannot run; touches no tracker and no data."""
    from hydra.utils import get_class

    from nnlab.activations import ACTIVATIONS
    from nnlab.inits import BIAS_INITS, INIT_NAMES
    from nnlab.losses import LOSSES

    _check_types(cfg)
    if cfg.batch_size < 1:
        _fail("batch_size", cfg.batch_size, "a batch needs at least one sample", "an integer >= 1")
    if cfg.trainer.max_epochs < 1:
        _fail("trainer.max_epochs", cfg.trainer.max_epochs, "training needs at least one epoch",
              "an integer >= 1")
    if cfg.trainer.log_every_n_steps < 1:
        _fail("trainer.log_every_n_steps", cfg.trainer.log_every_n_steps, "must be positive",
              "an integer >= 1")
    lr = cfg.optimizer.get("lr")
    if lr is None or lr <= 0:
        _fail("optimizer.lr", lr, "the learning rate must be positive", "a float > 0, e.g. 0.01")
    dropout = cfg.model.get("dropout", 0.0)
    if not 0.0 <= dropout < 1.0:
        _fail("model.dropout", dropout, "a dropout probability lies in [0, 1)",
              "a float p with 0 <= p < 1")
    if cfg.activation.name not in ACTIVATIONS:
        _fail("activation.name", cfg.activation.name, "unknown activation", sorted(ACTIVATIONS))
    if cfg.init.name not in INIT_NAMES:
        _fail("init.name", cfg.init.name, "unknown initialisation", INIT_NAMES)
    bias = cfg.init.get("bias", "zeros")
    if bias not in BIAS_INITS:
        _fail("init.bias", bias, "unknown bias initialisation", sorted(BIAS_INITS))
    if cfg.loss.name not in LOSSES:
        _fail("loss.name", cfg.loss.name, "unknown loss", sorted(LOSSES))
    accelerator = str(cfg.accelerator.accelerator)
    if accelerator not in ACCELERATORS:
        _fail("accelerator.accelerator", accelerator, "unknown accelerator", list(ACCELERATORS))
    if str(cfg.accelerator.precision) not in PRECISIONS:
        _fail("accelerator.precision", cfg.accelerator.precision, "unknown precision",
              list(PRECISIONS))

    data_cls = _target_class(cfg.dataset, "dataset", get_class)
    model_cls = _target_class(cfg.model, "model", get_class)
    task = getattr(data_cls, "task", "classification")
    is_image = getattr(data_cls, "is_image", True)
    if getattr(model_cls, "needs_image", False) and not is_image:
        _fail("model", cfg.model.name,
              f"it is a CNN and needs image inputs (C, H, W), but dataset={cfg.dataset.name} "
              "has flat feature vectors", "model=mlp for this data set, or an image data set "
              "(digits, mnist, fashion_mnist) for a CNN")
    loss_tasks = LOSSES[cfg.loss.name].tasks
    if task not in loss_tasks:
        fitting = sorted(name for name, spec in LOSSES.items() if task in spec.tasks)
        _fail("loss", cfg.loss.name, f"it is a {'/'.join(loss_tasks)} loss and "
              f"dataset={cfg.dataset.name} is a {task} task", f"for {task}: {fitting}")
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            _fail("accelerator", cfg.accelerator.name, "no CUDA GPU is visible on this machine",
                  "accelerator=cpu or accelerator=auto (uses a GPU when there is one)")


def _target_class(node: DictConfig, group: str, get_class: Any) -> type:
    target = node.get("_target_")
    if not target:
        raise ConfigError(f"{group}={node.get('name')!r} has no _target_: its yaml in "
                          f"conf/{group}/ must name the class to build.")
    try:
        return get_class(target)
    except Exception as err:
        raise ConfigError(f"{group}.{'_target_'}={target!r} cannot be imported ({err}). It must "
                          "name a class, e.g. nnlab.models.mlp.MLP.") from None


def plain(node: DictConfig | ListConfig | Any) -> Any:
    """A resolved plain-Python copy of a config node."""
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def group_params(node: DictConfig, drop: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """A group's parameters as plain kwargs, without bookkeeping keys."""
    return {k: v for k, v in plain(node).items() if k not in drop and not k.startswith("_")}
