"""The run's lifecycle inside the Trainer: the MLflow logger, checkpoints (for resume and after
Ctrl-C), the stop at the first non-finite loss, and finding what a `resume=` names."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from nnlab.tracking import CHECKPOINT_TAG, Tracker, TrackingError, is_server

SERVER_FLUSH_S = 5.0  # a tracking server's request costs ~0.1 s: step values wait up to this


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class Checkpointer(Callback):
    """Keeps one `last.ckpt`, saved between batches: once `every_n_steps` optimiser steps (0: never
    mid-epoch) have passed since the last save, at the first batch of each epoch, at the end of
    training and when training is interrupted. Between batches, every metric of the steps before
    is already logged; the logger is flushed before each save, so MLflow holds everything up to
    the checkpoint, and a resumed run logs from there. The file is replaced atomically, so a kill
    mid-save leaves the previous one whole."""

    def __init__(self, path: Path, every_n_steps: int) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._saved: tuple[int, int] | None = None  # (global step, epoch) of the last save
        self._in_fit = False
        self.stop_signal: int | None = None

    def request_stop(self, signum: int, frame: Any) -> None:
        """SIGINT/SIGTERM handler: during training, stop at the next batch boundary (where the
        checkpoint is consistent); otherwise, or on a second signal, stop now."""
        if self._in_fit and self.stop_signal is None:
            self.stop_signal = signum
            return
        raise KeyboardInterrupt(f"signal {signum}")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._in_fit = True

    def save(self, trainer: pl.Trainer) -> None:
        for logger in trainer.loggers:
            getattr(logger, "flush", lambda: None)()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        trainer.save_checkpoint(tmp)
        os.replace(tmp, self.path)
        self._saved = (trainer.global_step, trainer.current_epoch)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.stop_signal is not None:
            raise KeyboardInterrupt(f"signal {self.stop_signal}")  # saved in on_exception
        step, epoch = trainer.global_step, trainer.current_epoch
        if self._saved is None:  # the first batch of this process: nothing new to keep
            self._saved = (step, epoch)
            return
        due = self.every_n_steps and step - self._saved[0] >= self.every_n_steps
        if due or epoch != self._saved[1]:
            self.save_between_batches(trainer)

    def save_between_batches(self, trainer: pl.Trainer) -> None:
        self._between_batches = True
        try:
            self.save(trainer)
        finally:
            self._between_batches = False

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """Lightning expects mid-epoch checkpoints from on_train_batch_end and adds one to the
        logging step count on restore; ours come after that count was incremented."""
        if getattr(self, "_between_batches", False):
            checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._in_fit = False
        self.save(trainer)
        if self.stop_signal is not None:  # the signal came during the last validation
            raise KeyboardInterrupt(f"signal {self.stop_signal}")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        """Ctrl-C or SIGTERM: keep a checkpoint. A requested stop (ours, or Lightning's own
        SIGTERMException) is raised between batches, a raw KeyboardInterrupt anywhere."""
        self._in_fit = False
        if self.stop_signal is not None:
            self.save_between_batches(trainer)
        elif isinstance(exception, KeyboardInterrupt):
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


class MlflowRunLogger(Logger):
    """Lightning logger that writes metrics into an already-open MLflow run, in batches."""

    def __init__(self, tracker: Tracker, flush_every: int = 50,
                 logged: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.tracker = tracker
        self.flush_every = flush_every
        self.min_interval_s = SERVER_FLUSH_S if is_server(tracker.tracking_uri) else 0.0
        self._flushed = time.monotonic()
        self._pending: list[Metric] = []
        self._logged = dict(logged or {})  # a resumed run's last step per key: not logged twice

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.tracker.run_id or ""

    @property
    @rank_zero_experiment
    def experiment(self) -> MlflowClient:
        return self.tracker.client

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Params are logged once by the Tracker from the resolved config."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        epoch_end = False
        for key, value in metrics.items():
            if key == "epoch":
                continue
            if (step or 0) <= self._logged.get(key, -1):
                continue
            epoch_end |= not key.endswith("_step")
            self._pending.append(Metric(key, float(value), now, step or 0))
        due = len(self._pending) >= self.flush_every and \
            time.monotonic() - self._flushed >= self.min_interval_s
        if epoch_end or due or len(self._pending) >= 1000:
            self.flush()

    def flush(self) -> None:
        self._flushed = time.monotonic()
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self.tracker.log_batch(metrics=batch)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Flush only: the run's final state is set by Tracker.end."""
        self.flush()
