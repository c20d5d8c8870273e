"""The callbacks nnlab adds to every run: checkpoints (for resume and after Ctrl-C), the stop at
the first non-finite loss, and the epoch timer. (The instruments live in instruments.py.)"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ProgressBar, RichProgressBar

from nnlab.errors import Diverged


class Checkpointer(Callback):
    """Keeps one `last.ckpt`, saved between batches: once `every_n_steps` optimiser steps (0: never
    mid-epoch) have passed since the last save, at the first batch of each epoch, at the end of
    training and when training is interrupted. Between batches, every metric of the steps before
    is already logged; the logger is flushed before each save, so MLflow holds everything up to
    the checkpoint, and a resumed run logs from there. The file is replaced atomically, so a kill
    mid-save leaves the previous one whole."""

    def __init__(self, path: Path, every_n_steps: int, epoch_save_s: float = 0.0) -> None:
        """`epoch_save_s`: save at an epoch's first batch only once this many seconds have
        passed since the last save (0: every epoch)."""
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.epoch_save_s = epoch_save_s
        self._saved: tuple[int, int] | None = None  # (global step, epoch) of the last save
        self._saved_at = time.monotonic()
        self._in_fit = False
        self.stop_signal: int | None = None

    def request_stop(self, signum: int, frame: Any) -> None:
        """SIGINT/SIGTERM handler: during training, stop at the next batch boundary (where the
        checkpoint is consistent); otherwise, or on a second signal, stop now."""
        if self._in_fit and self.stop_signal is None:
            self.stop_signal = signum
            return
        self.stop_signal = self.stop_signal or signum  # kept, should the raise be swallowed
        raise KeyboardInterrupt(f"signal {signum}")

    def raise_if_stopped(self) -> None:
        """After training: a stop asked for since (Ctrl-C, SIGTERM) ends the run KILLED, also
        when the KeyboardInterrupt it raised was swallowed (e.g. inside a finaliser)."""
        if self.stop_signal is not None:
            raise KeyboardInterrupt(f"signal {self.stop_signal}")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """SIGTERM stops like Ctrl-C, at the next batch boundary: Lightning's own SIGTERM handler
        (installed by the Trainer) would stop mid-validation, losing that epoch's metrics."""
        self._in_fit = True
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)  # the Trainer restores it at exit

    def save(self, trainer: pl.Trainer) -> None:
        for logger in trainer.loggers:
            getattr(logger, "flush", lambda: None)()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:  # the one rank that wrote it (all ranks call save_checkpoint)
            os.replace(tmp, self.path)
        self._saved = (trainer.global_step, trainer.current_epoch)
        self._saved_at = time.monotonic()

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        stop = self.stop_signal is not None
        if trainer.world_size > 1:  # DDP: every rank stops at the same batch when one is asked
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
            self.stop_signal = self.stop_signal or (signal.SIGTERM if stop else None)
        if stop:
            raise KeyboardInterrupt(f"signal {self.stop_signal}")  # saved in on_exception
        step, epoch = trainer.global_step, trainer.current_epoch
        if self._saved is None:  # the first batch of this process: nothing new to keep
            self._saved = (step, epoch)
            return
        due = self.every_n_steps and step - self._saved[0] >= self.every_n_steps
        new_epoch = epoch != self._saved[1] and \
            time.monotonic() - self._saved_at >= self.epoch_save_s
        if due or new_epoch:
            self.save(trainer)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """Lightning restores its logging step count plus one, right for a checkpoint taken in
        on_train_batch_end only; not for ours, taken once the next batch is fetched (or in a
        raw interrupt mid-step). After a batch fully ended (Lightning's own SIGTERM stop) it
        adds nothing. The count has no public setter, hence the checkpoint edit."""
        p = trainer.fit_loop.epoch_loop.batch_progress.total
        lightning_adds_one = not (p.ready == p.started == p.processed == p.completed)
        in_batch_end = p.completed == p.processed - 1
        if lightning_adds_one and not in_batch_end:
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
        if self.stop_signal is not None or isinstance(exception, KeyboardInterrupt):
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
        if trainer.world_size > 1:  # every rank stops together when any rank's loss blew up
            finite = trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss).all()))
            self._check(torch.tensor(finite), loss, step)
            return
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


class EpochTimer(Callback):
    """Logs epoch wall seconds and training samples per second (always on)."""

    def on_train_start(self, trainer, pl_module) -> None:  # a resumed epoch has no epoch start
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start, self.samples = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += len(batch[0])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self.start
        values = {"time/epoch_s": seconds, "time/samples_per_s": self.samples / max(seconds, 1e-9)}
        for logger in trainer.loggers:  # this process's own clock: no reduction across ranks
            logger.log_metrics(values, step=trainer.global_step)


class CompactProgressBar(RichProgressBar):
    """Lightning's rich progress bar with the few numbers a person watches (the training loss,
    the monitored validation metric), so it fits a 100-column terminal; no `v_num`."""

    SHOWN = {"train/loss_step": "loss", "val/acc": "val/acc", "val/r2": "val/r2"}

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        found = super().get_metrics(trainer, pl_module)
        return {short: found[key] for key, short in self.SHOWN.items() if key in found}


def in_jupyter() -> bool:
    """Whether this process is a Jupyter kernel (where a terminal's live bar cannot redraw)."""
    shell = sys.modules.get("IPython")
    ipython = shell.get_ipython() if shell is not None else None
    return ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell"


class NotebookProgressBar(ProgressBar):
    """One bar for the whole run, for Jupyter: every training batch of every epoch, with the
    loss and the monitored metric. tqdm's notebook widget where ipywidgets is installed, else
    its text bar, which Jupyter redraws in place (both print nothing for validation/test)."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self.bar: Any = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        try:
            from tqdm.notebook import IProgress, tqdm
            if IProgress is None:  # no ipywidgets: the text bar
                raise ImportError
        except ImportError:
            from tqdm.std import tqdm
        per_epoch = trainer.num_training_batches
        total = per_epoch * trainer.max_epochs \
            if math.isfinite(per_epoch) and (trainer.max_epochs or -1) > 0 else None
        if total is not None and trainer.max_steps > 0:
            total = min(total, trainer.max_steps * trainer.accumulate_grad_batches)
        self.bar = tqdm(total=total, desc="training", unit="batch", disable=not self._enabled,
                        mininterval=0.5, dynamic_ncols=True, leave=True)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        done = trainer.current_epoch * trainer.num_training_batches + batch_idx + 1
        if self.bar is not None and done > self.bar.n:
            self.bar.set_postfix(self._shown(trainer, pl_module), refresh=False)
            self.bar.update(done - self.bar.n)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.bar is not None and not trainer.sanity_checking:
            self.bar.set_postfix(self._shown(trainer, pl_module))

    def _shown(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, str]:
        found = self.get_metrics(trainer, pl_module)
        return {short: f"{float(found[key]):.4f}" for key, short in
                CompactProgressBar.SHOWN.items() if key in found}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress_bar() -> ProgressBar:
    """A run's progress bar: one tqdm bar in a Jupyter kernel, else the compact rich bar."""
    return NotebookProgressBar() if in_jupyter() else CompactProgressBar()
