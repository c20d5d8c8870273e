"""What a resumed run needs besides weights, optimiser and loop counters (Lightning's part) and
the data order (the data module's `state_dict`): the random states, and the running sums of the
epoch a checkpoint cut in two. With them a killed-and-resumed run on the CPU logs the same values
as the run that was never stopped."""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from nnlab.errors import ConfigError

KEY = "nnlab_resume"
RUNS_DIR = Path("mlruns") / "hydra" / "runs"  # train_one's output folders when none is given


def new_run_dir() -> Path:
    """A folder of its own for a run started without one (from Python: Hydra's compose API
    makes none), so no run's checkpoint can overwrite another's."""
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y-%m-%d_%H-%M-%S-"), dir=RUNS_DIR))


@contextmanager
def claim_checkpoint(path: Path, resume: str | None = None) -> Iterator[None]:
    """Hold the run's checkpoint for this process while it trains: a lock file beside it
    (training.lock, naming the process) that the kernel releases when the process ends, however
    it ends (kill -9 too). A run that another live process is training cannot be resumed
    (ConfigError; `resume`: what the user asked to resume, for the message)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name("training.lock"), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            what = (f"resume={resume} is invalid: that run is being trained right now"
                    if resume else
                    f"the run's folder {path.parent.parent} is in use: a run is training there")
            raise ConfigError(
                f"{what} by {holder} (it holds {path}). Wait for it to end, or stop it "
                "(Ctrl-C, kill) and resume then.") from None
        lock.truncate(0)
        lock.write(f"process {os.getpid()}")
        lock.flush()
        yield


def torch_rng_states() -> dict[str, Any]:
    """torch's CPU state and every initialised CUDA device's (about 5 us: taken every batch)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def rng_states(torch_states: dict[str, Any] | None = None) -> dict[str, Any]:
    """torch (`torch_states`, or now), numpy and python random states, in plain types (a
    checkpoint loaded with weights_only takes them)."""
    return {
        **(torch_states or torch_rng_states()),
        "numpy": [v.tolist() if isinstance(v, np.ndarray) else v for v in np.random.get_state()],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    random.setstate(states["python"])


def resume_exact(trainer: pl.Trainer) -> bool:
    """Whether a resumed run repeats the uninterrupted one: on the CPU, or with deterministic
    algorithms on (a GPU's default kernels may add in any order)."""
    on_cpu = trainer.strategy.root_device.type == "cpu"
    return on_cpu or torch.are_deterministic_algorithms_enabled()


class ResumeState(Callback):
    """Saves and restores the random states and the module's running epoch sums.

    torch's random states are those after the last trained batch: checkpoints are written when
    the next batch is already fetched, and its augmentation has drawn random numbers by then
    (numpy and python's are taken at the save; nothing draws from them between batches)."""

    def __init__(self) -> None:
        self._rng: dict[str, Any] | None = None
        self._loaded: dict[str, Any] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._loaded is not None:
            set_rng_states(self._loaded["rng"])
            sums = self._loaded["loss_sums"]
            pl_module.loss_sums = {k: (v.to(pl_module.device), n) for k, (v, n) in sums.items()}
            for name, metric in pl_module.metrics["train_metrics"].items():
                for key, value in self._loaded["train_metrics"].get(name, {}).items():
                    setattr(metric, key, value.to(pl_module.device))
            self._loaded = None
        self._rng = torch_rng_states()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._rng = torch_rng_states()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        metrics = {name: {k: v.detach().clone() for k, v in metric.metric_state.items()
                          if isinstance(v, torch.Tensor)}
                   for name, metric in pl_module.metrics["train_metrics"].items()}
        sums = {k: (v.detach().clone(), n) for k, (v, n) in pl_module.loss_sums.items()
                if k == "train"}
        checkpoint[KEY] = {"rng": rng_states(self._rng), "loss_sums": sums,
                           "train_metrics": metrics}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._loaded = checkpoint.get(KEY)
