"""The tracking wing: MLflow only, no torch and no Lightning. The store (sqlite set-up, locks,
migrations), the Tracker of one run, a sweep's parent run, the run's life (open it, end it in a
final state whatever happens) and every tag name nnlab writes.

A test imports it in a fresh interpreter and checks that neither torch nor Lightning is loaded.
"""

from mlflow.tracking import MlflowClient

from nnlab.errors import StoreError, TrackingError
from nnlab.tracking import tags
from nnlab.tracking.tracker import (
    Tracker,
    flatten,
    is_server,
    open_tracker,
    resume_target,
    store_lock,
    store_message,
)

__all__ = [
    "MlflowClient", "StoreError", "Tracker", "TrackingError", "flatten", "is_server",
    "open_tracker", "resume_target", "store_lock", "store_message", "tags",
]
