"""A Lightning callback that presses Ctrl-C: SIGINT to this very process at a given step, as a
terminal or a Jupyter kernel's interrupt delivers it (used by tests/test_api.py)."""

from __future__ import annotations

import os
import signal
from typing import Any

from lightning.pytorch.callbacks import Callback


class SigintAt(Callback):
    def __init__(self, step: int = 3) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)
