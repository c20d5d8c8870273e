"""Kill and resume of a pack: one checkpoint that the members' runs point to, holding the stacked
weights and optimiser state and everything a resumed pack needs to log what the uninterrupted
one logs."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from mlflow.entities import Metric

from nnlab.engine.callbacks import Checkpointer
from nnlab.packed.batches import PackedBatches
from nnlab.packed.members import Member
from nnlab.packed.module import StageSums

# A pack also saves its checkpoint at an epoch's start only this long after its last save (with
# short epochs, saving each one was most of the fit); checkpoint.every_n_steps and a stop still
# save at once.
PACK_SAVE_S = 30.0
PACK_STATE = "nnlab_pack"  # a pack checkpoint's own part, beside Lightning's


@dataclass
class PackResume:
    """A killed pack to continue: its checkpoint, and each member's MLflow run in pack order."""

    checkpoint: Path
    runs: list[Any]


def pack_checkpoint(members: Sequence[Member], pack_id: str) -> Path:
    """Where a pack keeps its checkpoint: `<sweep folder>/<pack>/pack.ckpt`."""
    return (members[0].output_dir.parent / pack_id.rsplit("/", 1)[-1] / "pack.ckpt").resolve()


def pack_run_ids(path: Path) -> list[str | None]:
    """The member runs a pack checkpoint holds, in pack order."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    return list(state[PACK_STATE]["run_ids"])


def pack_unwritten(path: Path) -> dict[str, list[Metric]]:
    """Per member run, the metric values a pack checkpoint holds that were on their way to the
    store when it was saved (written again on resume; MLflow skips those it holds)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    return {run_id: [Metric(*value) for value in values]
            for run_id, values in state[PACK_STATE].get("unwritten", {}).items()}


class PackCheckpointer(Checkpointer):
    """The solo Checkpointer's saves (every `every_n_steps` optimiser steps, at an epoch's first
    batch once PACK_SAVE_S have passed, at the end, and when SIGTERM / Ctrl-C asks to stop, at a
    batch boundary), for a pack: each member's logger is flushed first, and the checkpoint also
    holds the member runs, the values still on their way to the store (sent to a metric
    writer), their `alive` flags, the epoch sums and held values, and each member's dropout and
    shuffling streams, so a resumed pack logs what the uninterrupted one logs."""

    def __init__(self, path: Path, every_n_steps: int, members: Sequence[Member],
                 dead: Sequence[int] = ()) -> None:
        super().__init__(path, every_n_steps, epoch_save_s=PACK_SAVE_S)
        self.members, self.dead = members, list(dead)
        self.train: PackedBatches | None = None
        self._loaded: dict[str, Any] | None = None

    def save(self, trainer: pl.Trainer) -> None:
        for member in self.members:
            if member.open:
                member.logger.flush()
        super().save(trainer)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        checkpoint[PACK_STATE] = {
            "run_ids": [m.tracker.run_id if m.tracker else None for m in self.members],
            "unwritten": {m.tracker.run_id: [(v.key, v.value, v.timestamp, v.step)
                                             for v in m.logger.unwritten()]
                          for m in self.members if m.open},
            "alive": pl_module.alive.cpu().clone(),
            "sums": {stage: {k: v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v
                             for k, v in vars(sums).items()}
                     for stage, sums in pl_module.ledger.sums.items()},
            "held": copy.deepcopy(pl_module.ledger.held),
            "last": copy.deepcopy(pl_module.ledger.last),
            "dropout": [g.get_state() for g in pl_module.generators],
            "shuffle": self.train.state(done, trainer.num_training_batches),
            "instruments": (pl_module.instruments.state()
                            if pl_module.instruments is not None else None),
            "frames": copy.deepcopy(pl_module.boundary.frames),
        }

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._loaded = checkpoint[PACK_STATE]
        self.train.resume = self._loaded["shuffle"]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        pl_module.epoch_start = time.perf_counter()  # a resumed epoch has no epoch start
        if self._loaded is None:
            return
        state, self._loaded = self._loaded, None
        pl_module.alive.copy_(state["alive"])
        pl_module.alive[self.dead] = False  # ended FAILED before the kill: not trained again
        pl_module.ledger.sums = {stage: StageSums(**{
            k: v.to(pl_module.device) if isinstance(v, torch.Tensor) else v
            for k, v in sums.items()}) for stage, sums in state["sums"].items()}
        pl_module.ledger.held, pl_module.ledger.last = state["held"], state["last"]
        for gen, gen_state in zip(pl_module.generators, state["dropout"], strict=True):
            gen.set_state(gen_state)
        if pl_module.instruments is not None and state.get("instruments"):
            pl_module.instruments.load(state["instruments"], pl_module.device)
        pl_module.boundary.frames = state.get("frames") or pl_module.boundary.frames
