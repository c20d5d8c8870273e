"""The LightningModule: one step function for train/val/test, metrics, optimiser and scheduler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score
from torchmetrics.classification import MulticlassAccuracy

from nnlab.losses import Objective
from nnlab.tracking.life import MONITORED

STAGES = ("train", "val", "test")


def make_metrics(task: str, num_classes: int) -> MetricCollection:
    if task == "classification":
        return MetricCollection(
            {"acc": MulticlassAccuracy(num_classes, average="micro", validate_args=False)}
        )
    return MetricCollection(
        {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()}
    )


def fit_metrics(task: str) -> list[str]:
    """The metrics a run logs while it trains (what a callback's `monitor` may name): each
    validation metric and loss, and the training ones as epoch means (LabModule._log_epoch)."""
    names = [*make_metrics(task, 2).keys(), "loss"]
    return [f"val/{n}" for n in names] + [f"train/{n}_epoch" for n in names]


class LabModule(pl.LightningModule):
    """Wraps any model with a loss, metrics for its task, an optimiser and an optional scheduler."""

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.task = objective.task
        self.metrics = nn.ModuleDict(
            {f"{stage}_metrics": make_metrics(self.task, objective.num_classes) for stage in STAGES}
        )
        # stage -> (sum of loss * batch size on the device, samples) this epoch
        self.loss_sums: dict[str, tuple[torch.Tensor, int]] = {}

    @property
    def monitor(self) -> str:
        """The metric Hydra sweepers optimise (higher is better)."""
        return MONITORED[self.task]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        scores = self.model(x)
        loss = self.objective(scores, y)
        metrics = self.metrics[f"{stage}_metrics"]
        if self.task == "classification":
            metrics.update(scores.detach().argmax(dim=-1), y)
        else:
            metrics.update(scores.detach().view_as(y), y)
        # Lightning's `self.log` costs ~1.5 ms a call, more than a small model's step: the
        # epoch's mean loss is summed here on the device and logged once an epoch.
        total, count = self.loss_sums.get(stage, (0.0, 0))
        self.loss_sums[stage] = (loss.detach() * len(x) + total, count + len(x))
        if stage == "train" and self._logs_this_step():
            self._log_step(loss.detach(), scores.detach(), y)
        return loss

    def _log_step(self, loss: torch.Tensor, scores: torch.Tensor, y: torch.Tensor) -> None:
        """This step's loss (and accuracy) straight to the loggers, with one host sync."""
        values = {"train/loss_step": loss}
        if self.task == "classification":
            values["train/acc_step"] = (scores.argmax(dim=-1) == y).float().mean()
        numbers = torch.stack(list(values.values())).tolist()
        for logger in self.loggers:
            logger.log_metrics(dict(zip(values, numbers, strict=True)), step=self.global_step)
        if self.trainer.progress_bar_callback is not None:
            self.log("train/loss_step", loss, prog_bar=True, logger=False)

    def _logs_this_step(self) -> bool:
        """Whether Lightning hands this training step's values to the loggers: every
        `log_every_n_steps` optimiser steps (Trainer.log_every_n_steps, a public flag)."""
        try:
            trainer = self.trainer
        except RuntimeError:  # a bare call of training_step: nothing would be logged
            return False
        return (self.global_step + 1) % max(trainer.log_every_n_steps, 1) == 0

    def _log_epoch(self, stage: str) -> None:
        metrics = self.metrics[f"{stage}_metrics"]
        values = {f"{stage}/{name}": value for name, value in metrics.compute().items()}
        if stage in self.loss_sums:
            total, count = self.loss_sums.pop(stage)
            values[f"{stage}/loss"] = total / count
        if stage == "train":
            values = {f"{k}_epoch": v for k, v in values.items()}
        self.log_dict(values, prog_bar=stage == "val", sync_dist=self.trainer.world_size > 1)
        metrics.reset()

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._log_epoch("val")
        else:
            self.metrics["val_metrics"].reset()
            self.loss_sums.pop("val", None)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
