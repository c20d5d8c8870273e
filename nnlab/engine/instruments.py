"""Instruments: a Lightning callback that measures inside training, per layer, and draws plots.

Per layer (named by its module path inside the model, e.g. `net.1`), logged as MLflow metrics
every `every_n_steps` optimiser steps (`<name>_step`) and once per epoch (`<name>`):

    grad_norm/<layer>   L2 norm of the layer's parameter gradients (epoch: mean over the steps)
    weight_norm/<layer> L2 norm of the layer's parameters
    act_mean/<layer>    mean of an activation module's output over the epoch's training batches
    act_std/<layer>     its standard deviation
    saturated/<layer>   sigmoid/tanh: fraction of outputs whose derivative < saturation_threshold
    dead/<layer>        relu: fraction of units that were zero for every sample of the epoch

Statistics accumulate on the device (no host sync per step); hooks run only in training mode.
Plots (PNG artifacts under `instruments/`), drawn at the end or when a run fails: weight
histograms as initialised, learning curves, a confusion matrix (classification) and, for 2-D
inputs, the decision boundary; conv nets: the first conv layer's kernels at init and after
training, and the feature maps of one test image through every conv layer; 2-D classification
data: the decision boundary over training as a strip of frames and a GIF (figures drawn by
nnlab.figures, each kind built once per process and drawn again with new data).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from nnlab.activations import Activation, spec_of
from nnlab.engine.logger import is_curve
from nnlab.tracking import tags

BOUNDARY_FRAMES = 8  # decision-boundary snapshots over training (init included)
BOUNDARY_GRID = 100  # grid points per axis of each snapshot
INIT_FIGURE = "weights_at_init.png"  # the weight histograms as initialised (drawn first)


def instrument_callbacks(cfg: Mapping[str, Any]) -> list[Callback]:
    """The instruments the config asks for ([] when `instruments.enabled` is false)."""
    options = dict(cfg.get("instruments") or {})
    if not options.pop("enabled", True):
        return []
    return [Instruments(**options)]


class _ActivationStats:
    """Running sums of one activation module's outputs over an epoch, kept on its device."""

    def __init__(self, spec: Activation, threshold: float) -> None:
        self.saturation, self.dying, self.threshold = spec.saturation, spec.dies, threshold
        self.reset()

    def reset(self) -> None:
        self.sums: torch.Tensor | None = None  # [sum, sum of squares, count, saturated]
        self.alive: torch.Tensor | None = None
        self.last: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        if not module.training:
            return
        y = out.detach().float()
        if self.saturation is not None:
            saturated = (self.saturation(y) < self.threshold).sum()
        else:
            saturated = y.new_zeros(())
        n = torch.tensor(float(y.numel()), device=y.device)
        batch = torch.stack([y.sum(), (y * y).sum(), n, saturated.float()])
        self.last = batch
        self.sums = batch if self.sums is None else self.sums + batch
        if self.dying:
            fired = (y > 0).any(dim=0)
            self.alive = fired if self.alive is None else self.alive | fired

    @staticmethod
    def _moments(sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean = sums[0] / sums[2]
        std = (sums[1] / sums[2] - mean * mean).clamp_min(0).sqrt()
        return mean, std, sums[3] / sums[2]

    def values(self, epoch: bool) -> dict[str, torch.Tensor]:
        sums = self.sums if epoch else self.last
        if sums is None:
            return {}
        mean, std, saturated = self._moments(sums)
        found = {"act_mean": mean, "act_std": std}
        if self.saturation is not None:
            found["saturated"] = saturated
        if epoch and self.dying and self.alive is not None:
            found["dead"] = 1 - self.alive.float().mean()
        return found


class Instruments(Callback):
    """Per-layer gradient/weight/activation statistics and diagnostic plots (see module doc)."""

    def __init__(self, every_n_steps: int = 50, saturation_threshold: float = 0.01,
                 plots: bool = True) -> None:
        self.every_n_steps = every_n_steps
        self.threshold = saturation_threshold
        self.plots = plots
        self.handles: list[Any] = []
        self.init_histograms: list[Histogram] = []
        self.init_kernels: torch.Tensor | None = None
        self.frames: list[tuple[int, torch.Tensor]] = []

    # -- set-up ---------------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self.handles:
            return
        model = getattr(pl_module, "model", pl_module)
        self.layers = param_layers(model)
        self.params = [p for _, ps in self.layers for p in ps]
        self.layer_of = torch.tensor([i for i, (_, ps) in enumerate(self.layers) for _ in ps])
        self.acts, self.handles = activation_hooks(model, self.threshold)

        # Counted now (before a resume restores trained weights), drawn at the end: matplotlib
        # and MLflow's artifact code stay off the path to the first training step.
        self.init_histograms = weight_counts(self.layers) if self.plots else []
        conv = first_conv(model)
        self.init_kernels = conv.weight.detach().cpu().clone() if self.plots and conv else None

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            for handle in self.handles:
                handle.remove()
            self.handles = []

    def on_fit_start(self, trainer, pl_module) -> None:
        tracker = _tracker(trainer)
        if tracker is not None:
            tracker.set_tags({tags.LAYERS: ",".join(name for name, _ in self.layers)})

    # -- measuring ----------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        """A run resumed mid-epoch gets no epoch start: open the sums here, from the checkpoint's
        when there is one (`load_state_dict`)."""
        self.on_train_epoch_start(trainer, pl_module)
        resumed, self._resumed = getattr(self, "_resumed", None), None
        if resumed:
            device = pl_module.device
            self.grad_sum, self.grad_steps = resumed["grad_sum"].to(device), resumed["grad_steps"]
            for name, values in resumed["acts"].items():
                if name in self.acts:
                    stats = self.acts[name]
                    stats.sums, stats.alive, stats.last = (
                        None if v is None else v.to(device) for v in values)
        self.frame_grid = frame_grid(trainer, pl_module) if self.plots else None
        if self.frame_grid is not None and trainer.current_epoch == 0:
            self.frames = [(0, boundary_frame(pl_module, self.frame_grid[1]))]

    def state_dict(self) -> dict[str, Any]:
        """The epoch's sums so far, kept in checkpoints: a resumed epoch logs the same means."""
        if getattr(self, "grad_sum", None) is None:
            return {}
        return {"grad_sum": self.grad_sum, "grad_steps": self.grad_steps,
                "acts": {name: (s.sums, s.alive, s.last) for name, s in self.acts.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resumed = state_dict or None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.grad_sum = torch.zeros(len(self.layers), device=pl_module.device)
        self.grad_steps = 0
        for stats in self.acts.values():
            stats.reset()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        norms = layer_norms(grads, self.layer_of, len(self.layers))
        self.grad_sum += norms
        self.grad_steps += 1
        step = trainer.global_step + 1
        if step % self.every_n_steps == 0:
            log_values(trainer, self._collect(norms, epoch=False), step, suffix="_step")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch + 1
        if getattr(self, "frame_grid", None) is not None and \
                epoch in frame_epochs(int(trainer.max_epochs or 1)):
            self.frames.append((epoch, boundary_frame(pl_module, self.frame_grid[1])))
        if not self.grad_steps:
            return
        grads = self.grad_sum / self.grad_steps
        log_values(trainer, self._collect(grads, epoch=True), trainer.global_step, suffix="")

    def _collect(self, grad_norms: torch.Tensor, epoch: bool) -> dict[str, torch.Tensor]:
        weights = layer_norms([p.detach() for p in self.params], self.layer_of, len(self.layers))
        found: dict[str, torch.Tensor] = {}
        for i, (name, _) in enumerate(self.layers):
            found[f"grad_norm/{name}"] = grad_norms[i]
            found[f"weight_norm/{name}"] = weights[i]
        for name, stats in self.acts.items():
            for key, value in stats.values(epoch).items():
                found[f"{key}/{name}"] = value
        return found

    # -- plots at the end -----------------------------------------------------------------------
    def on_test_end(self, trainer, pl_module) -> None:
        if self.plots and not trainer.sanity_checking:
            self._end_plots(trainer, pl_module)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """A failed or diverged run still gets its init histograms: often they explain it."""
        if self.plots and self.init_histograms:
            try:
                self._init_plot(trainer)
            except Exception as err:  # never mask the error that ended the run
                warnings.warn(f"nnlab: could not draw {INIT_FIGURE}: {err}", stacklevel=1)

    def _init_plot(self, trainer) -> None:
        # lazy: matplotlib and torch load only when a figure is drawn
        from nnlab.figures import weight_histograms

        self._artifact(trainer, INIT_FIGURE, weight_histograms, self.init_histograms)
        self.init_histograms = []

    def _end_plots(self, trainer, pl_module) -> None:
        frames = self.frames if getattr(self, "frame_grid", None) is not None else []
        trainer_end_plots(lambda *args: self._artifact(trainer, *args), trainer, pl_module,
                          self.init_histograms, self.init_kernels, frames,
                          self.frame_grid[0] if frames else None)
        self.init_histograms = []

    def _artifact(self, trainer, filename: str, draw, *args: Any) -> None:
        log_figure(_tracker(trainer), Path(trainer.default_root_dir), filename, draw, *args)


def activation_hooks(model: nn.Module, threshold: float
                     ) -> tuple[dict[str, _ActivationStats], list[Any]]:
    """Running statistics of every activation module's outputs (by module path), filled by
    forward hooks; and the hooks' handles."""
    acts: dict[str, _ActivationStats] = {}
    handles = []
    for name, m in model.named_modules():
        spec = spec_of(m)
        if spec is not None and spec.module is not nn.Identity:
            acts[name] = _ActivationStats(spec, threshold)
            handles.append(m.register_forward_hook(acts[name]))
    return acts, handles


def layer_norms(tensors: list[torch.Tensor], layer_of: torch.Tensor, layers: int) -> torch.Tensor:
    """(layers,): the L2 norm per layer of the tensors (layer_of: each tensor's layer)."""
    squares = torch.stack(torch._foreach_norm(tensors)) ** 2
    per_layer = torch.zeros(layers, device=squares.device, dtype=squares.dtype)
    return per_layer.index_add_(0, layer_of.to(squares.device), squares).sqrt()


def log_values(trainer, values: dict[str, torch.Tensor], step: int, suffix: str) -> None:
    """The values to the trainer's logger as `<name><suffix>`, one host sync."""
    if trainer.logger is None or not values:
        return
    numbers = torch.stack(list(values.values())).double().cpu().tolist()
    trainer.logger.log_metrics(
        {f"{k}{suffix}": v for k, v in zip(values, numbers, strict=True)}, step=step
    )


def frame_grid(trainer, pl_module) -> tuple[list[float], torch.Tensor] | None:
    """(extent, grid points) of the decision-boundary frames for 2-D classification data, else
    None."""
    datamodule = trainer.datamodule
    if not hasattr(datamodule, "splits") or getattr(pl_module, "task", None) != "classification":
        return None  # nnlab's in-memory data modules only
    return boundary_grid(datamodule.splits["train"].x)


@torch.no_grad()
def boundary_frame(pl_module, points: torch.Tensor) -> torch.Tensor:
    """The predicted class on the grid, (BOUNDARY_GRID, BOUNDARY_GRID) uint8, rows = y."""
    was_training = pl_module.training
    pl_module.eval()
    scores = pl_module(points.to(pl_module.device))
    pl_module.train(was_training)
    return scores.argmax(-1).to(torch.uint8).cpu().reshape(BOUNDARY_GRID, BOUNDARY_GRID)


def trainer_end_plots(artifact: Callable[..., None], trainer, pl_module,
                      init_histograms: list[Histogram], init_kernels: torch.Tensor | None,
                      frames: list[tuple[int, torch.Tensor]], extent: list[float] | None) -> None:
    """end_plots for a solo run's trainer: its run's curves as its logger kept them, else read
    back once the logger wrote them (a resumed run)."""
    tracker = _tracker(trainer)
    curves = getattr(trainer.logger, "curves", lambda: None)() if tracker is not None else None
    if tracker is not None and curves is None:
        trainer.logger.flush()
    end_plots(artifact, tracker, getattr(pl_module, "model", pl_module), pl_module,
              trainer.datamodule, getattr(pl_module, "task", None), init_histograms,
              init_kernels, frames, extent, curves)


def end_plots(artifact: Callable[..., None], tracker: Any, model: nn.Module, predict: nn.Module,
              datamodule: Any, task: str | None, init_histograms: list[Histogram],
              init_kernels: torch.Tensor | None,
              frames: list[tuple[int, torch.Tensor]], extent: list[float] | None,
              curves: dict[str, list[tuple[int, float]]] | None = None) -> None:
    """Every end-of-run figure of one trained model; `artifact(filename, draw, *args)` logs one
    (`model`: the bare net, `predict`: what maps inputs to scores, often the same; `curves`:
    the learning curves' values when the caller kept them, else read back from the run)."""
    # lazy: matplotlib and torch load only when a figure is drawn
    from nnlab.figures import (
        confusion_matrix,
        decision_boundary,
        learning_curves,
        weight_histograms,
    )

    if init_histograms:
        artifact(INIT_FIGURE, weight_histograms, init_histograms)
    if curves is None and tracker is not None:
        curves = {key: [(m.step, m.value) for m in
                        tracker.client.get_metric_history(tracker.run_id, key)]
                  for key in tracker.client.get_run(tracker.run_id).data.metrics if is_curve(key)}
    if curves is not None:
        artifact("learning_curves.png", learning_curves, curves)
    conv_plots(artifact, model, datamodule, init_kernels)
    if task != "classification" or not hasattr(datamodule, "splits"):
        return  # nnlab's in-memory data modules only
    x, y = _predict_split(predict, datamodule, "test")
    artifact("confusion_matrix.png", confusion_matrix, x.argmax(-1), y, datamodule.num_classes)
    train = datamodule.splits["train"]
    if train.x.dim() == 2 and train.x.shape[1] == 2:
        artifact("decision_boundary.png", decision_boundary, predict, train.x, train.y)
        if len(frames) > 1:
            # lazy: matplotlib and torch load only when a figure is drawn
            from nnlab.figures import boundary_gif, boundary_strip

            points = (train.x.cpu(), train.y.cpu())
            artifact("decision_boundary_frames.png", boundary_strip, frames, extent, *points)
            artifact("decision_boundary.gif", boundary_gif, frames, extent, *points)


def conv_plots(artifact: Callable[..., None], model: nn.Module, datamodule: Any,
               init_kernels: torch.Tensor | None) -> None:
    """First-layer kernels at init and trained; feature maps of test image 0 per conv."""
    # lazy: matplotlib and torch load only when a figure is drawn
    from nnlab.figures import feature_maps, kernel_grid

    conv = first_conv(model)
    if conv is None:
        return
    if init_kernels is not None:
        artifact("kernels_init.png", kernel_grid, init_kernels,
                 "first conv layer's kernels at init")
    artifact("kernels_trained.png", kernel_grid, conv.weight,
             "first conv layer's kernels after training")
    if "test" in getattr(datamodule, "splits", {}):
        image = datamodule.splits["test"].x[:1]
        device = next(model.parameters()).device
        maps = conv_feature_maps(model, image.to(device))
        artifact("feature_maps.png", feature_maps, image[0], maps)


def log_figure(tracker: Any, folder: Path, filename: str, draw: Callable[..., Any],
               *args: Any) -> None:
    """Draw a figure into a PNG and log it to the run under instruments/ (without a run: save
    it in `folder`)."""
    # lazy: matplotlib and torch load only when a figure is drawn
    from nnlab.figures import png_bytes

    log_picture(tracker, folder, filename, png_bytes(draw(*args)))  # bytes, or a Figure


def log_picture(tracker: Any, folder: Path, filename: str, picture: bytes) -> None:
    """Log a drawn figure (PNG/GIF bytes) as log_figure does."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) if tracker is not None else folder
        target.mkdir(parents=True, exist_ok=True)
        path = target / filename
        path.write_bytes(picture)
        if tracker is not None:
            tracker.client.log_artifact(tracker.run_id, str(path), "instruments")


def boundary_grid(x: torch.Tensor) -> tuple[list[float], torch.Tensor] | None:
    """(extent, grid points) around 2-D inputs x (N, 2), for decision-boundary frames; None for
    other inputs."""
    if x.dim() != 2 or x.shape[1] != 2:
        return None
    lo, hi = x.min(0).values.cpu() - 0.5, x.max(0).values.cpu() + 0.5
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], BOUNDARY_GRID),
                            torch.linspace(lo[1], hi[1], BOUNDARY_GRID), indexing="xy")
    extent = [lo[0].item(), hi[0].item(), lo[1].item(), hi[1].item()]
    return extent, torch.stack([gx.flatten(), gy.flatten()], dim=1)


def frame_epochs(max_epochs: int) -> set[int]:
    """Evenly spaced epochs (1-based, the last included) for the boundary snapshots."""
    last = max(1, max_epochs)
    count = min(last, BOUNDARY_FRAMES - 1)
    return {round(last * i / count) for i in range(1, count + 1)}


def param_layers(model: nn.Module) -> list[tuple[str, list[torch.Tensor]]]:
    """The layers the instruments measure: (module path, its own parameters) for every module
    with parameters of its own, input to output."""
    return [(name, list(m.parameters(recurse=False))) for name, m in model.named_modules()
            if any(True for _ in m.parameters(recurse=False))]


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


@torch.no_grad()
def conv_feature_maps(model: nn.Module, image: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(name, output (C, H, W)) of every Conv2d for one image (1, C, H, W), in eval mode."""
    maps: list[tuple[str, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: maps.append(
        (name, out[0].detach().cpu()))) for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    try:
        model(image)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return maps


def _tracker(trainer) -> Any:
    return getattr(trainer.logger, "tracker", None)


@torch.no_grad()
def _predict_split(model: nn.Module, datamodule, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = datamodule.splits[split]
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    scores = torch.cat([model(data.x[i : i + 512].to(device)).cpu()
                        for i in range(0, len(data.x), 512)])
    model.train(was_training)
    return scores, data.y.cpu()


# One layer's weights at init: name, shape, std, bin counts, bin edges.
Histogram = tuple[str, tuple[int, ...], float, torch.Tensor, torch.Tensor]


@torch.no_grad()
def weight_counts(layers: list[tuple[str, list[torch.Tensor]]], bins: int = 50) -> list[Histogram]:
    """Each layer's weight histogram (biases left out), counted on the CPU, drawn later."""
    found = []
    for name, params in layers:
        if params:
            w = params[0].detach().float().cpu().flatten()
            counts, edges = torch.histogram(w, bins=bins)
            found.append((name, tuple(params[0].shape), w.std(correction=0).item(), counts, edges))
    return found
