"""How much memory training will take, estimated before anything is allocated, and a refusal
when it cannot fit the memory at hand.

A model is measured on PyTorch's meta device: built there, its parameters have shapes but no
storage, and a forward pass of one meta sample gives each layer's output size, so even
`model.hidden=[2000000000]` costs nothing to measure. One formula serves solo runs (nnlab.engine
.build) and packs (nnlab.packed: a member's share): float32 weights, gradients and two optimiser
states per parameter, plus the activations of one batch kept for the backward pass (about three
tensors per layer output).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nnlab.errors import ConfigError

BYTES = 4  # float32
STATES_PER_PARAM = 4  # the weight, its gradient, two optimiser states (Adam; SGD momentum: 1)
TENSORS_PER_OUTPUT = 3  # a layer's output, its gradient, and what autograd keeps for it


@dataclass(frozen=True)
class Footprint:
    """A model's size: its parameters and the output elements of its leaf layers per sample."""

    params: int
    activations: int  # 0 when a forward pass could not be measured

    def training_bytes(self, batch_size: int) -> int:
        """Bytes one training step takes: parameters with their state, a batch's activations."""
        return BYTES * (STATES_PER_PARAM * self.params
                        + TENSORS_PER_OUTPUT * self.activations * batch_size)


def leaf_outputs(model: nn.Module, sample: torch.Tensor) -> int:
    """The output elements of every leaf layer for `sample` (a batch of one)."""
    outputs: list[int] = []
    handles = [m.register_forward_hook(lambda mod, i, out: outputs.append(out.numel()))
               for m in model.modules() if not list(m.children())]
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(sample)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return sum(outputs)


def footprint_of(model: nn.Module, input_shape: Sequence[int]) -> Footprint:
    """The footprint of a model already built (on the CPU or the meta device)."""
    params = sum(p.numel() for p in model.parameters())
    device = next(model.parameters(), torch.empty(0)).device
    try:
        activations = leaf_outputs(model, torch.zeros(1, *input_shape, device=device))
    except Exception:  # noqa: BLE001 - an op the meta device lacks: the parameters still count
        activations = 0
    return Footprint(params, activations)


def footprint(make_model: Callable[[], nn.Module], input_shape: Sequence[int]) -> Footprint:
    """The footprint of the model `make_model` builds, measured on the meta device (no memory)."""
    with torch.device("meta"):
        model = make_model()
    return footprint_of(model, input_shape)


def available_bytes(device: torch.device | str = "cpu") -> int:
    """Memory a run can still take: a CUDA device's free memory, else the machine's available
    RAM (MemAvailable: free plus what the kernel can reclaim)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def size(n: float) -> str:
    """Bytes as a short human number: 1.5 GB, 320 MB."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def refuse_if_too_big(what: str, needed: int, device: torch.device | str, valid: str) -> None:
    """ConfigError naming `what` (the keys and values) and the estimate when `needed` bytes
    exceed the memory `device` has available."""
    free = available_bytes(device)
    if needed > free:
        place = "the GPU has" if torch.device(device).type == "cuda" else "this machine has"
        raise ConfigError(f"{what} is invalid: by an estimate made before allocating anything, "
                          f"it takes about {size(needed)} of memory and {place} {size(free)} "
                          f"available. Valid: {valid}.")
