"""Data sets: one file per source, each a TensorDataModule subclass plus a yaml in conf/dataset/."""

from nnlab.data.base import DataInfo, TensorDataModule
from nnlab.errors import DataError

__all__ = ["DataError", "DataInfo", "TensorDataModule"]
