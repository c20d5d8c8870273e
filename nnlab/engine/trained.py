"""The trained model as run artifacts, and `load_model` to get it back on any machine.

At the end of a successful run, `model/state_dict.pt` (the final weights) and `model/info.json`
(the input shape and number of outputs the network was built for, and the inputs' standardisation)
join the run's `config.yaml`. `load_model(run_id)` downloads them (through the tracking server
when there is one), rebuilds the network with nnlab's own builder (`nnlab.engine.build.build_model`)
and loads the weights: no data set, checkpoint or run folder is needed. The `nnlab.checkpoint` tag
still points at the resumable Lightning checkpoint (weights + optimiser + loop state) on the
machine that trained.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnlab.config import MlflowSchema
from nnlab.engine.build import build_model, data_info
from nnlab.errors import StoreError, TrackingError
from nnlab.tracking import store_message
from nnlab.tracking.store import existing_store

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in a load

WEIGHTS = "model/state_dict.pt"
INFO = "model/info.json"


def log_trained_model(tracker: Any, model: nn.Module, datamodule: Any) -> None:
    """Log the final weights and what rebuilding the network needs into the tracker's run."""
    info = data_info(datamodule)
    meta = {"input_shape": list(info.input_shape), "num_outputs": info.num_outputs,
            "task": info.task, "num_params": sum(p.numel() for p in model.parameters()),
            "mean": _listed(getattr(datamodule, "mean", None)),
            "std": _listed(getattr(datamodule, "std", None))}
    with tempfile.TemporaryDirectory() as tmp:
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(weights, Path(tmp) / Path(WEIGHTS).name)
        (Path(tmp) / Path(INFO).name).write_text(json.dumps(meta, indent=1) + "\n")
        tracker.write(tracker.client.log_artifacts, tracker.run_id, tmp, "model")


def _listed(values: torch.Tensor | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values.flatten()]


class Standardize(nn.Module):
    """(x - mean) / std per channel (images) or feature (vectors), as the data module did."""

    def __init__(self, mean: list[float], std: list[float], image: bool) -> None:
        super().__init__()
        shape = (1, -1, 1, 1) if image else (1, -1)
        self.register_buffer("mean", torch.tensor(mean).view(shape))
        self.register_buffer("std", torch.tensor(std).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def default_tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else nnlab's default store (conf/config.yaml)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or MlflowSchema.tracking_uri


def load_model(run_id: str, tracking_uri: str | None = None,
               raw_inputs: bool = False) -> nn.Module:
    """The trained network of run `run_id`, in eval mode on the CPU.

    It takes inputs as nnlab's data module hands them to training (standardised with the train
    split's mean/std); `raw_inputs=True` puts that standardisation in front, for raw inputs.
    The store is `tracking_uri`, else $MLFLOW_TRACKING_URI, else nnlab's default; a server's
    credentials come from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.
    """
    from mlflow.exceptions import MlflowException
    from omegaconf import OmegaConf

    uri = tracking_uri or default_tracking_uri()
    try:
        client = existing_store(uri, "load_model")
    except StoreError as err:
        raise TrackingError(str(err)) from None
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        if err.get_http_status_code() == 404:
            raise TrackingError(f"run {run_id!r} does not exist in {uri}. Give the run id MLflow "
                                "shows (32 hex digits) and the store it lives in.") from None
        raise TrackingError(store_message(uri, err)) from err
    with tempfile.TemporaryDirectory() as tmp:
        try:
            config = client.download_artifacts(run_id, "config.yaml", tmp)
            folder = Path(client.download_artifacts(run_id, "model", tmp))
        except (MlflowException, OSError):
            raise TrackingError(
                f"run {run_id} ({run.info.run_name}, {run.info.status}) has no trained model: "
                f"nnlab logs config.yaml when a run starts and {WEIGHTS} when it ends "
                "successfully, so a run that failed, was stopped, or was logged by an older "
                "nnlab has none. Pick a FINISHED run."
            ) from None
        cfg = OmegaConf.load(config)
        meta = json.loads((folder / Path(INFO).name).read_text())
        weights = torch.load(folder / Path(WEIGHTS).name, map_location="cpu", weights_only=True)
    model = build_model(cfg, meta["input_shape"], meta["num_outputs"])
    model.load_state_dict(weights)
    if raw_inputs and meta.get("mean") is not None:
        model = nn.Sequential(Standardize(meta["mean"], meta["std"],
                                          len(meta["input_shape"]) == 3), model)
    return model.eval()
