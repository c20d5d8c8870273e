"""The engine wing: one solo run on Lightning. Building the data module and the model from the
config, the LightningModule, callbacks, the MLflow logger, exact resume, DDP ranks, the per-layer
instruments, and the trained model saved to and loaded from a run."""

from nnlab.engine.build import build, build_datamodule, build_model
from nnlab.engine.solo import make_trainer, train_one
from nnlab.engine.trained import load_model, log_trained_model

__all__ = ["build", "build_datamodule", "build_model", "load_model", "log_trained_model",
           "make_trainer", "train_one"]
