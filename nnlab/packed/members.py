"""A pack's members: each job's config and run, built exactly as its solo run builds it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig
from torch import nn

from nnlab.engine.build import build, run_record
from nnlab.tracking.life import RunRecord


@dataclass
class Member:
    """One job of a pack: its task config, overrides, output folder and MLflow tags."""

    cfg: DictConfig
    overrides: list[str]
    output_dir: Path
    tags: dict[str, str]
    tracker: Any = None
    logger: Any = None
    error: str | None = None
    result: float = math.nan
    model: nn.Module | None = None  # as initialised (the pack trains a stacked copy)
    init_histograms: list | None = None  # its weights' histograms at init, counted once
    record: RunRecord | None = None  # what its run records first (model summary, data set)
    open: bool = False  # its MLflow run is open
    sweep_dir: Path | None = None  # its sweep's folder: the run nests under the sweep's run


def build_members(members: Sequence[Member]) -> tuple[list[Any], list[Any], list[torch.Generator]]:
    """Each member's (data module, LabModule) built exactly as its solo run builds them, and the
    global random state its solo run would train from (for its dropout masks)."""
    datamodules, modules, generators = [], [], []
    for member in members:
        pl.seed_everything(member.cfg.seed, workers=True, verbose=False)
        datamodule, module = build(member.cfg)
        member.record = run_record(member.cfg, datamodule, module.model)
        gen = torch.Generator()
        gen.set_state(torch.get_rng_state())
        datamodules.append(datamodule)
        modules.append(module)
        generators.append(gen)
    return datamodules, modules, generators
