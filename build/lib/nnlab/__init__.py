"""nnlab: a declarative deep-learning experiment lab (Hydra -> Lightning -> MLflow)."""

__version__ = "0.1.0"
