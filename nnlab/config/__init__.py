"""The config wing: what a config may say (schema, ranges), the checks run on it before anything
is built or opened, the wording of config errors, and the hash a job's config is known by.

Torch-free on purpose: `--help` and a config error return before torch is loaded.
"""

from nnlab.config.checks import did_you_mean, fail, group_signature, signature, validate
from nnlab.config.hashing import config_hash
from nnlab.config.schema import (
    GROUPS,
    LIGHTNING_GROUPS,
    RANGES,
    TOP_LEVEL,
    MlflowSchema,
    NnlabSchema,
    group_params,
    plain,
    register_configs,
)
from nnlab.errors import ConfigError

__all__ = [
    "GROUPS", "LIGHTNING_GROUPS", "RANGES", "TOP_LEVEL", "ConfigError", "MlflowSchema",
    "NnlabSchema", "config_hash", "did_you_mean", "fail", "group_params", "group_signature",
    "plain", "register_configs", "signature", "validate",
]
