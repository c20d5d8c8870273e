"""The run's lifecycle inside the Trainer: checkpoints (for resume and after Ctrl-C), the stop at
the first non-finite loss, and finding the run and checkpoint a `resume=` names."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from nnlab.tracking import CHECKPOINT_TAG, Tracker, TrackingError


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class Checkpointer(Callback):
    """Keeps one `last.ckpt`: every `every_n_steps` optimiser steps (0: never mid-epoch), at each
    epoch end and when training is interrupted. The logger is flushed first, so every metric up
    to the checkpoint is in MLflow; the file is replaced atomically, so a kill mid-save leaves the
    previous one whole."""

    def __init__(self, path: Path, every_n_steps: int) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps

    def save(self, trainer: pl.Trainer) -> None:
        if trainer.sanity_checking:
            return
        for logger in trainer.loggers:
            getattr(logger, "flush", lambda: None)()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        trainer.save_checkpoint(tmp)
        os.replace(tmp, self.path)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_steps and step and step % self.every_n_steps == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.save(trainer)


class DivergenceGuard(Callback):
    """Raises `Diverged` at the first training step whose loss is NaN or infinite.

    On the CPU it checks every step at once; on a GPU it reads the previous step's flag, copied
    without blocking, so the check never stalls the device (training stops one step later)."""

    def __init__(self) -> None:
        self._pending: tuple[torch.Tensor, Any, int] | None = None

    def _check(self, finite: torch.Tensor, loss: torch.Tensor, step: int) -> None:
        if not bool(finite):
            raise Diverged(f"the training loss is {float(loss)} at step {step}; the run stopped "
                           "there. Lower optimizer.lr, or clip gradients "
                           "(trainer.gradient_clip_val=1.0).")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        loss = loss.detach()
        step = trainer.global_step
        if loss.device.type == "cpu":
            self._check(torch.isfinite(loss).all(), loss, step)
            return
        self.flush()
        finite = torch.isfinite(loss).all().to("cpu", non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._pending = (finite, (event, loss), step)

    def flush(self) -> None:
        if self._pending is not None:
            finite, (event, loss), step = self._pending
            self._pending = None
            event.synchronize()
            self._check(finite, loss, step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush()


def resume_target(tracker: Tracker, spec: str,
                  overrides: list[str]) -> tuple[Any, Path, DictConfig]:
    """(run, checkpoint path, the run's logged config) for `resume=<run id>` or `resume=last`."""
    run = tracker.find_run(spec)
    name = f"resume={spec}"
    if run.info.experiment_id != tracker.experiment_id:
        tracker.experiment_id = run.info.experiment_id
    ckpt = run.data.tags.get(CHECKPOINT_TAG)
    if not ckpt or not Path(ckpt).is_file():
        raise TrackingError(
            f"{name}: run {run.info.run_id} has no checkpoint to resume from "
            f"({ckpt or 'no ' + CHECKPOINT_TAG + ' tag'} is not a file). Runs keep last.ckpt "
            "under their Hydra output folder; start a new run instead."
        )
    if run.info.status == "FINISHED":
        raise TrackingError(f"{name}: run {run.info.run_id} already FINISHED; nothing to resume.")
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.client.download_artifacts(run.info.run_id, "config.yaml", tmp)
        cfg = OmegaConf.load(path)
    ignored = [o for o in overrides if not o.startswith("resume=")]
    if ignored:
        print(f"nnlab: {name} continues with the run's own config; ignoring {' '.join(ignored)}",
              flush=True)
    cfg.resume = run.info.run_id
    return run, Path(ckpt), cfg
