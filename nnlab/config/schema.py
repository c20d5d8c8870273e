"""What a config may say: nnlab's own keys (the schema), and the ranges no type can say.

Each value has one home for its default and type:
- nnlab's own top-level keys (seed, batch_size, mlflow, checkpoint, instruments, ...): the
  dataclass schema below, registered in Hydra's ConfigStore, so `batch_size=abc` fails at once;
- a group option's parameters: the signature of what it builds (a model's or data set's
  constructor, an init function, a loss or optimizer class, Lightning's Trainer, a callback).
  A user's own model or data set therefore takes whatever parameters its constructor takes.
Ranges that no type can say (lr > 0, a fraction in (0, 1)) live in RANGES, one line each.
`validate` checks all of it and fills in the defaults a run will use, so the logged params are
the values used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

GROUPS = ("model", "activation", "init", "loss", "optimizer", "scheduler", "dataset", "accelerator")
LIGHTNING_GROUPS = ("trainer", "callbacks", "logger")


@dataclass
class MlflowSchema:
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"  # or http://host:port (a tracking server)
    artifact_root: str | None = "mlruns/artifacts"  # for a local store; a server keeps its own
    experiment_name: str = "nnlab"
    run_name: str = ("${model.name}-${activation.name}-${init.name}-${optimizer.name}-"
                     "${dataset.name}")


@dataclass
class InstrumentsSchema:
    """Per-layer grad/weight/activation metrics + PNG plots (nnlab/engine/instruments.py)."""

    enabled: bool = True
    every_n_steps: int = 50  # also log the per-layer values every N optimiser steps (<name>_step)
    saturation_threshold: float = 0.01  # sigmoid/tanh output saturated when f'(x) < this
    plots: bool = True  # weight histograms at init; learning curves, confusion matrix, boundary


@dataclass
class CheckpointSchema:
    every_n_steps: int = 100  # also save last.ckpt every N optimiser steps (0: epoch ends only)


@dataclass
class SweepSchema:
    resume: bool = False  # skip jobs already FINISHED, resume killed ones (nnlab/jobs/)


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
    trainer: Any = MISSING  # Lightning's Trainer flags (conf/trainer/), checked against it
    callbacks: Any = field(default_factory=dict)  # extra Lightning callbacks: name -> _target_
    logger: Any = field(default_factory=dict)  # extra Lightning loggers beside nnlab's MLflow one
    seed: int = 0
    batch_size: int = 64
    mlflow: MlflowSchema = field(default_factory=MlflowSchema)
    checkpoint: CheckpointSchema = field(default_factory=CheckpointSchema)
    resume: str | None = None  # continue a stopped run from its checkpoint: a run id, or last
    instruments: InstrumentsSchema = field(default_factory=InstrumentsSchema)
    sweep: SweepSchema = field(default_factory=SweepSchema)
    study: Any = None  # run-length modes of a study (conf/study_modes.yaml)


TOP_LEVEL = tuple(f.name for f in fields(NnlabSchema))


def register_configs() -> None:
    ConfigStore.instance().store(name="nnlab_schema", node=NnlabSchema)


# -- ranges no type can say: dotted key -> (test, what is valid) ---------------------------------
def _positive(v: Any) -> bool:
    return v > 0


def _limit(v: Any) -> bool:
    """Lightning's limit_*_batches: None, a fraction in (0, 1] or a count >= 1."""
    return v is None or (isinstance(v, float) and 0 < v <= 1) or (isinstance(v, int) and v >= 1)


def _sizes(v: Any) -> bool:
    return v is None or all(isinstance(s, int) and s >= 1 for s in v)


RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: 0 <= v < 2**32, "an integer in [0, 2**32) (numpy's seed range)"),
    "batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.max_epochs": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.log_every_n_steps": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.limit_train_batches": (_limit, "null, a fraction in (0, 1] or a count >= 1"),
    "trainer.limit_val_batches": (_limit, "null, a fraction in (0, 1] or a count >= 1"),
    "trainer.limit_test_batches": (_limit, "null, a fraction in (0, 1] or a count >= 1"),
    "trainer.gradient_clip_val": (lambda v: v is None or v > 0, "null or a float > 0"),
    "trainer.accumulate_grad_batches": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.check_val_every_n_epoch": (lambda v: v is None or v >= 1, "null or an integer >= 1"),
    "mlflow.experiment_name": (lambda v: bool(v.strip()), "a non-empty name, e.g. nnlab"),
    "mlflow.tracking_uri": (lambda v: bool(v.strip()),
                            "sqlite:///<file> or http(s)://host:port of a tracking server"),
    "optimizer.lr": (_positive, "a float > 0, e.g. 0.01"),
    "optimizer.momentum": (lambda v: 0 <= v < 1, "a float in [0, 1)"),
    "optimizer.weight_decay": (lambda v: v >= 0, "a float >= 0"),
    "optimizer.alpha": (lambda v: 0 < v < 1, "a float in (0, 1)"),
    "optimizer.betas": (lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
                        "two floats in [0, 1), e.g. [0.9, 0.999]"),
    "scheduler.step_size": (lambda v: v >= 1, "an integer >= 1 (epochs)"),
    "scheduler.gamma": (_positive, "a float > 0"),
    "scheduler.T_max": (lambda v: v >= 1, "an integer >= 1 (epochs)"),
    "model.dropout": (lambda v: 0 <= v < 1, "a probability p with 0 <= p < 1"),
    "model.width": (_positive, "a float > 0 (a multiplier, 1.0: the published sizes; deep_mlp: "
                    "units per hidden layer, an integer >= 1)"),
    "model.depth": (lambda v: v >= 1, "an integer >= 1 (hidden layers)"),
    "model.hidden": (_sizes, "a list of layer sizes, each an integer >= 1"),
    "model.hidden_units": (lambda v: v >= 1, "an integer >= 1"),
    "model.fc_units": (lambda v: v >= 1, "an integer >= 1"),
    "activation.negative_slope": (lambda v: v >= 0, "a float >= 0"),
    "activation.alpha": (_positive, "a float > 0"),
    "init.std": (_positive, "a float > 0"),
    "init.gain": (_positive, "a float > 0"),
    "loss.label_smoothing": (lambda v: 0 <= v <= 1, "a float in [0, 1]"),
    "loss.beta": (_positive, "a float > 0"),
    "dataset.val_fraction": (lambda v: 0 <= v < 1, "a fraction in [0, 1) (0: one sample)"),
    "dataset.test_fraction": (lambda v: 0 < v < 1, "a fraction in (0, 1)"),
    "dataset.n_samples": (lambda v: v >= 10, "an integer >= 10"),
    "dataset.noise": (lambda v: v >= 0, "a float >= 0"),
    "dataset.outliers": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    "dataset.size": (lambda v: v >= 1, "an integer >= 1 (pixels)"),
    "dataset.train_size": (lambda v: v is None or v >= 1,
                           "null (the whole train split) or an integer >= 1 (examples)"),
    "dataset.num_workers": (lambda v: v >= 0, "an integer >= 0"),
    "dataset.channels": (lambda v: v is None or v >= 1, "null or an integer >= 1"),
    "dataset.resize": (lambda v: v is None or v >= 1, "null or an integer >= 1 (pixels)"),
    "dataset.crop_padding": (lambda v: v >= 0, "an integer >= 0 (pixels)"),
    "dataset.classes": (lambda v: v >= 2, "an integer >= 2"),
    "dataset.n_features": (lambda v: v >= 1, "an integer >= 1"),
    "accelerator.devices": (lambda v: v == "auto" or (isinstance(v, int) and v >= 1)
                            or (isinstance(v, Sequence) and not isinstance(v, str)),
                            "auto, a count >= 1 or a list of device ids"),
    "hydra.launcher.n_jobs": (lambda v: v != 0, "an integer != 0 (-1: one job per CPU core)"),
    "hydra.launcher.max_members": (lambda v: v is None or v >= 1, "null or an integer >= 1"),
    "checkpoint.every_n_steps": (lambda v: v >= 0, "an integer >= 0 (0: only at epoch ends)"),
    "instruments.every_n_steps": (lambda v: v >= 1, "an integer >= 1"),
    "instruments.saturation_threshold": (lambda v: 0 < v < 1, "a float in (0, 1)"),
}

# Parameters of any callback (callbacks.<name>.<param>), whatever its class: what Lightning's
# callbacks accept without refusing but cannot use.
CALLBACK_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "patience": (lambda v: v >= 0, "an integer >= 0 (epochs without improvement)"),
    "save_top_k": (lambda v: v >= -1, "an integer >= -1 (-1: keep all)"),
    "every_n_epochs": (lambda v: v is None or v >= 0, "null or an integer >= 0"),
}
# Keys whose value may be infinite or NaN (fnmatch patterns); every other float must be finite.
NON_FINITE_ALLOWED = ("callbacks.*.stopping_threshold", "callbacks.*.divergence_threshold")
# Integers reach torch and numpy as int64 (numpy's seed as uint32, see RANGES).
INT64 = (-(2**63), 2**63 - 1)

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("32", "64", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
# Trainer flags nnlab sets itself from other keys: where to set them instead.
TRAINER_OWNED = {
    "accelerator": "accelerator=cpu|gpu|auto", "devices": "accelerator.devices",
    "precision": "accelerator.precision", "logger": "logger.<name>._target_",
    "callbacks": "callbacks.<name>._target_", "default_root_dir": "hydra.run.dir",
    "enable_checkpointing": "checkpoint.every_n_steps", "enable_model_summary": "(always off)",
}


def plain(node: DictConfig | ListConfig | Any) -> Any:
    """A resolved plain-Python copy of a config node."""
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def group_params(node: DictConfig, drop: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """A group's parameters as plain kwargs, without bookkeeping keys."""
    return {k: v for k, v in plain(node).items() if k not in drop and not k.startswith("_")}
