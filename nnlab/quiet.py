"""Silence what a user cannot act on: named warnings of our dependencies, MLflow's INFO lines.

Each filter names the message and the module it comes from; nothing else is hidden.
"""

from __future__ import annotations

import logging
import os
import warnings

# (message regex, module regex): warnings a default run would print that a user cannot act on.
IGNORED_WARNINGS = [
    # Lightning's _pytree on torch >= 2.8: its own use of a private torch helper
    (r".*isinstance\(treespec, LeafSpec\).*", r"lightning.*"),
    (r".*`torch.utils._pytree.*", r"lightning.*"),
    # nnlab's in-memory batches are iterables without a sampler: resumed by nnlab itself
    (r".*does not have many workers.*", r"lightning.*"),
    (r".*Total length of `.*` across ranks is zero.*", r"lightning.*"),
    # MLflow's own notice about its file store / pydantic internals
    (r".*Filesystem tracking backend.*", r"mlflow.*"),
    # a short run has fewer batches than log_every_n_steps: nnlab logs every epoch's means anyway
    (r".*is smaller than the logging interval.*", r"lightning.*"),
    # a mid-epoch resume: nnlab's data module restores the order itself (TensorDataModule)
    (r".*dataloader is\s+not resumable.*", r"lightning.*"),
    # Lightning's hint on machines where SLURM is installed but this run is not a SLURM job
    (r".*The `srun` command is available on your system but is not used.*", r"lightning.*"),
    # MLflow's GenAI modules import tqdm.auto, which in a Jupyter kernel without ipywidgets asks
    # for them; nnlab's notebook bar needs none
    (r".*IProgress not found.*", r"tqdm.*"),
]
# Lightning's INFO lines (GPU available, tips, "`Trainer.fit` stopped") are shown by nnlab's
# own summary instead.
QUIET_LOGGERS = ("mlflow", "alembic", "lightning.pytorch", "lightning.fabric")
# urllib3's "Retrying (Retry(total=...))" lines while MLflow retries a server that does not
# answer: nnlab's own paragraph says what happened once the retries are spent.
SILENT_LOGGERS = ("urllib3.connectionpool",)


def quiet() -> None:
    """Install the filters and lower MLflow's and alembic's loggers to WARNING."""
    for message, module in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in SILENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow sets its level on import
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
