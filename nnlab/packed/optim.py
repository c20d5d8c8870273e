"""Vectorised optimisers: torch.optim's SGD, Adam and AdamW update formulas over parameters
stacked on a leading member dimension, each member with its own hyper-parameters."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

# Optimisers with a vectorised twin here, and the keys each understands.
OPTIMIZER_KEYS = {
    "torch.optim.SGD": {"lr", "momentum", "dampening", "weight_decay", "nesterov"},
    "torch.optim.Adam": {"lr", "betas", "eps", "weight_decay"},
    "torch.optim.AdamW": {"lr", "betas", "eps", "weight_decay"},
}
# torch.optim flags that change nothing a pack computes while they keep these values (the
# defaults nnlab's validation writes into every optimizer node)
OFF_BY_DEFAULT = {"maximize": False, "differentiable": False, "foreach": None, "fused": None,
                  "capturable": False, "amsgrad": False, "decoupled_weight_decay": False}


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
