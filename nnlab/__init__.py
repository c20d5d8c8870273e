"""nnlab: a declarative deep-learning experiment lab (Hydra -> Lightning -> MLflow)."""

__version__ = "0.1.0"

# nnlab.train / compare (nnlab/api/) load on first use: `import nnlab` stays light, because
# every command (`python -m nnlab --help`, a config error) imports this package first and must
# not pay for MLflow, Lightning and torch before it needs them.
_API = ("train", "sweep", "compare")


def __getattr__(name: str):
    if name in _API:
        import nnlab.api  # lazy: see above

        return getattr(nnlab.api, name)
    raise AttributeError(f"module 'nnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


def load_model(run_id: str, tracking_uri: str | None = None, raw_inputs: bool = False):
    """The trained nn.Module of a finished run, from its MLflow artifacts (nnlab.engine)."""
    # lazy: `import nnlab` stays light; the engine loads torch and Lightning
    from nnlab.engine.trained import load_model as load

    return load(run_id, tracking_uri, raw_inputs)
