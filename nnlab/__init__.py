"""nnlab: a declarative deep-learning experiment lab (Hydra -> Lightning -> MLflow)."""

__version__ = "0.1.0"


def load_model(run_id: str, tracking_uri: str | None = None, raw_inputs: bool = False):
    """The trained nn.Module of a finished run, from its MLflow artifacts (nnlab.engine)."""
    # lazy: `import nnlab` stays light; the engine loads torch and Lightning
    from nnlab.engine.trained import load_model as load

    return load(run_id, tracking_uri, raw_inputs)
