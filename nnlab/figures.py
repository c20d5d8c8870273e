"""Figures as pure functions: numbers in, a matplotlib Figure (or PNG/GIF bytes) out.

No function here reads MLflow, a trainer or a config; callers (nnlab.instruments, nnlab.report)
collect the numbers and save or log what comes back. matplotlib is imported on first use.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch


def pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(figure: Any, dpi: int = 90) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(figure)
    return buffer.getvalue()


# -- learning curves of a study -----------------------------------------------------------------


def learning_curve_bands(curves: Mapping[str, Mapping[str, Sequence[Sequence[float]]]]) -> Any:
    """One panel per metric: per option, the mean over seeds per epoch and a band of one sample
    sd either side (no band where an option has one seed).

    `curves`: metric -> option label -> one per-epoch curve per seed (cut to the shortest).
    """
    plt = pyplot()
    keys = [k for k, by_option in curves.items() if any(by_option.values())]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4.6 * max(1, len(keys)), 3.8),
                             squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        for label, seeds in curves[key].items():
            seeds = [list(c) for c in seeds if len(c)]
            if not seeds:
                continue
            length = min(map(len, seeds))
            values = torch.tensor([c[:length] for c in seeds], dtype=torch.float64)
            epochs = range(1, length + 1)
            mean = values.mean(0)
            (line,) = ax.plot(epochs, mean.numpy(), marker="." if length < 30 else None,
                              label=f"{label} (n={len(seeds)})")
            if len(seeds) > 1:
                sd = values.std(0, correction=1)
                ax.fill_between(epochs, (mean - sd).numpy(), (mean + sd).numpy(),
                                color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set(title=f"{key}: mean ± sd over seeds", xlabel="epoch")
        if "loss" in key and all(v > 0 for s in curves[key].values() for c in s for v in c):
            ax.set_yscale("log")
    if keys:
        axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


# -- what a conv net learns ---------------------------------------------------------------------


def _grid_shape(count: int, max_cols: int = 16) -> tuple[int, int]:
    cols = min(max_cols, max(1, math.ceil(math.sqrt(count * 1.5))))
    return math.ceil(count / cols), cols


def mosaic(tiles: torch.Tensor, cols: int, pad: int = 1) -> torch.Tensor:
    """Tiles (N, H, W[, C]) laid out in rows of `cols`, `pad` NaN pixels between them (drawn
    as the background): one image, so a figure needs one axes, not one per tile."""
    n, h, w = tiles.shape[:3]
    rows = math.ceil(n / cols)
    canvas = torch.full((rows * (h + pad) + pad, cols * (w + pad) + pad, *tiles.shape[3:]),
                        float("nan"))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h,
               pad + c * (w + pad):pad + c * (w + pad) + w] = tile
    return canvas


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Each tile (first dim) scaled to 0..1 on its own."""
    flat = x.flatten(1)
    low = flat.min(1).values.view(-1, *[1] * (x.dim() - 1))
    high = flat.max(1).values.view(-1, *[1] * (x.dim() - 1))
    return (x - low) / (high - low).clamp_min(1e-12)


def _cmap(name: str) -> Any:
    import matplotlib

    cmap = matplotlib.colormaps[name].copy()
    cmap.set_bad("white")
    return cmap


def kernel_grid(weight: torch.Tensor, title: str) -> Any:
    """A conv layer's kernels (out, in, kh, kw) as one tile each: RGB when the layer reads 3
    channels (AlexNet's coloured first layer), else grey of the mean over input channels; each
    tile scaled to its own min..max."""
    plt = pyplot()
    w = weight.detach().float().cpu()
    tiles = _unit((w if w.shape[1] == 3 else w.mean(1, keepdim=True)).permute(0, 2, 3, 1))
    rows, cols = _grid_shape(len(tiles))
    image = mosaic(tiles if tiles.shape[-1] == 3 else tiles[..., 0], cols)
    if image.dim() == 3:  # RGB: NaN gaps become white
        image = torch.nan_to_num(image, nan=1.0)
    tile = 0.75 if len(tiles) > 24 else 1.1
    fig, ax = plt.subplots(figsize=(max(4.0, tile * cols + 0.4), tile * rows + 0.8))
    ax.imshow(image.numpy(), cmap=_cmap("gray"), interpolation="nearest")
    ax.axis("off")
    ax.set_title(f"{title}\n(out, in, h, w) = {tuple(w.shape)}", fontsize=9)
    fig.tight_layout()
    return fig


def feature_maps(image: torch.Tensor, maps: Sequence[tuple[str, torch.Tensor]],
                 max_channels: int = 8) -> Any:
    """The image (C, H, W) on the first row, then one row per conv layer: its first
    `max_channels` feature maps (C, H, W), each scaled to its own range."""
    plt = pyplot()
    fig, axes = plt.subplots(len(maps) + 1, 1, figsize=(1.1 * max_channels, 1.2 * len(maps)
                                                         + 1.6), squeeze=False)
    picture = image.detach().float().cpu()
    picture = _unit((picture.permute(1, 2, 0) if picture.shape[0] == 3 else picture.mean(0))
                    [None])[0]
    axes[0][0].imshow(picture.numpy(), cmap="gray")
    axes[0][0].set_title("input", fontsize=8)
    for ax, (name, fmap) in zip(axes[1:, 0], maps, strict=True):
        fmap = fmap.detach().float().cpu()
        ax.imshow(mosaic(_unit(fmap[:max_channels]), max_channels).numpy(),
                  cmap=_cmap("viridis"), interpolation="nearest")
        ax.set_title(f"{name} {tuple(fmap.shape)}", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("feature maps of one test image, layer by layer", fontsize=9)
    fig.tight_layout()
    return fig


# -- 2-D decision boundary over training --------------------------------------------------------

BoundaryFrame = tuple[int, torch.Tensor]  # (epoch, predicted class on the grid, (steps, steps))


def _boundary(ax: Any, extent: Sequence[float], classes: torch.Tensor, x: torch.Tensor,
              y: torch.Tensor, title: str) -> None:
    ax.imshow(classes.numpy(), origin="lower", extent=tuple(extent), aspect="auto",
              cmap="coolwarm", alpha=0.35, interpolation="nearest")
    ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), c=y.numpy(), s=5, cmap="coolwarm",
               edgecolors="k", linewidths=0.15)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def boundary_strip(frames: Sequence[BoundaryFrame], extent: Sequence[float], x: torch.Tensor,
                   y: torch.Tensor) -> Any:
    """The decision boundary at several epochs side by side (epoch 0 = as initialised)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(frames), figsize=(2.3 * len(frames), 2.6), squeeze=False)
    for ax, (epoch, classes) in zip(axes[0], frames, strict=True):
        _boundary(ax, extent, classes, x, y, "init" if epoch == 0 else f"epoch {epoch}")
    fig.suptitle("decision boundary over training (train points)", fontsize=9)
    fig.tight_layout()
    return fig


def boundary_gif(frames: Sequence[BoundaryFrame], extent: Sequence[float], x: torch.Tensor,
                 y: torch.Tensor, ms_per_frame: int = 600) -> bytes:
    """The same frames as an animated GIF (Pillow, which matplotlib already needs); one figure,
    its image data swapped per frame."""
    from PIL import Image

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.4, 3.0))
    _boundary(ax, extent, frames[0][1], x, y, "")
    fig.tight_layout()
    shown = ax.images[0]
    images = []
    for epoch, classes in frames:
        shown.set_data(classes.numpy())
        ax.set_title("init" if epoch == 0 else f"epoch {epoch}", fontsize=8)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=70)
        images.append(Image.open(buffer).convert("P"))
    plt.close(fig)
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=ms_per_frame, loop=0)
    return buffer.getvalue()


# -- one run's instruments ------------------------------------------------------------------


def weight_histograms(
    histograms: Sequence[tuple[str, tuple[int, ...], float, torch.Tensor, torch.Tensor]],
) -> Any:
    """One histogram per layer of its weights, as initialised."""
    plt = pyplot()
    cols = min(4, len(histograms))
    rows = -(-len(histograms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, (name, shape, std, counts, edges) in zip(axes.flat, histograms, strict=False):
        ax.stairs(counts.numpy(), edges.numpy(), fill=True, color="tab:blue")
        ax.set_title(f"{name} {shape}\nstd={std:.3g}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(histograms):]:
        ax.axis("off")
    fig.suptitle("weights right after init")
    fig.tight_layout()
    return fig


def learning_curves(curves: dict[str, list[tuple[int, float]]]):
    """Loss curves on the left, the other per-epoch metrics on the right, against steps."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, points in sorted(curves.items()):
        if not points:
            continue
        steps, values = zip(*sorted(points), strict=True)
        ax = left if "loss" in key else right
        ax.plot(steps, values, marker="." if len(steps) < 30 else None, label=key)
    for ax, title in ((left, "loss"), (right, "metrics")):
        ax.set_xlabel("step")
        ax.set_title(title)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int):
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    plt = pyplot()
    counts = multiclass_confusion_matrix(predicted, target, num_classes)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    image = ax.imshow(counts.numpy(), cmap="Blues")
    fig.colorbar(image, ax=ax)
    for (i, j), n in zip(((i, j) for i in range(num_classes) for j in range(num_classes)),
                         counts.flatten().tolist(), strict=True):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7)
    acc = counts.diag().sum().item() / max(counts.sum().item(), 1)
    ax.set(xlabel="predicted", ylabel="true", title=f"test confusion matrix (acc {acc:.3f})",
           xticks=range(num_classes), yticks=range(num_classes))
    fig.tight_layout()
    return fig


@torch.no_grad()
def decision_boundary(model, x: torch.Tensor, y: torch.Tensor, steps: int = 200):
    """The playground picture: predicted class over a grid, with the training points on top."""
    plt = pyplot()
    x, y = x.cpu(), y.cpu()
    lo, hi = x.min(0).values - 0.5, x.max(0).values + 0.5
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], steps),
                            torch.linspace(lo[1], hi[1], steps), indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    was_training = model.training
    model.eval()
    scores = model(grid.to(next(model.parameters()).device)).cpu()
    model.train(was_training)
    classes = scores.argmax(-1).reshape(steps, steps)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.contourf(gx.numpy(), gy.numpy(), classes.numpy(), alpha=0.35, cmap="coolwarm")
    ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), c=y.numpy(), s=8, cmap="coolwarm",
               edgecolors="k", linewidths=0.2)
    ax.set(title="decision boundary (train points)", xlabel="x1", ylabel="x2")
    fig.tight_layout()
    return fig


# -- studies and the gallery ------------------------------------------------------------------


def gradient_profiles(panels: Mapping[tuple[str, ...], Sequence[tuple[str, Sequence[float]]]]
                      ) -> Any:
    """One panel per architecture (its layer names): each option's gradient norm per layer."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (names, lines) in zip(axes[0], panels.items(), strict=True):
        for label, norms in lines:
            ax.plot(range(len(names)), [max(v, 1e-12) for v in norms], marker="o", label=label)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
        ax.set(title="gradient norm per layer, last epoch (input -> output)",
               ylabel="||grad||")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def activation_panels(curves: Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                      ) -> Any:
    """One panel per activation: f(x) and its derivative."""
    plt = pyplot()
    cols = 4
    rows = -(-len(curves) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, (name, (x, y, grad)) in zip(axes.flat, curves.items(), strict=False):
        ax.plot(x, y, label="f(x)")
        ax.plot(x, grad, "--", label="f'(x) (autograd)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_title(name)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    fig.suptitle("activations and their derivatives")
    fig.tight_layout()
    return fig


# -- the papers' figures, from a study's runs ---------------------------------------------------


def training_error_panels(panels: Mapping[str, Mapping[str, Sequence[Sequence[float]]]],
                          title: str) -> Any:
    """He et al. 2015 Figs. 2-3: training error (1 - training accuracy) per epoch, one panel
    per architecture; each seed a thin line, the mean over seeds a thick one.

    `panels`: panel title -> option label -> one per-epoch error curve per seed.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False,
                             sharey=True)
    for ax, (name, options) in zip(axes[0], panels.items(), strict=True):
        for i, (label, seeds) in enumerate(options.items()):
            color = f"C{i}"
            for curve in seeds:
                ax.plot(range(1, len(curve) + 1), curve, color=color, alpha=0.3, linewidth=0.8)
            length = min((len(c) for c in seeds), default=0)
            if length:
                mean = torch.tensor([c[:length] for c in seeds], dtype=torch.float64).mean(0)
                ax.plot(range(1, length + 1), mean.numpy(), color=color, linewidth=2.2,
                        label=f"{label} (n={len(seeds)})")
        ax.set(title=name, xlabel="epoch", ylim=(0, 1))
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("training error")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def activations_over_training(panels: Mapping[str, Mapping[str, tuple[Sequence[float],
                              Sequence[float], Sequence[float]]]], title: str) -> Any:
    """Glorot & Bengio 2010 Fig. 2: per hidden layer, the mean activation value over training
    with bars of one sd (the spread of the layer's outputs), one panel per option.

    `panels`: option label -> layer name -> (steps, means, sds).
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (label, layers) in zip(axes[0], panels.items(), strict=True):
        for i, (layer, (steps, means, sds)) in enumerate(layers.items()):
            every = max(1, len(steps) // 25)  # bars on about 25 points, as in the paper
            ax.plot(steps, means, color=f"C{i}", label=f"layer {i + 1} ({layer})")
            ax.errorbar(steps[::every], means[::every], yerr=sds[::every], color=f"C{i}",
                        fmt="none", linewidth=0.8, capsize=1.5)
        ax.set(title=label, xlabel="optimiser step")
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("activation value (mean ± sd)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def layer_histograms(panels: Mapping[str, Sequence[tuple[str, torch.Tensor]]],
                     title: str, xlabel: str, bins: int = 80) -> Any:
    """Glorot & Bengio 2010 Figs. 6-7: the normalised histogram of every layer's values
    overlaid (one line per layer), one panel per option, on a shared x range.

    `panels`: option label -> (layer name, that layer's values) from input to output.
    """
    plt = pyplot()
    everything = torch.cat([v.flatten().float() for layers in panels.values() for _, v in layers])
    low, high = torch.quantile(everything[::max(1, len(everything) // 100_000)],
                               torch.tensor([0.005, 0.995], dtype=torch.float32)).tolist()
    if not high > low:
        low, high = low - 1, high + 1
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.4, 2.6 * len(panels)), squeeze=False,
                             sharex=True)
    for ax, (label, layers) in zip(axes[:, 0], panels.items(), strict=True):
        for i, (name, values) in enumerate(layers):
            counts, edges = torch.histogram(values.flatten().float().clamp(low, high), bins=bins,
                                            range=(low, high))
            ax.plot(((edges[1:] + edges[:-1]) / 2).numpy(), (counts / counts.sum()).numpy(),
                    color=f"C{i}", label=f"layer {i + 1} ({name}), sd {values.std():.2g}")
        ax.set(title=label, ylabel="fraction")
        ax.legend(fontsize=6)
    axes[-1][0].set_xlabel(xlabel)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
