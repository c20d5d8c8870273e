"""Losses by name, with the target shape each expects.

Models always output raw scores (logits). A loss says which tasks it fits, how to turn the
model's output into its input (softmax, log-softmax, sigmoid or nothing) and whether it takes
class indices or one-hot targets. Add one: an entry in LOSSES and a yaml in conf/loss/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LossSpec:
    build: Callable[..., nn.Module]
    tasks: tuple[str, ...]
    target: str  # "index" (class ids), "onehot" (float 0/1 per class) or "value" (regression)
    # Applied to the logits on classification tasks (never on regression).
    output: Callable[[torch.Tensor], torch.Tensor] = lambda z: z


def _log_softmax(z: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(z, dim=-1)


def _softmax(z: torch.Tensor) -> torch.Tensor:
    return F.softmax(z, dim=-1)


LOSSES: dict[str, LossSpec] = {
    "cross_entropy": LossSpec(nn.CrossEntropyLoss, ("classification",), "index"),
    "cross_entropy_probs": LossSpec(nn.CrossEntropyLoss, ("classification",), "onehot"),
    "nll": LossSpec(nn.NLLLoss, ("classification",), "index", _log_softmax),
    "bce": LossSpec(nn.BCELoss, ("classification",), "onehot", torch.sigmoid),
    "bce_with_logits": LossSpec(nn.BCEWithLogitsLoss, ("classification",), "onehot"),
    "mse": LossSpec(nn.MSELoss, ("classification", "regression"), "onehot", _softmax),
    "mse_logits": LossSpec(nn.MSELoss, ("classification",), "onehot"),
    "l1": LossSpec(nn.L1Loss, ("classification", "regression"), "onehot", _softmax),
    "smooth_l1": LossSpec(nn.SmoothL1Loss, ("classification", "regression"), "onehot", _softmax),
}


class Objective(nn.Module):
    """A loss plus the shaping of outputs and targets it needs for a given task."""

    def __init__(self, name: str, task: str, num_classes: int, **params: Any) -> None:
        super().__init__()
        self.name = name
        self.spec = LOSSES[name]
        self.task = task
        self.num_classes = num_classes
        self.loss = self.spec.build(**params)

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task == "regression":
            return self.loss(scores, target.to(scores.dtype).view_as(scores))
        output = self.spec.output(scores)
        if self.spec.target == "index":
            return self.loss(output, target)
        onehot = F.one_hot(target, self.num_classes).to(output.dtype)
        return self.loss(output, onehot)
