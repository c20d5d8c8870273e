"""Packed training: a sweep's same-shape jobs trained together, in one Lightning fit.

Each member is built exactly as its solo run builds it (same seed, same builders, so the same init
draw), then the members' parameters are stacked (`torch.func.stack_module_state`) and one
`vmap`-ed `functional_call` runs every member on its own batch (its own split and shuffle order,
drawn from the generator its solo run would use). The loss is the sum of the members' losses,
so each member's gradient is its own; `PackedSGD` / `PackedAdam` apply torch.optim's update
formulas with per-member hyper-parameters. Every member logs into its own MLflow run.

What packs: jobs whose resolved configs differ only in `PACKABLE` keys. `unpackable` names why a
config cannot pack at all.

Kill and resume: `run_pack` keeps a pack checkpoint (PackCheckpointer) that the members' runs
point to; `sweep.resume=true` continues a killed pack from it in the same runs (the packed
launcher's `_previous`).
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from nnlab.engine.callbacks import Checkpointer
from nnlab.tracking import tags

# Keys whose values may differ inside a pack (dotted paths of the resolved config).
PACKABLE = ("seed", "init", "optimizer.lr", "optimizer.momentum", "optimizer.weight_decay",
            "model.dropout", "mlflow.run_name")
# Optimisers with a vectorised twin here, and the keys each understands.
OPTIMIZER_KEYS = {
    "torch.optim.SGD": {"lr", "momentum", "dampening", "weight_decay", "nesterov"},
    "torch.optim.Adam": {"lr", "betas", "eps", "weight_decay"},
    "torch.optim.AdamW": {"lr", "betas", "eps", "weight_decay"},
}
PACK_TAG = tags.PACK
# A member's epoch values reach the store at most this often (and at every checkpoint save and
# at the end): written at once, 16 members' per-epoch writes were 40% of a small pack's time.
PACK_FLUSH_S = 2.0
# A pack also saves its checkpoint at an epoch's start only this long after its last save (with
# short epochs, saving each one was most of the fit); checkpoint.every_n_steps and a stop still
# save at once.
PACK_SAVE_S = 30.0
# torch.optim flags that change nothing a pack computes while they keep these values (the
# defaults nnlab's validation writes into every optimizer node)
OFF_BY_DEFAULT = {"maximize": False, "differentiable": False, "foreach": None, "fused": None,
                  "capturable": False, "amsgrad": False, "decoupled_weight_decay": False}


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def unpackable(cfg: DictConfig) -> str | None:
    """Why this config cannot train in a pack (None: it can)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    if tree.get("resume"):
        return "resume= continues one run from its checkpoint"
    if int(_get(tree, "accelerator.devices") or 1) > 1:
        return "accelerator.devices > 1 trains one job over several devices (DDP); a pack uses one"
    if _get(tree, "trainer.gradient_clip_val"):
        return "gradient clipping (trainer.gradient_clip_val) is not vectorised"
    if _get(tree, "scheduler._target_"):
        return f"scheduler={_get(tree, 'scheduler.name')} is not vectorised"
    target = _get(tree, "optimizer._target_")
    if target not in OPTIMIZER_KEYS:
        return (f"optimizer={_get(tree, 'optimizer.name')} has no vectorised version "
                "(sgd, sgd_plain, adam, adamw have)")
    extra = {key for key, value in tree["optimizer"].items()
             if key not in OPTIMIZER_KEYS[target] | {"_target_", "_partial_", "name"}
             and OFF_BY_DEFAULT.get(key, object()) != value}
    if extra:
        return f"optimizer keys {sorted(extra)} are not vectorised"
    if _get(tree, "dataset.crop_padding") or _get(tree, "dataset.hflip"):
        return "training augmentation draws from the global random stream"
    return None


def pack_key(cfg: DictConfig) -> str:
    """Equal for configs that differ only in PACKABLE keys (dropout: only in its rate)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    dropout = _get(tree, "model.dropout") or 0.0
    for dotted in PACKABLE:
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    tree["_dropout_on"] = dropout > 0  # models build Dropout layers only for a rate > 0
    return json.dumps(tree, sort_keys=True, default=str)


def model_unpackable(model: nn.Module, device: torch.device, pack_convs_on_cpu: bool) -> str | None:
    """Why this model cannot (or should not) pack."""
    from torch.nn.modules.batchnorm import _NormBase

    if any(isinstance(m, _NormBase) for m in model.modules()):
        return "BatchNorm layers keep batch statistics that vmap cannot stack"
    convs = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    if convs and device.type == "cpu" and not pack_convs_on_cpu:
        return ("convolutions are compute-bound on a CPU: a pack is no faster than solo runs "
                "(bench/results.md; hydra.launcher.pack_convs_on_cpu=true packs them anyway)")
    return None


# -- vectorised optimisers --------------------------------------------------------------------


def _per_member(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """(M,) values shaped (M, 1, ..., 1) to broadcast over a stacked parameter."""
    t = torch.tensor(list(values), dtype=like.dtype, device=like.device)
    return t.view(-1, *([1] * (like.dim() - 1)))


def _add(a: torch.Tensor, b: torch.Tensor, alphas: Sequence[float],
         out: torch.Tensor | None = None) -> torch.Tensor:
    """a + alpha_m * b per member m, with torch's own `add(alpha=)` kernel (its rounding, fused
    or not, is the solo optimiser's): one call when the members share alpha, else one per
    member. Written into `out` when given."""
    if len(set(alphas)) == 1:
        return a.add(b, alpha=alphas[0]) if out is None else out.copy_(a.add(b, alpha=alphas[0]))
    out = torch.empty_like(a) if out is None else out
    for m, alpha in enumerate(alphas):
        torch.add(a[m], b[m], alpha=alpha, out=out[m])
    return out


class _PackedOptimizer(torch.optim.Optimizer):
    """torch.optim's step protocol (closure under grad); subclasses apply their update to every
    parameter with a gradient."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        raise NotImplementedError


class PackedSGD(_PackedOptimizer):
    """torch.optim.SGD's update (weight decay, momentum, dampening, nesterov) on stacked
    parameters, with per-member lr, momentum and weight decay, op for op as torch's."""

    def __init__(self, params: Sequence[torch.Tensor], lr: Sequence[float],
                 momentum: Sequence[float], weight_decay: Sequence[float],
                 dampening: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(list(params), {"dampening": dampening, "nesterov": nesterov})
        self.lr, self.momentum, self.weight_decay = list(lr), list(momentum), list(weight_decay)

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        grad = p.grad
        if any(self.weight_decay):
            grad = _add(grad, p, self.weight_decay)
        if any(self.momentum):
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.clone()
            else:
                buf.mul_(_per_member(self.momentum, p)).add_(grad, alpha=1 - group["dampening"])
            grad = _add(grad, buf, self.momentum) if group["nesterov"] else buf
        _add(p, grad, [-lr for lr in self.lr], out=p)


class PackedAdam(_PackedOptimizer):
    """torch.optim.Adam's (or AdamW's, `decoupled`) update on stacked parameters, with
    per-member lr and weight decay, op for op as torch's."""

    def __init__(self, params: Sequence[torch.Tensor], lr: Sequence[float],
                 weight_decay: Sequence[float], betas: Sequence[float] = (0.9, 0.999),
                 eps: float = 1e-8, decoupled: bool = False) -> None:
        super().__init__(list(params), {"betas": tuple(betas), "eps": eps})
        self.lr, self.weight_decay, self.decoupled = list(lr), list(weight_decay), decoupled

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        grad = p.grad
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        step = state["step"]
        if any(self.weight_decay):
            if self.decoupled:
                p.mul_(_per_member([1 - lr * wd for lr, wd in
                                    zip(self.lr, self.weight_decay, strict=True)], p))
            else:
                grad = _add(grad, p, self.weight_decay)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(group["eps"])
        step_sizes = [lr / (1 - beta1**step) for lr in self.lr]
        if len(set(step_sizes)) == 1:
            p.addcdiv_(exp_avg, denom, value=-step_sizes[0])
        else:
            for m, size in enumerate(step_sizes):
                p[m].addcdiv_(exp_avg[m], denom[m], value=-size)


def packed_optimizer(optimizer_cfgs: Sequence[dict[str, Any]],
                     params: Sequence[torch.Tensor]) -> torch.optim.Optimizer:
    """The vectorised twin of the members' (same-class) optimiser."""
    first = optimizer_cfgs[0]
    target = first["_target_"]

    def each(key: str, default: float = 0.0) -> list[float]:
        return [float(c.get(key, default)) for c in optimizer_cfgs]

    if target == "torch.optim.SGD":
        return PackedSGD(params, each("lr"), each("momentum"), each("weight_decay"),
                         float(first.get("dampening", 0.0)), bool(first.get("nesterov", False)))
    default_wd = 0.01 if target == "torch.optim.AdamW" else 0.0
    return PackedAdam(params, each("lr"), each("weight_decay", default_wd),
                      tuple(first.get("betas", (0.9, 0.999))), float(first.get("eps", 1e-8)),
                      decoupled=target == "torch.optim.AdamW")


# -- data ---------------------------------------------------------------------------------------


class PackedBatches:
    """Each member's batches of its own split, stacked to (M, B, ...) per step.

    Shuffled splits draw each member's order with that member's own `TensorBatches` and
    generator (the one its solo run's data module makes), so every member sees its solo run's
    batches in its solo run's order. Identical splits (members with the same seed) are kept once.
    `epoch_states` are the shuffling generators' states at the start of the current epoch;
    `resume` (such states, and the batches of that epoch already trained) makes the next epoch
    repeat that epoch's order from the batch after those.
    """

    def __init__(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], batch_size: int,
                 generators: Sequence[torch.Generator] | None = None) -> None:
        unique: list[int] = []
        which = []
        for i, x in enumerate(xs):
            same = next((u for u in unique if xs[u] is x or (
                xs[u].shape == x.shape and torch.equal(xs[u], x) and torch.equal(ys[u], ys[i]))),
                None)
            if same is None:
                unique.append(i)
                same = i
            which.append(unique.index(same))
        self.x = torch.stack([xs[u] for u in unique])
        self.y = torch.stack([ys[u] for u in unique])
        self.which = torch.tensor(which)
        self.n, self.batch_size = xs[0].shape[0], batch_size
        self.generators = generators
        self.epoch_states: list[torch.Tensor] = []
        self.resume: tuple[list[torch.Tensor], int] | None = None

    def state(self, done: int, batches: int) -> tuple[list[torch.Tensor], int]:
        """Where training is in the data, `done` of this epoch's `batches` trained: what `resume`
        takes (after the epoch's last batch: the next epoch's start, as the generators are)."""
        if done >= batches or not self.epoch_states:
            return [g.get_state() for g in self.generators or []], 0
        return list(self.epoch_states), done

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def to(self, device: torch.device) -> PackedBatches:
        self.x, self.y, self.which = self.x.to(device), self.y.to(device), self.which.to(device)
        return self

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from nnlab.data.base import TensorBatches

        if self.generators is None:
            for start in range(0, self.n, self.batch_size):
                end = start + self.batch_size
                yield self.x[self.which, start:end], self.y[self.which, start:end]
            return
        skip = 0
        if self.resume is not None:
            states, skip = self.resume
            self.resume = None
            for gen, state in zip(self.generators, states, strict=True):
                gen.set_state(state)
        self.epoch_states = [g.get_state() for g in self.generators]
        index = torch.arange(self.n)
        orders = [iter(TensorBatches(index, index, self.batch_size, True, g))
                  for g in self.generators]
        rows = self.which.view(-1, 1)
        for i in range(len(self)):
            idx = [next(order)[0] for order in orders]  # drawn whether trained or skipped
            if i >= skip:
                idx = torch.stack(idx).to(self.x.device)
                yield self.x[rows, idx], self.y[rows, idx]
        for order in orders:  # each member's end-of-epoch draw, as its solo loader makes it
            next(order, None)


# -- the module ---------------------------------------------------------------------------------


@dataclass
class StageSums:
    """A stage's per-member sums over an epoch, on the device."""

    loss: torch.Tensor
    correct: torch.Tensor | None = None
    sse: torch.Tensor | None = None
    sae: torch.Tensor | None = None
    y_sum: torch.Tensor | None = None
    y_sq: torch.Tensor | None = None
    count: int = 0


class MaskDropout(nn.Module):
    """Dropout whose mask is given (a buffer per member), drawn outside vmap from the member's
    own generator exactly as torch's CPU dropout draws it: bernoulli(1 - p) / (1 - p)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.register_buffer("mask", torch.ones(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask if self.training else x


class PackInstruments:
    """nnlab.instruments' per-layer values for every member at once (names and meaning as the
    Instruments callback's): gradient and weight norms from the stacked tensors, activation
    statistics from hooks that run inside vmap and come back as the members' extra outputs."""

    def __init__(self, template: nn.Module, names: Sequence[str], size: int,
                 every_n_steps: int = 50, saturation_threshold: float = 0.01) -> None:
        from nnlab.activations import spec_of

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


@dataclass
class MemberHooks:
    """What the runner does when the pack reports a member's values or failure."""

    log: Callable[[int, dict[str, float], int], None] = lambda m, values, step: None
    diverged: Callable[[int, str], None] = lambda m, message: None
    extra: dict[str, Any] = field(default_factory=dict)


class PackedModule(pl.LightningModule):
    """M members of one architecture, parameters stacked on a leading member dimension."""

    def __init__(self, models: Sequence[nn.Module], objective: nn.Module,
                 optimizer_cfgs: Sequence[dict[str, Any]], dropouts: Sequence[float],
                 generators: Sequence[torch.Generator], input_shape: Sequence[int],
                 hooks: MemberHooks | None = None, log_every_n_steps: int = 10,
                 instruments: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.size = len(models)
        template = copy.deepcopy(models[0])
        self.dropout_layers: list[tuple[str, tuple[int, ...]]] = []
        if any(p > 0 for p in dropouts):
            self._mask_dropouts(template, input_shape)
        self.template = (template.to("meta"),)  # a tuple: not a submodule, never moved
        params, buffers = stack_module_state(list(models))
        self.names = list(params)
        options = dict(instruments or {})
        enabled = bool(options.get("enabled", False))
        self.instruments = PackInstruments(
            template, self.names, len(models), int(options.get("every_n_steps", 50)),
            float(options.get("saturation_threshold", 0.01))) if enabled else None
        self.plots = enabled and bool(options.get("plots", False))
        self.frame_grid: tuple[list[float], torch.Tensor] | None = None
        self.frames: list[list[tuple[int, torch.Tensor]]] = [[] for _ in models]
        self.stacked = nn.ParameterList([nn.Parameter(params[n].detach()) for n in self.names])
        for i, name in enumerate(buffers):
            self.register_buffer(f"buffer_{i}", buffers[name])
        self.buffer_names = list(buffers)
        self.objective = objective
        self.task = objective.task
        self.optimizer_cfgs = list(optimizer_cfgs)
        self.dropouts = list(dropouts)
        self.generators = list(generators)
        self.hooks = hooks or MemberHooks()
        self.log_every_n_steps = log_every_n_steps
        self.register_buffer("alive", torch.ones(self.size, dtype=torch.bool), persistent=False)
        self.sums: dict[str, StageSums] = {}
        self.epoch_start = 0.0
        self.last: dict[int, dict[str, float]] = {m: {} for m in range(self.size)}
        self.held: dict[int, dict[str, float]] = {}

    @property
    def monitor(self) -> str:
        return "val/acc" if self.task == "classification" else "val/r2"

    def _mask_dropouts(self, template: nn.Module, input_shape: Sequence[int]) -> None:
        """Swap Dropout layers for MaskDropout, noting each one's input shape (one sample)."""
        shapes: dict[str, tuple[int, ...]] = {}
        handles = [module.register_forward_hook(
            lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(inp[0].shape[1:])))
            for name, module in template.named_modules() if isinstance(module, nn.Dropout)]
        with torch.no_grad():  # eval mode: the probe draws nothing
            template.eval()(torch.zeros(1, *input_shape))
        for handle in handles:
            handle.remove()
        for name, shape in shapes.items():
            parent_name, _, child = name.rpartition(".")
            parent = template.get_submodule(parent_name) if parent_name else template
            setattr(parent, child, MaskDropout(0.0))
            self.dropout_layers.append((f"{name}.mask", shape))

    def _masks(self, batch: int) -> dict[str, torch.Tensor]:
        """Each member's dropout masks for this step, drawn from its own generator in layer
        order, as its solo forward would draw them (p = 0: no Dropout layer, no draw)."""
        masks = {}
        for name, shape in self.dropout_layers:
            per_member = []
            for p, gen in zip(self.dropouts, self.generators, strict=True):
                if p > 0:
                    noise = torch.empty((batch, *shape)).bernoulli_(1 - p, generator=gen)
                    per_member.append(noise.div_(1 - p))
                else:
                    per_member.append(torch.ones((batch, *shape)))
            masks[name] = torch.stack(per_member).to(self.device)
        return masks

    def _member(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scores = functional_call(self.template[0], (params, buffers), (x,))
        if self.instruments is None or not self.instruments.recording:
            return self.objective(scores, y), scores
        found = self.instruments  # the activation hooks filled these during this call
        stats, fired = tuple(found.captured), tuple(found.fired)
        found.captured, found.fired = [], []
        return self.objective(scores, y), scores, stats, fired

    def _stacked_state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The members' stacked parameters and buffers, under the solo model's names."""
        params = dict(zip(self.names, self.stacked, strict=True))
        buffers = {n: getattr(self, f"buffer_{i}") for i, n in enumerate(self.buffer_names)}
        return params, buffers

    def member_forward(self, x: torch.Tensor, y: torch.Tensor,
                       train: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(losses (M,), scores (M, B, ...)) for stacked batches x (M, B, ...), y (M, B, ...);
        in training the instruments take each member's activation statistics on the way."""
        params, buffers = self._stacked_state()
        self.template[0].train(train)
        if train and self.dropout_layers:
            buffers.update(self._masks(x.shape[1]))
        if not train or self.instruments is None:
            return vmap(self._member)(params, buffers, x, y)
        self.instruments.recording = True
        try:
            losses, scores, stats, fired = vmap(self._member)(params, buffers, x, y)
        finally:
            self.instruments.recording = False
        self.instruments.take(stats, fired)
        return losses, scores

    @torch.no_grad()
    def member_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N, ...) every member's scores for the same inputs x (N, ...), in eval mode."""
        params, buffers = self._stacked_state()
        self.template[0].eval()
        return vmap(lambda p, b: functional_call(self.template[0], (p, b), (x,)))(params,
                                                                                 buffers)

    def member_state_dict(self, m: int) -> dict[str, torch.Tensor]:
        """Member m's parameters under the solo model's names."""
        return {n: p[m].detach().clone() for n, p in zip(self.names, self.stacked, strict=True)}

    # -- metrics ---------------------------------------------------------------------------------
    def _accumulate(self, stage: str, losses: torch.Tensor, scores: torch.Tensor,
                    y: torch.Tensor) -> None:
        n = y.shape[1]
        sums = self.sums.get(stage)
        if sums is None:
            sums = self.sums[stage] = StageSums(torch.zeros_like(losses))
        sums.loss = sums.loss + losses * n
        sums.count += n
        if self.task == "classification":
            correct = (scores.argmax(dim=-1) == y).sum(dim=1)
            sums.correct = correct if sums.correct is None else sums.correct + correct
            return
        pred = scores.reshape(scores.shape[0], n, -1)
        target = y.to(scores.dtype).reshape_as(pred)
        parts = {"sse": ((pred - target) ** 2).sum(1), "sae": (pred - target).abs().sum(1),
                 "y_sum": target.sum(1), "y_sq": (target**2).sum(1)}
        for key, value in parts.items():
            old = getattr(sums, key)
            setattr(sums, key, value if old is None else old + value)

    def _epoch_values(self, stage: str) -> list[dict[str, float]]:
        """Each member's epoch metrics for `stage`, named as LabModule names them."""
        sums = self.sums.pop(stage, None)
        if sums is None:
            return [{} for _ in range(self.size)]
        n = sums.count
        columns: dict[str, torch.Tensor] = {"loss": sums.loss / n}
        if self.task == "classification":
            columns["acc"] = sums.correct.float() / n
        else:
            sst = sums.y_sq - sums.y_sum**2 / n
            columns["mse"] = sums.sse.sum(1) / (n * sums.sse.shape[1])
            columns["mae"] = sums.sae.sum(1) / (n * sums.sae.shape[1])
            columns["r2"] = (1 - sums.sse / sst).mean(1)
        table = torch.stack(list(columns.values()), dim=1).tolist()  # one host sync
        suffix = "_epoch" if stage == "train" else ""
        return [{f"{stage}/{k}{suffix}": v for k, v in zip(columns, row, strict=True)}
                for row in table]

    def _log_members(self, stage: str, step: int, extra: dict[str, float] | None = None) -> None:
        alive = self.alive.tolist()
        for m, values in enumerate(self._epoch_values(stage)):
            values.update(self.held.pop(m, {}))
            if alive[m] and values:
                values.update(extra or {})
                self.last[m].update(values)
                self.hooks.log(m, values, step)

    def _hold_members(self, stage: str) -> None:
        """Keep this stage's epoch values to log with the next stage's (one store write a member
        an epoch: validation ends just before the training epoch does, at the same step)."""
        for m, values in enumerate(self._epoch_values(stage)):
            self.held.setdefault(m, {}).update(values)

    # -- Lightning hooks -------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        losses, scores = self.member_forward(x, y, train=True)
        detached = losses.detach()
        self._accumulate("train", detached, scores.detach(), y)
        finite = torch.isfinite(detached)
        if not bool(finite[self.alive].all()):  # one host sync a step (as the solo guard)
            self._stop_diverged(detached, finite)
        if (self.global_step + 1) % self.log_every_n_steps == 0:
            self._log_steps(detached, scores.detach(), y)
        return torch.where(self.alive, losses, torch.zeros_like(losses)).sum()

    def _log_steps(self, losses: torch.Tensor, scores: torch.Tensor, y: torch.Tensor) -> None:
        values = [losses]
        if self.task == "classification":
            values.append((scores.argmax(dim=-1) == y).float().mean(dim=1))
        rows = torch.stack(values, dim=1).tolist()
        names = ["train/loss_step", "train/acc_step"]
        self._log_alive([dict(zip(names, row, strict=False)) for row in rows], self.global_step)

    def _log_alive(self, rows: Sequence[dict[str, float]], step: int) -> None:
        """Each member's row of values to its run, for the members still training."""
        for m, (row, alive) in enumerate(zip(rows, self.alive.tolist(), strict=True)):
            if alive:
                self.hooks.log(m, row, step)

    def _stop_diverged(self, losses: torch.Tensor, finite: torch.Tensor) -> None:
        for m in torch.nonzero(self.alive & ~finite).flatten().tolist():
            self.alive[m] = False
            self.hooks.diverged(m, f"the training loss is {float(losses[m])} at step "
                                   f"{self.global_step}; the run stopped there. Lower "
                                   "optimizer.lr, or clip gradients (trainer.gradient_clip_val"
                                   "=1.0).")
        if not bool(self.alive.any()):
            self.trainer.should_stop = True

    def validation_step(self, batch, batch_idx):
        losses, scores = self.member_forward(*batch)
        self._accumulate("val", losses, scores, batch[1])

    def test_step(self, batch, batch_idx):
        losses, scores = self.member_forward(*batch)
        self._accumulate("test", losses, scores, batch[1])

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.instruments is None:
            return
        norms = self.instruments.step_grads([p.grad if p.grad is not None else
                                             torch.zeros_like(p) for p in self.stacked])
        step = self.global_step + 1
        if step % self.instruments.every_n_steps == 0:
            self._log_alive(self.instruments.values(norms, list(self.stacked), epoch=False,
                                                    suffix="_step"), step)

    def on_train_start(self) -> None:
        """2-D classification data with plots on: the decision boundary at init."""
        from nnlab.engine.instruments import boundary_grid

        train = self.trainer.train_dataloader
        if self.plots and self.task == "classification":
            self.frame_grid = boundary_grid(train.x[0]) if isinstance(train, PackedBatches) \
                else None
            if self.frame_grid is not None and not any(self.frames):  # not after a resume
                self._frames(0)

    def _frames(self, epoch: int) -> None:
        classes = self.member_scores(self.frame_grid[1].to(self.device)).argmax(-1)
        from nnlab.engine.instruments import BOUNDARY_GRID

        for m, grid in enumerate(classes.to(torch.uint8).cpu()):
            self.frames[m].append((epoch, grid.reshape(BOUNDARY_GRID, BOUNDARY_GRID)))

    def on_train_epoch_start(self) -> None:
        self.epoch_start = time.perf_counter()
        if self.instruments is not None:
            self.instruments.reset()

    def on_train_epoch_end(self) -> None:
        from nnlab.engine.instruments import frame_epochs

        seconds = time.perf_counter() - self.epoch_start
        samples = self.sums["train"].count if "train" in self.sums else 0
        timing = {"time/epoch_s": seconds, "time/samples_per_s": samples / max(seconds, 1e-9)}
        measured = None
        found = self.instruments
        if found is not None and found.grad_steps:
            measured = found.values(found.grad_sum / found.grad_steps, list(self.stacked),
                                    epoch=True)
        epoch = self.current_epoch + 1
        if self.frame_grid is not None and epoch in frame_epochs(int(self.trainer.max_epochs)):
            self._frames(epoch)
        self._log_members("train", self.global_step - 1, timing)
        if measured:  # at the step the Instruments callback logs them
            self._log_alive(measured, self.global_step)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.sums.pop("val", None)
            return
        self._hold_members("val")

    def on_test_epoch_end(self) -> None:
        self._log_members("test", self.global_step)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return packed_optimizer(self.optimizer_cfgs, list(self.stacked))


# -- running a pack -----------------------------------------------------------------------------


@dataclass
class Member:
    """One job of a pack: its task config, overrides, output folder and MLflow tags."""

    cfg: DictConfig
    overrides: list[str]
    output_dir: Path
    tags: dict[str, str]
    tracker: Any = None
    logger: Any = None
    error: str | None = None
    result: float = math.nan
    model: nn.Module | None = None
    summary: str = ""
    open: bool = False  # its MLflow run is open
    sweep_dir: Path | None = None  # its sweep's folder: the run nests under the sweep's run


def build_members(members: Sequence[Member]) -> tuple[list[Any], list[Any], list[torch.Generator]]:
    """Each member's (data module, LabModule) built exactly as its solo run builds them, and the
    global random state its solo run would train from (for its dropout masks)."""
    from nnlab.engine.build import build, model_summary

    datamodules, modules, generators = [], [], []
    for member in members:
        pl.seed_everything(member.cfg.seed, workers=True, verbose=False)
        datamodule, module = build(member.cfg)
        member.summary = model_summary(module.model, datamodule.info.input_shape)
        gen = torch.Generator()
        gen.set_state(torch.get_rng_state())
        datamodules.append(datamodule)
        modules.append(module)
        generators.append(gen)
    return datamodules, modules, generators


def make_pack(members: Sequence[Member], datamodules: Sequence[Any], modules: Sequence[Any],
              generators: Sequence[torch.Generator], hooks: MemberHooks | None = None,
              ) -> tuple[PackedModule, PackedBatches, PackedBatches, PackedBatches]:
    """The packed module and its train, val and test batches."""
    from nnlab.config import plain

    cfgs = [m.cfg for m in members]
    batch_size = cfgs[0].batch_size
    splits = {s: [dm.splits[s] for dm in datamodules] for s in ("train", "val", "test")}
    shuffles = [dm.train_dataloader().generator for dm in datamodules]
    train = PackedBatches([s.x for s in splits["train"]], [s.y for s in splits["train"]],
                          batch_size, shuffles)
    val = PackedBatches([s.x for s in splits["val"]], [s.y for s in splits["val"]], batch_size)
    test = PackedBatches([s.x for s in splits["test"]], [s.y for s in splits["test"]], batch_size)
    module = PackedModule(
        [m.model for m in modules], modules[0].objective, [plain(c.optimizer) for c in cfgs],
        [float(c.model.get("dropout", 0.0)) for c in cfgs], generators,
        datamodules[0].info.input_shape, hooks, int(cfgs[0].trainer.log_every_n_steps),
        plain(cfgs[0].instruments))
    return module, train, val, test


def pack_trainer(cfg: DictConfig, root: Path, **overrides: Any) -> pl.Trainer:
    """The solo runs' Trainer recipe (nnlab.engine.solo.make_trainer: the members' accelerator and
    trainer flags) for a pack: no logger of its own (each member logs into its run) and no
    sanity validation. One device: DDP and gradient-clipping jobs do not pack."""
    from nnlab.engine.solo import make_trainer

    return make_trainer(cfg, logger=False, default_root_dir=root, num_sanity_val_steps=0,
                        **{"callbacks": [], **overrides})


def members_that_fit(built: tuple[list[Any], list[Any], list[torch.Generator]],
                     device: torch.device) -> int:
    """How many members fit half the device's free memory: per member its parameters with their
    gradients and two optimiser states, its activations for one batch (forward and backward),
    and its own copy of the data splits."""
    import os

    datamodules, modules, _ = built
    model, dm = modules[0].model, datamodules[0]
    outputs: list[int] = []
    handles = [m.register_forward_hook(lambda mod, i, out: outputs.append(out.numel()))
               for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *dm.info.input_shape))
    model.train()
    for handle in handles:
        handle.remove()
    params = sum(p.numel() for p in model.parameters())
    per_member = 4 * (4 * params + 3 * sum(outputs) * dm.batch_size) + dm.nbytes()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(1, free // 2 // per_member)


# -- checkpoints: kill and resume ---------------------------------------------------------------

PACK_STATE = "nnlab_pack"  # a pack checkpoint's own part, beside Lightning's


@dataclass
class PackResume:
    """A killed pack to continue: its checkpoint, and each member's MLflow run in pack order."""

    checkpoint: Path
    runs: list[Any]


def pack_checkpoint(members: Sequence[Member], pack_id: str) -> Path:
    """Where a pack keeps its checkpoint: `<sweep folder>/<pack>/pack.ckpt`."""
    return (members[0].output_dir.parent / pack_id.rsplit("/", 1)[-1] / "pack.ckpt").resolve()


def pack_run_ids(path: Path) -> list[str | None]:
    """The member runs a pack checkpoint holds, in pack order."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    return list(state[PACK_STATE]["run_ids"])


class PackCheckpointer(Checkpointer):
    """The solo Checkpointer's saves (every `every_n_steps` optimiser steps, at an epoch's first
    batch once PACK_SAVE_S have passed, at the end, and when SIGTERM / Ctrl-C asks to stop, at a
    batch boundary), for a pack:
    each member's logger is flushed first, and the checkpoint also holds the member runs, their
    `alive` flags, the epoch sums and held values, and each member's dropout and shuffling
    streams, so a resumed pack logs what the uninterrupted one logs."""

    def __init__(self, path: Path, every_n_steps: int, members: Sequence[Member],
                 dead: Sequence[int] = ()) -> None:
        super().__init__(path, every_n_steps, epoch_save_s=PACK_SAVE_S)
        self.members, self.dead = members, list(dead)
        self.train: PackedBatches | None = None
        self._loaded: dict[str, Any] | None = None

    def save(self, trainer: pl.Trainer) -> None:
        for member in self.members:
            if member.open:
                member.logger.flush()
        super().save(trainer)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        checkpoint[PACK_STATE] = {
            "run_ids": [m.tracker.run_id if m.tracker else None for m in self.members],
            "alive": pl_module.alive.cpu().clone(),
            "sums": {stage: {k: v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v
                             for k, v in vars(sums).items()}
                     for stage, sums in pl_module.sums.items()},
            "held": copy.deepcopy(pl_module.held), "last": copy.deepcopy(pl_module.last),
            "dropout": [g.get_state() for g in pl_module.generators],
            "shuffle": self.train.state(done, trainer.num_training_batches),
            "instruments": (pl_module.instruments.state()
                            if pl_module.instruments is not None else None),
            "frames": copy.deepcopy(pl_module.frames),
        }

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._loaded = checkpoint[PACK_STATE]
        self.train.resume = self._loaded["shuffle"]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        pl_module.epoch_start = time.perf_counter()  # a resumed epoch has no epoch start
        if self._loaded is None:
            return
        state, self._loaded = self._loaded, None
        pl_module.alive.copy_(state["alive"])
        pl_module.alive[self.dead] = False  # ended FAILED before the kill: not trained again
        pl_module.sums = {stage: StageSums(**{
            k: v.to(pl_module.device) if isinstance(v, torch.Tensor) else v
            for k, v in sums.items()}) for stage, sums in state["sums"].items()}
        pl_module.held, pl_module.last = state["held"], state["last"]
        for gen, gen_state in zip(pl_module.generators, state["dropout"], strict=True):
            gen.set_state(gen_state)
        if pl_module.instruments is not None and state.get("instruments"):
            pl_module.instruments.load(state["instruments"], pl_module.device)
        pl_module.frames = state.get("frames") or pl_module.frames


def _start_run(member: Member, pack_id: str, pack_size: int, datamodule: Any,
               checkpoint: Path) -> None:
    """Open the member's MLflow run with the params, tags and artifacts a solo run logs first."""
    from nnlab.engine.build import data_info, data_profile
    from nnlab.engine.logger import MlflowRunLogger
    from nnlab.engine.solo import open_tracker
    from nnlab.tracking import flatten
    from nnlab.tracking.life import run_tags
    from nnlab.tracking.parent import parent_run_id

    num_params = sum(p.numel() for p in member.model.parameters())
    member.tracker = open_tracker(member.cfg)
    params = flatten(OmegaConf.to_container(member.cfg, resolve=True))
    params["model.num_params"] = num_params
    found = {**run_tags(member.cfg, member.overrides, member.tags), PACK_TAG: pack_id,
             "nnlab.pack_size": str(pack_size), tags.CHECKPOINT: str(checkpoint)}
    if member.cfg.instruments.enabled:  # as the Instruments callback tags a solo run
        from nnlab.engine.instruments import param_layers

        found[tags.LAYERS] = ",".join(name for name, _ in param_layers(member.model))
    if member.sweep_dir is not None:
        found[tags.PARENT] = parent_run_id(member.tracker, member.sweep_dir)
    member.tracker.start(member.cfg.mlflow.run_name, params, found)
    member.open = True
    member.tracker.log_text(OmegaConf.to_yaml(member.cfg, resolve=True), "config.yaml")
    member.tracker.log_text("\n".join(member.overrides) + "\n", "overrides.txt")
    member.tracker.log_text(member.summary, "model_summary.txt")
    member.tracker.log_metrics({"model/params": num_params})
    digest, profile = data_profile(datamodule, data_info(datamodule))
    member.tracker.log_dataset(member.cfg.dataset.name, digest, member.cfg.dataset._target_,
                               profile)
    member.logger = MlflowRunLogger(member.tracker, epoch_flush_s=PACK_FLUSH_S)


def _reopen_run(member: Member, run: Any, checkpoint: Path) -> None:
    """Open a killed pack member's run again (RUNNING) to continue it from `checkpoint`; its
    logger skips what the run logged already."""
    from nnlab.engine.logger import MlflowRunLogger
    from nnlab.engine.solo import open_tracker

    member.tracker = open_tracker(member.cfg)
    logged = member.tracker.reopen(run.info.run_id)
    member.open = True
    member.tracker.set_tags({tags.RESUMED_FROM: checkpoint.name})
    member.logger = MlflowRunLogger(member.tracker, logged=logged)


def _end_run(member: Member, status: str, error: BaseException | None = None) -> None:
    member.open = False
    if member.logger is not None:
        member.logger.flush()
    if error is not None:
        member.error = f"{type(error).__name__}: {error}"
    member.tracker.end(status, error)


def init_plot(member: Member) -> None:
    """The member's weight histograms at init (member.model keeps its init draw)."""
    from nnlab.engine.instruments import log_figure, param_layers, weight_counts
    from nnlab.figures import weight_histograms

    log_figure(member.tracker, member.output_dir, "weights_at_init.png", weight_histograms,
               weight_counts(param_layers(member.model)))


def member_plots(member: Member, trained: nn.Module, datamodule: Any, module: PackedModule,
                 m: int) -> None:
    """The figures the Instruments callback draws at the end of a solo run, for one member."""
    from nnlab.engine.instruments import (
        end_plots,
        first_conv,
        log_figure,
        param_layers,
        weight_counts,
    )

    conv = first_conv(member.model)
    member.logger.flush()  # the learning curves read the run's metric histories
    frames = module.frames[m] if module.frame_grid is not None else []
    end_plots(lambda *args: log_figure(member.tracker, member.output_dir, *args), member.tracker,
              trained, trained, datamodule, module.task,
              weight_counts(param_layers(member.model)),
              None if conv is None else conv.weight.detach().cpu().clone(), frames,
              module.frame_grid[0] if frames else None)


def run_pack(members: Sequence[Member], pack_id: str,
             built: tuple[list[Any], list[Any], list[torch.Generator]] | None = None,
             cpu_threads: int | None = 1, resume: PackResume | None = None) -> PackedModule:
    """Train the members as one pack, each into its own MLflow run; sets each member's `result`
    (the monitored metric) or `error`; returns the trained pack. `built`: build_members' result
    when the caller built the members already. Every run it opened ends FINISHED, FAILED
    (diverged alone, or the pack failed) or KILLED (Ctrl-C / SIGTERM).

    The pack keeps a checkpoint (`pack_checkpoint`, each run's `nnlab.checkpoint` tag), saved
    every `checkpoint.every_n_steps` optimiser steps, at an epoch's start once PACK_SAVE_S have
    passed since the last save, and when SIGTERM or Ctrl-C stops it at a batch boundary.
    `resume`: continue a killed pack from its checkpoint in its members' own runs (members in the
    checkpoint's order); a member whose run ended FAILED (diverged) stays so.

    `cpu_threads`: torch's intra-op threads while a pack trains on the CPU (None: unchanged). A
    pack's tensors are M times a job's, large enough for torch to split each op across threads
    yet too small to gain from it; on a shared CPU every such op then waits for a descheduled
    thread (measured: 16 MLP members on moons, 2 threads 5.5x slower than 1 at load 5)."""
    import signal

    from nnlab.engine.trained import log_trained_model
    from nnlab.errors import Diverged
    from nnlab.quiet import quiet

    quiet()  # again: importing Lightning resets its loggers' levels
    datamodules, modules, generators = built or build_members(members)

    def log(m: int, values: dict[str, float], step: int) -> None:
        if members[m].open:
            members[m].logger.log_metrics(values, step)

    def diverged(m: int, message: str) -> None:
        if not members[m].open:
            return
        members[m].tracker.set_tags({tags.DIVERGED: "true"})
        if members[m].cfg.instruments.enabled and members[m].cfg.instruments.plots:
            init_plot(members[m])  # as a solo run's: often it explains the divergence
        _end_run(members[m], "FAILED", Diverged(message))
        print(f"nnlab: pack {pack_id}: run {members[m].tracker.run_id} diverged and ended FAILED "
              f"(the others go on): {message}", file=sys.stderr, flush=True)

    ckpt_path = resume.checkpoint if resume else pack_checkpoint(members, pack_id)
    dead = [m for m, run in enumerate(resume.runs if resume else [])
            if run.info.status == "FAILED"]
    checkpointer = PackCheckpointer(ckpt_path, int(members[0].cfg.checkpoint.every_n_steps),
                                    members, dead)
    # SIGINT/SIGTERM: stop at the next batch boundary, where the checkpoint is consistent
    previous = {sig: signal.signal(sig, checkpointer.request_stop)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    try:
        for m, member in enumerate(members):
            member.model = modules[m].model
            if resume is None:
                _start_run(member, pack_id, len(members), datamodules[m], ckpt_path)
            elif m in dead:
                member.error = resume.runs[m].data.tags.get(tags.ERROR, "FAILED before the kill")
            else:
                _reopen_run(member, resume.runs[m], ckpt_path)
        if resume is not None:
            print(f"nnlab: resuming pack {pack_id} from {ckpt_path}", flush=True)
        module, train, val, test = make_pack(members, datamodules, modules, generators,
                                             MemberHooks(log, diverged))
        checkpointer.train = train
        trainer = pack_trainer(members[0].cfg, members[0].output_dir.parent,
                               callbacks=[checkpointer])
        if cpu_threads and trainer.strategy.root_device.type == "cpu":
            torch.set_num_threads(cpu_threads)
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val,
                    ckpt_path=str(ckpt_path) if resume else None)
        if trainer.interrupted:
            raise KeyboardInterrupt("training interrupted")
        trainer.test(module, dataloaders=test, verbose=False)
        for m, member in enumerate(members):
            if not member.open:
                continue
            trained = copy.deepcopy(member.model)  # member.model keeps its init draw
            trained.load_state_dict(module.member_state_dict(m), strict=False)
            if member.cfg.instruments.enabled and member.cfg.instruments.plots:
                member_plots(member, trained, datamodules[m], module, m)
            log_trained_model(member.tracker, trained, datamodules[m])
            _end_run(member, "FINISHED")
            member.result = float(module.last[m].get(module.monitor, math.nan))
            scores = " ".join(f"{k}={v:.4f}" for k, v in sorted(module.last[m].items())
                              if k.startswith("test/"))
            print(f"nnlab: run '{member.cfg.mlflow.run_name}' FINISHED "
                  f"({member.tracker.run_id}) in pack {pack_id}: {module.monitor}="
                  f"{member.result:.4f} {scores}", flush=True)
        return module
    except BaseException as err:
        killed = isinstance(err, KeyboardInterrupt | SystemExit)  # Lightning: SystemExit
        if killed and not isinstance(err, KeyboardInterrupt):
            err = KeyboardInterrupt("interrupted")
        for member in members:
            if member.open:
                _end_run(member, "KILLED" if killed else "FAILED", err)
            elif member.tracker is None:
                member.error = member.error or f"{type(err).__name__}: {err}"
        if killed:
            kept = (f"checkpoint {ckpt_path}; continue with the same command and "
                    "sweep.resume=true" if ckpt_path.is_file() else "no checkpoint was saved")
            print(f"nnlab: pack {pack_id} KILLED ({err}); {kept}", file=sys.stderr, flush=True)
            raise err from None
        raise
    finally:
        torch.set_num_threads(threads)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
