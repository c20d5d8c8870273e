"""What a job trains, as a short hash: the key sweep.resume=true looks earlier runs up by."""

from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

# Keys that say where a run goes or how it is shown, not what it trains: left out of the hash.
VOLATILE_KEYS = ("resume", "sweep", "mlflow", "trainer.enable_progress_bar")


def config_hash(cfg: DictConfig) -> str:
    """What a job trains, as a short hash: the resolved config minus VOLATILE_KEYS."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in VOLATILE_KEYS:
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    text = json.dumps(tree, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
