"""The pack as one LightningModule: M members of one architecture, their parameters stacked on a
leading member dimension, one `vmap`-ed `functional_call` running every member on its own batch.
The loss is the sum of the members' losses, so each member's gradient is its own."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from nnlab.engine.instruments import BOUNDARY_GRID, boundary_grid, frame_epochs
from nnlab.packed.batches import PackedBatches
from nnlab.packed.instruments import PackInstruments
from nnlab.packed.optim import packed_optimizer
from nnlab.tracking.life import MONITORED


@dataclass
class StageSums:
    """A stage's per-member sums over an epoch, on the device."""

    loss: torch.Tensor
    correct: torch.Tensor | None = None
    sse: torch.Tensor | None = None
    sae: torch.Tensor | None = None
    y_sum: torch.Tensor | None = None
    y_sq: torch.Tensor | None = None
    count: int = 0


class MaskDropout(nn.Module):
    """Dropout whose mask is given (a buffer per member), drawn outside vmap from the member's
    own generator exactly as torch's CPU dropout draws it: bernoulli(1 - p) / (1 - p)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.register_buffer("mask", torch.ones(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask if self.training else x


class DropoutMasks:
    """Each member's dropout masks for a step, drawn outside vmap from the member's own
    generator in layer order, as its solo forward would draw them (p = 0: no draw)."""

    def __init__(self, template: nn.Module, input_shape: Sequence[int],
                 dropouts: Sequence[float], generators: Sequence[torch.Generator]) -> None:
        self.dropouts, self.generators = list(dropouts), list(generators)
        self.layers: list[tuple[str, tuple[int, ...]]] = []  # (mask buffer, one sample's shape)
        if any(p > 0 for p in self.dropouts):
            self._swap(template, input_shape)

    def _swap(self, template: nn.Module, input_shape: Sequence[int]) -> None:
        """Swap Dropout layers for MaskDropout, noting each one's input shape (one sample)."""
        shapes: dict[str, tuple[int, ...]] = {}
        handles = [module.register_forward_hook(
            lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(inp[0].shape[1:])))
            for name, module in template.named_modules() if isinstance(module, nn.Dropout)]
        with torch.no_grad():  # eval mode: the probe draws nothing
            template.eval()(torch.zeros(1, *input_shape))
        for handle in handles:
            handle.remove()
        for name, shape in shapes.items():
            parent_name, _, child = name.rpartition(".")
            parent = template.get_submodule(parent_name) if parent_name else template
            setattr(parent, child, MaskDropout(0.0))
            self.layers.append((f"{name}.mask", shape))

    def draw(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        masks = {}
        for name, shape in self.layers:
            per_member = []
            for p, gen in zip(self.dropouts, self.generators, strict=True):
                if p > 0:
                    noise = torch.empty((batch, *shape)).bernoulli_(1 - p, generator=gen)
                    per_member.append(noise.div_(1 - p))
                else:
                    per_member.append(torch.ones((batch, *shape)))
            masks[name] = torch.stack(per_member).to(device)
        return masks


class BoundaryFrames:
    """Each member's predicted class over a grid of the input plane at chosen epochs (2-D
    classification data with plots on): the frames of its decision-boundary figures."""

    def __init__(self, size: int) -> None:
        self.grid: tuple[list[float], torch.Tensor] | None = None  # (extent, points)
        self.frames: list[list[tuple[int, torch.Tensor]]] = [[] for _ in range(size)]
        # CPU threads for a frame's grid (every member over the grid: one large forward pass,
        # where a one-thread pack would leave the other cores idle); 0: as the pack trains
        self.threads = 0

    def start(self, train: Any, scores: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """The grid over the training inputs, and the frame at init (not after a resume)."""
        self.grid = boundary_grid(train.x[0]) if isinstance(train, PackedBatches) else None
        if self.grid is not None and not any(self.frames):
            self.take(0, scores)

    def take_due(self, epoch: int, max_epochs: int,
                 scores: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """The frame after `epoch` when the figures show that epoch (and there is a grid)."""
        if self.grid is not None and epoch in frame_epochs(max_epochs):
            self.take(epoch, scores)

    def take(self, epoch: int, scores: Callable[[torch.Tensor], torch.Tensor]) -> None:
        training_threads = torch.get_num_threads()
        torch.set_num_threads(max(training_threads, self.threads))
        try:
            classes = scores(self.grid[1]).argmax(-1)
        finally:
            torch.set_num_threads(training_threads)
        for m, grid in enumerate(classes.to(torch.uint8).cpu()):
            self.frames[m].append((epoch, grid.reshape(BOUNDARY_GRID, BOUNDARY_GRID)))


@dataclass
class MemberHooks:
    """What the runner does when the pack reports a member's values or failure."""

    log: Callable[[int, dict[str, float], int], None] = lambda m, values, step: None
    diverged: Callable[[int, str], None] = lambda m, message: None
    extra: dict[str, Any] = field(default_factory=dict)


def stop_diverged(losses: torch.Tensor, alive: torch.Tensor, step: int,
                  hooks: MemberHooks) -> bool:
    """Stop each live member whose training loss is not finite (one host sync a step, as the solo
    guard) and report it to the runner; whether no member is left training then."""
    finite = torch.isfinite(losses)
    if bool(finite[alive].all()):
        return False
    for m in torch.nonzero(alive & ~finite).flatten().tolist():
        alive[m] = False
        hooks.diverged(m, f"the training loss is {float(losses[m])} at step {step}; the run "
                          "stopped there. Lower optimizer.lr, or clip gradients "
                          "(trainer.gradient_clip_val=1.0).")
    return not bool(alive.any())


class MemberLedger:
    """What each member logs: its sums over an epoch per stage (on the device; their values
    named as LabModule names them, one host sync a stage), the values held for the next write,
    and the last values written (the run's final metrics)."""

    def __init__(self, task: str, size: int, hooks: MemberHooks) -> None:
        self.task, self.size, self.hooks = task, size, hooks
        self.sums: dict[str, StageSums] = {}
        self.held: dict[int, dict[str, float]] = {}
        self.last: dict[int, dict[str, float]] = {m: {} for m in range(size)}

    def count(self, stage: str) -> int:
        return self.sums[stage].count if stage in self.sums else 0

    def add(self, stage: str, losses: torch.Tensor, scores: torch.Tensor,
            y: torch.Tensor) -> None:
        n = y.shape[1]
        sums = self.sums.get(stage)
        if sums is None:
            sums = self.sums[stage] = StageSums(torch.zeros_like(losses))
        sums.loss = sums.loss + losses * n
        sums.count += n
        if self.task == "classification":
            correct = (scores.argmax(dim=-1) == y).sum(dim=1)
            sums.correct = correct if sums.correct is None else sums.correct + correct
            return
        pred = scores.reshape(scores.shape[0], n, -1)
        target = y.to(scores.dtype).reshape_as(pred)
        parts = {"sse": ((pred - target) ** 2).sum(1), "sae": (pred - target).abs().sum(1),
                 "y_sum": target.sum(1), "y_sq": (target**2).sum(1)}
        for key, value in parts.items():
            old = getattr(sums, key)
            setattr(sums, key, value if old is None else old + value)

    def values(self, stage: str) -> list[dict[str, float]]:
        """Each member's epoch metrics for `stage`; the stage's sums start again."""
        sums = self.sums.pop(stage, None)
        if sums is None:
            return [{} for _ in range(self.size)]
        n = sums.count
        columns: dict[str, torch.Tensor] = {"loss": sums.loss / n}
        if self.task == "classification":
            columns["acc"] = sums.correct.float() / n
        else:
            sst = sums.y_sq - sums.y_sum**2 / n
            columns["mse"] = sums.sse.sum(1) / (n * sums.sse.shape[1])
            columns["mae"] = sums.sae.sum(1) / (n * sums.sae.shape[1])
            columns["r2"] = (1 - sums.sse / sst).mean(1)
        table = torch.stack(list(columns.values()), dim=1).tolist()  # one host sync
        suffix = "_epoch" if stage == "train" else ""
        return [{f"{stage}/{k}{suffix}": v for k, v in zip(columns, row, strict=True)}
                for row in table]

    def log_epoch(self, stage: str, step: int, alive: Sequence[bool],
                  extra: dict[str, float] | None = None) -> None:
        """Each live member's epoch values of `stage` (with those held) to its run."""
        for m, values in enumerate(self.values(stage)):
            values.update(self.held.pop(m, {}))
            if alive[m] and values:
                values.update(extra or {})
                self.last[m].update(values)
                self.hooks.log(m, values, step)

    def log_train_epoch(self, step: int, alive: Sequence[bool], seconds: float,
                        measured: Sequence[dict[str, float]] | None) -> None:
        """The training epoch's values with its timing at `step` - 1, then the instruments' epoch
        rows (`measured`) at `step`, where the solo Instruments callback logs them."""
        samples = self.count("train")
        timing = {"time/epoch_s": seconds, "time/samples_per_s": samples / max(seconds, 1e-9)}
        self.log_epoch("train", step - 1, alive, timing)
        if measured:
            self.log_rows(measured, step, alive)

    def hold(self, stage: str) -> None:
        """Keep this stage's epoch values to log with the next stage's (one store write a member
        an epoch: validation ends just before the training epoch does, at the same step)."""
        for m, values in enumerate(self.values(stage)):
            self.held.setdefault(m, {}).update(values)

    def log_steps(self, losses: torch.Tensor, scores: torch.Tensor, y: torch.Tensor, step: int,
                  alive: Sequence[bool]) -> None:
        """Each member's training loss (and accuracy) of this step."""
        values = [losses]
        if self.task == "classification":
            values.append((scores.argmax(dim=-1) == y).float().mean(dim=1))
        names = ["train/loss_step", "train/acc_step"]
        rows = torch.stack(values, dim=1).tolist()
        self.log_rows([dict(zip(names, row, strict=False)) for row in rows], step, alive)

    def log_rows(self, rows: Sequence[dict[str, float]], step: int,
                 alive: Sequence[bool]) -> None:
        """Each member's row of values to its run, for the members still training."""
        for m, (row, live) in enumerate(zip(rows, alive, strict=True)):
            if live:
                self.hooks.log(m, row, step)


class PackedModule(pl.LightningModule):
    """M members of one architecture, parameters stacked on a leading member dimension."""

    def __init__(self, models: Sequence[nn.Module], objective: nn.Module,
                 optimizer_cfgs: Sequence[dict[str, Any]], dropouts: Sequence[float],
                 generators: Sequence[torch.Generator], input_shape: Sequence[int],
                 hooks: MemberHooks | None = None, log_every_n_steps: int = 10,
                 instruments: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.size = len(models)
        template = copy.deepcopy(models[0])
        self.generators = list(generators)
        self.masks = DropoutMasks(template, input_shape, dropouts, self.generators)
        self.template = (template.to("meta"),)  # a tuple: not a submodule, never moved
        params, buffers = stack_module_state(list(models))
        self.names = list(params)
        options = dict(instruments or {})
        self.instruments = PackInstruments.from_options(template, self.names, self.size, options)
        self.plots = self.instruments is not None and bool(options.get("plots", False))
        self.boundary = BoundaryFrames(self.size)
        self.stacked = nn.ParameterList([nn.Parameter(params[n].detach()) for n in self.names])
        for i, name in enumerate(buffers):
            self.register_buffer(f"buffer_{i}", buffers[name])
        self.buffer_names = list(buffers)
        self.objective, self.task = objective, objective.task
        self.optimizer_cfgs = list(optimizer_cfgs)
        self.hooks = hooks or MemberHooks()
        self.ledger = MemberLedger(self.task, self.size, self.hooks)
        self.log_every_n_steps = log_every_n_steps
        self.register_buffer("alive", torch.ones(self.size, dtype=torch.bool), persistent=False)
        self.epoch_start = 0.0

    @property
    def monitor(self) -> str:
        return MONITORED[self.task]

    def _member(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scores = functional_call(self.template[0], (params, buffers), (x,))
        if self.instruments is None or not self.instruments.recording:
            return self.objective(scores, y), scores
        found = self.instruments  # the activation hooks filled these during this call
        stats, fired = tuple(found.captured), tuple(found.fired)
        found.captured, found.fired = [], []
        return self.objective(scores, y), scores, stats, fired

    def _stacked_state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The members' stacked parameters and buffers, under the solo model's names."""
        params = dict(zip(self.names, self.stacked, strict=True))
        buffers = {n: getattr(self, f"buffer_{i}") for i, n in enumerate(self.buffer_names)}
        return params, buffers

    def member_forward(self, x: torch.Tensor, y: torch.Tensor,
                       train: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(losses (M,), scores (M, B, ...)) for stacked batches x (M, B, ...), y (M, B, ...);
        in training the instruments take each member's activation statistics on the way."""
        params, buffers = self._stacked_state()
        self.template[0].train(train)
        if train and self.masks.layers:
            buffers.update(self.masks.draw(x.shape[1], self.device))
        if not train or self.instruments is None:
            return vmap(self._member)(params, buffers, x, y)
        self.instruments.recording = True
        try:
            losses, scores, stats, fired = vmap(self._member)(params, buffers, x, y)
        finally:
            self.instruments.recording = False
        self.instruments.take(stats, fired)
        return losses, scores

    @torch.no_grad()
    def member_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N, ...) every member's scores for the same inputs x (N, ...), in eval mode."""
        params, buffers = self._stacked_state()
        self.template[0].eval()
        return vmap(lambda p, b: functional_call(self.template[0], (p, b), (x,)))(params,
                                                                                 buffers)

    def member_state_dict(self, m: int) -> dict[str, torch.Tensor]:
        """Member m's parameters under the solo model's names."""
        return {n: p[m].detach().clone() for n, p in zip(self.names, self.stacked, strict=True)}

    # -- Lightning hooks -------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        losses, scores = self.member_forward(x, y, train=True)
        detached = losses.detach()
        self.ledger.add("train", detached, scores.detach(), y)
        if stop_diverged(detached, self.alive, self.global_step, self.hooks):
            self.trainer.should_stop = True
        if (self.global_step + 1) % self.log_every_n_steps == 0:
            self.ledger.log_steps(detached, scores.detach(), y, self.global_step,
                                  self.alive.tolist())
        return torch.where(self.alive, losses, torch.zeros_like(losses)).sum()

    def validation_step(self, batch, batch_idx):
        self.ledger.add("val", *self.member_forward(*batch), batch[1])

    def test_step(self, batch, batch_idx):
        self.ledger.add("test", *self.member_forward(*batch), batch[1])

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        step = self.global_step + 1
        rows = self.instruments.step_rows(list(self.stacked), step) if self.instruments else None
        if rows:
            self.ledger.log_rows(rows, step, self.alive.tolist())

    def on_train_start(self) -> None:
        """2-D classification data with plots on: the decision boundary at init."""
        if self.plots and self.task == "classification":
            self.boundary.start(self.trainer.train_dataloader, self._grid_scores)

    def _grid_scores(self, points: torch.Tensor) -> torch.Tensor:
        return self.member_scores(points.to(self.device))

    def on_train_epoch_start(self) -> None:
        self.epoch_start = time.perf_counter()
        if self.instruments is not None:
            self.instruments.reset()

    def on_train_epoch_end(self) -> None:
        seconds = time.perf_counter() - self.epoch_start
        measured = self.instruments.epoch_rows(list(self.stacked)) if self.instruments else None
        self.boundary.take_due(self.current_epoch + 1, int(self.trainer.max_epochs),
                               self._grid_scores)
        self.ledger.log_train_epoch(self.global_step, self.alive.tolist(), seconds, measured)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.ledger.sums.pop("val", None)
            return
        self.ledger.hold("val")

    def on_test_epoch_end(self) -> None:
        self.ledger.log_epoch("test", self.global_step, self.alive.tolist())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return packed_optimizer(self.optimizer_cfgs, list(self.stacked))
