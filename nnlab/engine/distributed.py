"""Multi-device runs (Lightning's DDP): one job = one MLflow run, whatever the number of ranks.

Lightning starts ranks 1..N-1 by running the same command again (with LOCAL_RANK set). Those
ranks compose the same config and train, but never open the MLflow store: rank 0 alone logs
and writes checkpoints (nnlab's logger and Checkpointer are rank-zero only)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig

# Hydra flags that choose where configs come from: a DDP rank needs them too.
CONFIG_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")


def is_child_rank() -> bool:
    """Whether this process is a rank > 0 that Lightning started for a DDP run."""
    from lightning.pytorch.utilities import rank_zero_only

    return (rank_zero_only.rank or 0) > 0


def devices_and_strategy(cfg: DictConfig) -> tuple[Any, str]:
    """`accelerator.devices` and its strategy: `auto` becomes DDP for more than one device."""
    devices = cfg.accelerator.devices
    strategy = str(cfg.accelerator.get("strategy", "auto"))
    many = (isinstance(devices, int) and devices > 1) or (
        not isinstance(devices, int | str) and len(devices) > 1)
    if strategy == "auto" and many:
        strategy = "ddp"
    return devices, strategy


def job_command_for_ranks(overrides: Sequence[str]) -> None:
    """In a multirun, make Lightning start the other ranks on this job alone: it re-runs
    sys.argv, which holds the whole sweep (-m and every swept value)."""
    flags: list[str] = []
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg in CONFIG_FLAGS and i + 1 < len(argv):
            flags += [arg, argv[i + 1]]
        elif arg.split("=")[0] in CONFIG_FLAGS:
            flags.append(arg)
    sys.argv = [sys.argv[0], *flags, *overrides]


# What Lightning's DDP launcher writes into rank 0's environment for its ranks to find it.
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def ddp_job() -> Iterator[None]:
    """One job's DDP life in this process: afterwards its process group is closed and the
    launcher's variables are put back, so the next job of a sweep launches its own ranks
    (with LOCAL_RANK left set, Lightning would wait for ranks started by someone else)."""
    saved = {key: os.environ.get(key) for key in LAUNCH_ENV}
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
