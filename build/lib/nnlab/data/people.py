"""The courses' 4-person table: weight and height -> sex, for the 2-2-1 network by hand."""

from __future__ import annotations

import torch

from nnlab.data.base import Split, TensorBatches, TensorDataModule

# name: (weight lb, height in, 1 = female), as in the course ("an introduction to neural networks")
PEOPLE = {"Alice": (133, 65, 1), "Bob": (160, 72, 0), "Charlie": (152, 70, 0),
          "Diana": (120, 60, 1)}
NEW_PEOPLE = {"Emily": (128, 63, 1), "Frank": (155, 68, 0)}
SHIFT = (135.0, 66.0)  # the course subtracts these from weight and height


def _table(rows: dict[str, tuple[int, int, int]]) -> Split:
    x = torch.tensor([[w - SHIFT[0], h - SHIFT[1]] for w, h, _ in rows.values()])
    y = torch.tensor([[float(sex)] for _, _, sex in rows.values()])
    return Split(x, y)


class GenderDataModule(TensorDataModule):
    """Train on the 4 people in the course's order; test on the 2 new ones.

    The course has no validation set, so `val` is the training table itself (no sample is
    split off), nothing is normalised beyond the course's fixed shift, and batches keep the
    table's order unless `shuffle` is set. A regression task: MSE on a sigmoid output.
    """

    name = "gender"
    task = "regression"
    is_image = False

    def __init__(self, shuffle: bool = False, **kwargs: object) -> None:
        kwargs["normalize"] = False
        super().__init__(**kwargs)
        self.shuffle = shuffle

    def load(self) -> tuple[Split, Split]:
        return _table(PEOPLE), _table(NEW_PEOPLE)

    def prepare(self) -> None:
        if self.splits:
            return
        train, test = self.load()
        self.splits = {"train": train, "val": Split(train.x, train.y), "test": test}

    def train_dataloader(self) -> TensorBatches:
        generator = torch.Generator().manual_seed(self.seed)
        train = self.splits["train"]
        return TensorBatches(train.x, train.y, self.batch_size, self.shuffle, generator)
