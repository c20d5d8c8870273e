"""Data sets: one file per source, each a TensorDataModule subclass plus a yaml in conf/dataset/."""

from nnlab.data.base import DataError, DataInfo, TensorDataModule

__all__ = ["DataError", "DataInfo", "TensorDataModule"]
