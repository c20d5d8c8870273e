"""A run's parts built dry, before any data is loaded or any store opened: the optimizer and
scheduler on a one-parameter stand-in, the callbacks and loggers, and Lightning's Trainer with the
run's flags. What they refuse (torch's, Lightning's or a user's own rules, beyond the signatures
nnlab.config checks) becomes nnlab's one paragraph, exit 2."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from nnlab.config import ConfigError, fail, plain
from nnlab.config.checks import creatable
from nnlab.engine.distributed import devices_and_strategy
from nnlab.engine.module import fit_metrics

# Parameters of a callback or logger that name a folder it will write in.
FOLDER_PARAMS = ("dirpath", "save_dir", "root_dir", "log_dir")
# nnlab's names for the Trainer flags it sets from the accelerator group.
ACCELERATOR_FLAGS = {"accelerator": "accelerator.accelerator", "devices": "accelerator.devices",
                     "strategy": "accelerator.strategy", "precision": "accelerator.precision"}


def cause(err: BaseException) -> str:
    """The error's own words, without Hydra's "Error in call to target" wrapper."""
    err = err.__cause__ or err
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:400]


def given(prefix: str, params: dict[str, Any]) -> str:
    return ", ".join(f"{prefix}.{k}={v!r}" for k, v in params.items()
                     if k not in ("name", "_target_", "_partial_")) or "(no parameters)"


def refused(group: str, node: DictConfig, err: BaseException) -> ConfigError:
    """`group`'s option refused its parameters: say which option, what it said, what was given."""
    params = plain(node)
    owner = params.get("_target_", group)
    label = f"{group}={params['name']}" if "name" in params else group
    return ConfigError(f"{label} is invalid: {owner} refuses these parameters ({cause(err)}). "
                       f"Given: {given(group, params)}. Valid: what {owner} accepts (see its "
                       "documentation).")


def check_optimizer(cfg: DictConfig) -> None:
    """Build the optimizer, and the scheduler on it, for one stand-in parameter."""
    stand_in = [torch.nn.Parameter(torch.zeros(1))]
    try:
        optimizer = instantiate({k: v for k, v in plain(cfg.optimizer).items() if k != "name"})
        optimizer = optimizer(stand_in)
    except Exception as err:  # noqa: BLE001 - worded for the user
        raise refused("optimizer", cfg.optimizer, err) from None
    if not cfg.scheduler.get("_target_"):
        return
    try:
        scheduler = instantiate({k: v for k, v in plain(cfg.scheduler).items() if k != "name"})
        scheduler(optimizer)
    except Exception as err:  # noqa: BLE001
        raise refused("scheduler", cfg.scheduler, err) from None


def check_extras(cfg: DictConfig, task: str) -> None:
    """Each callback and logger: its folders can be made, it builds, and a `monitor` names a
    metric the run logs while it trains."""
    metrics = fit_metrics(task)
    for group in ("callbacks", "logger"):
        for name, node in (cfg.get(group) or {}).items():
            if not node:
                continue
            key = f"{group}.{name}"
            for param in FOLDER_PARAMS:
                folder = node.get(param)
                why = creatable(str(folder)) if folder else None
                if why:
                    fail(f"{key}.{param}", folder, why, "a folder that exists or can be created")
            monitor = node.get("monitor")
            if monitor is not None and str(monitor) not in metrics:
                fail(f"{key}.monitor", monitor, f"the run logs no such metric while it trains "
                     f"(a {task} run)", metrics)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the real build shows them once
                    instantiate(node)
            except Exception as err:  # noqa: BLE001
                raise refused(key, node, err) from None


def check_trainer(cfg: DictConfig) -> None:
    """Lightning's Trainer built with the run's flags (a few ms; it allocates nothing)."""
    import lightning.pytorch as pl

    devices, strategy = devices_and_strategy(cfg)
    flags = {"accelerator": str(cfg.accelerator.accelerator), "devices": devices,
             "strategy": strategy, "precision": str(cfg.accelerator.precision)}
    trainer_flags = plain(cfg.trainer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pl.Trainer(**flags, **{**trainer_flags, "logger": False, "callbacks": None,
                                   "enable_checkpointing": False, "enable_model_summary": False,
                                   "enable_progress_bar": False})
    except Exception as err:  # noqa: BLE001
        text = cause(err)
        named = [f"{ACCELERATOR_FLAGS[k]}={v!r}" for k, v in flags.items() if f"{k}" in text]
        named += [f"trainer.{k}={v!r}" for k, v in trainer_flags.items() if k in text]
        named = named or [f"{ACCELERATOR_FLAGS[k]}={v!r}" for k, v in flags.items()]
        raise ConfigError(f"{', '.join(named)} is invalid: Lightning's Trainer refuses it "
                          f"({text}). Valid: what Lightning asks for above; `python -m nnlab "
                          "--help` lists the accelerator options and Trainer flags.") from None


def check_parts(cfg: DictConfig, task: str) -> None:
    """Every part a run builds from the config, built dry (see the module's docstring)."""
    check_optimizer(cfg)
    check_extras(cfg, task)
    check_trainer(cfg)
