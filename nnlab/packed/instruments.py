"""The per-layer instruments of a solo run (nnlab.engine.instruments), for every member at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nnlab.activations import spec_of


class PackInstruments:
    """nnlab.instruments' per-layer values for every member at once (names and meaning as the
    Instruments callback's): gradient and weight norms from the stacked tensors, activation
    statistics from hooks that run inside vmap and come back as the members' extra outputs."""

    def __init__(self, template: nn.Module, names: Sequence[str], size: int,
                 every_n_steps: int = 50, saturation_threshold: float = 0.01) -> None:
        self.layers: list[str] = []
        for name in names:  # a layer: a module with parameters of its own, in module order
            layer = name.rpartition(".")[0]
            if layer not in self.layers:
                self.layers.append(layer)
        self.layer_of = torch.tensor([self.layers.index(n.rpartition(".")[0]) for n in names])
        self.size, self.every_n_steps, self.threshold = size, every_n_steps, saturation_threshold
        self.acts = [(name, spec) for name, m in template.named_modules()
                     if (spec := spec_of(m)) is not None and spec.module is not nn.Identity]
        self.recording = False
        self.captured: list[torch.Tensor] = []
        self.fired: list[torch.Tensor] = []
        for name, spec in self.acts:
            template.get_submodule(name).register_forward_hook(self._hook(spec))
        self.reset()

    @classmethod
    def from_options(cls, template: nn.Module, names: Sequence[str], size: int,
                     options: dict[str, Any]) -> PackInstruments | None:
        """The pack's instruments as the config's `instruments` node asks (None: off)."""
        if not options.get("enabled", False):
            return None
        return cls(template, names, size, int(options.get("every_n_steps", 50)),
                   float(options.get("saturation_threshold", 0.01)))

    def _hook(self, spec: Any) -> Callable[..., None]:
        def record(module: nn.Module, inputs: Any, out: torch.Tensor) -> None:
            if not (self.recording and module.training):
                return
            y = out.detach().float()  # one member's output (inside vmap)
            saturated = ((spec.saturation(y) < self.threshold).sum().float()
                         if spec.saturation is not None else y.sum() * 0)
            self.captured.append(torch.stack([y.sum(), (y * y).sum(), y.sum() * 0 + y.numel(),
                                              saturated]))
            if spec.dies:
                self.fired.append((y > 0).any(dim=0))
        return record

    def reset(self) -> None:
        """A new epoch: clear the running sums."""
        self.grad_sum: torch.Tensor | None = None  # (layers, M)
        self.grad_steps = 0
        self.act_sums: torch.Tensor | None = None  # (acts, M, 4): sum, sum of squares, n, sat.
        self.act_last: torch.Tensor | None = None
        self.alive_units: list[torch.Tensor] | None = None  # per dying act: (M, units...)

    def state(self) -> dict[str, Any]:
        """The epoch's running sums (on the CPU), for a pack checkpoint."""
        def cpu(value: Any) -> Any:
            if isinstance(value, list):
                return [cpu(v) for v in value]
            return value.detach().cpu().clone() if isinstance(value, torch.Tensor) else value

        return {key: cpu(getattr(self, key)) for key in
                ("grad_sum", "grad_steps", "act_sums", "act_last", "alive_units")}

    def load(self, state: dict[str, Any], device: torch.device) -> None:
        def to(value: Any) -> Any:
            if isinstance(value, list):
                return [to(v) for v in value]
            return value.to(device) if isinstance(value, torch.Tensor) else value

        for key, value in state.items():
            setattr(self, key, to(value))

    def take(self, stats: Sequence[torch.Tensor], fired: Sequence[torch.Tensor]) -> None:
        """One training step's activation statistics, (M, 4) per act and (M, units...) fired."""
        if not stats:
            return
        batch = torch.stack(list(stats))  # (acts, M, 4)
        self.act_last = batch
        self.act_sums = batch if self.act_sums is None else self.act_sums + batch
        if fired:
            self.alive_units = list(fired) if self.alive_units is None else [
                a | f for a, f in zip(self.alive_units, fired, strict=True)]

    def layer_norms(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """(layers, M): each member's L2 norm per layer over the stacked tensors (M, ...)."""
        squares = torch.stack([t.detach().flatten(1).float().pow(2).sum(1) for t in tensors])
        found = torch.zeros(len(self.layers), self.size, device=squares.device)
        return found.index_add_(0, self.layer_of.to(squares.device), squares).sqrt()

    def step_grads(self, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        norms = self.layer_norms(grads)
        self.grad_sum = norms if self.grad_sum is None else self.grad_sum + norms
        self.grad_steps += 1
        return norms

    def step_rows(self, stacked: Sequence[torch.Tensor], step: int) -> list[dict] | None:
        """After optimiser step `step`: take the gradient norms; every `every_n_steps` steps,
        each member's `<name>_step` values."""
        norms = self.step_grads([p.grad if p.grad is not None else torch.zeros_like(p)
                                 for p in stacked])
        if step % self.every_n_steps:
            return None
        return self.values(norms, stacked, epoch=False, suffix="_step")

    def epoch_rows(self, stacked: Sequence[torch.Tensor]) -> list[dict] | None:
        """Each member's epoch values (mean gradient norms over the epoch's steps)."""
        if not self.grad_steps:
            return None
        return self.values(self.grad_sum / self.grad_steps, stacked, epoch=True)

    def values(self, grads: torch.Tensor, weights: Sequence[torch.Tensor],
               epoch: bool, suffix: str = "") -> list[dict[str, float]]:
        """Each member's metrics (grad_norm/<layer>, ..., dead/<layer>), one host sync."""
        names, columns = [], []
        for i, layer in enumerate(self.layers):
            names.append(f"grad_norm/{layer}")
            columns.append(grads[i])
        for i, norm in enumerate(self.layer_norms(weights)):
            names.append(f"weight_norm/{self.layers[i]}")
            columns.append(norm)
        sums = self.act_sums if epoch else self.act_last
        dying = 0
        for a, (name, spec) in enumerate(self.acts):
            if sums is not None:
                mean = sums[a, :, 0] / sums[a, :, 2]
                std = (sums[a, :, 1] / sums[a, :, 2] - mean * mean).clamp_min(0).sqrt()
                names += [f"act_mean/{name}", f"act_std/{name}"]
                columns += [mean, std]
                if spec.saturation is not None:
                    names.append(f"saturated/{name}")
                    columns.append(sums[a, :, 3] / sums[a, :, 2])
            if spec.dies:
                if epoch and self.alive_units is not None:
                    alive = self.alive_units[dying].flatten(1).float().mean(1)
                    names.append(f"dead/{name}")
                    columns.append(1 - alive)
                dying += 1
        table = torch.stack(columns, dim=1).double().cpu().tolist()
        return [{f"{k}{suffix}": v for k, v in zip(names, row, strict=True)} for row in table]
