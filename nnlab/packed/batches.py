"""The members' batches, stacked: each member sees its solo run's batches in its solo order."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from nnlab.data.base import TensorBatches


class PackedBatches:
    """Each member's batches of its own split, stacked to (M, B, ...) per step.

    Shuffled splits draw each member's order with that member's own `TensorBatches` and
    generator (the one its solo run's data module makes), so every member sees its solo run's
    batches in its solo run's order. Identical splits (members with the same seed) are kept once.
    `epoch_states` are the shuffling generators' states at the start of the current epoch;
    `resume` (such states, and the batches of that epoch already trained) makes the next epoch
    repeat that epoch's order from the batch after those.
    """

    def __init__(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], batch_size: int,
                 generators: Sequence[torch.Generator] | None = None) -> None:
        unique: list[int] = []
        which = []
        for i, x in enumerate(xs):
            same = next((u for u in unique if xs[u] is x or (
                xs[u].shape == x.shape and torch.equal(xs[u], x) and torch.equal(ys[u], ys[i]))),
                None)
            if same is None:
                unique.append(i)
                same = i
            which.append(unique.index(same))
        self.x = torch.stack([xs[u] for u in unique])
        self.y = torch.stack([ys[u] for u in unique])
        self.which = torch.tensor(which)
        self.n, self.batch_size = xs[0].shape[0], batch_size
        self.generators = generators
        self.epoch_states: list[torch.Tensor] = []
        self.resume: tuple[list[torch.Tensor], int] | None = None

    def state(self, done: int, batches: int) -> tuple[list[torch.Tensor], int]:
        """Where training is in the data, `done` of this epoch's `batches` trained: what `resume`
        takes (after the epoch's last batch: the next epoch's start, as the generators are)."""
        if done >= batches or not self.epoch_states:
            return [g.get_state() for g in self.generators or []], 0
        return list(self.epoch_states), done

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def to(self, device: torch.device) -> PackedBatches:
        self.x, self.y, self.which = self.x.to(device), self.y.to(device), self.which.to(device)
        return self

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.generators is None:
            for start in range(0, self.n, self.batch_size):
                end = start + self.batch_size
                yield self.x[self.which, start:end], self.y[self.which, start:end]
            return
        skip = 0
        if self.resume is not None:
            states, skip = self.resume
            self.resume = None
            for gen, state in zip(self.generators, states, strict=True):
                gen.set_state(state)
        self.epoch_states = [g.get_state() for g in self.generators]
        index = torch.arange(self.n)
        orders = [iter(TensorBatches(index, index, self.batch_size, True, g))
                  for g in self.generators]
        rows = self.which.view(-1, 1)
        for i in range(len(self)):
            idx = [next(order)[0] for order in orders]  # drawn whether trained or skipped
            if i >= skip:
                idx = torch.stack(idx).to(self.x.device)
                yield self.x[rows, idx], self.y[rows, idx]
        for order in orders:  # each member's end-of-epoch draw, as its solo loader makes it
            next(order, None)
