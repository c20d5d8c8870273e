"""The packed wing: a sweep's same-shape jobs trained as one vectorised model."""

from nnlab.packed._core import *  # noqa: F403
