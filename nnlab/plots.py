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


def kernel_grid(weight: torch.Tensor, title: str) -> Any:
    """A conv layer's kernels (out, in, kh, kw) as one tile each: RGB when the layer reads 3
    channels (AlexNet's coloured first layer), else grey of the mean over input channels; each
    tile scaled to its own min..max."""
    plt = pyplot()
    w = weight.detach().float().cpu()
    tiles = (w if w.shape[1] == 3 else w.mean(1, keepdim=True)).permute(0, 2, 3, 1)
    low = tiles.flatten(1).min(1).values.view(-1, 1, 1, 1)
    high = tiles.flatten(1).max(1).values.view(-1, 1, 1, 1)
    tiles = (tiles - low) / (high - low).clamp_min(1e-12)
    rows, cols = _grid_shape(len(tiles))
    tile = 0.75 if len(tiles) > 24 else 1.1
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.0, tile * cols + 0.4),
                                                  tile * rows + 0.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile in zip(axes.flat, tiles, strict=False):
        ax.imshow(tile.numpy() if tile.shape[-1] == 3 else tile[..., 0].numpy(), cmap="gray",
                  interpolation="nearest")
    fig.suptitle(f"{title}\n(out, in, h, w) = {tuple(w.shape)}", fontsize=9)
    fig.tight_layout()
    return fig


def feature_maps(image: torch.Tensor, maps: Sequence[tuple[str, torch.Tensor]],
                 max_channels: int = 8) -> Any:
    """One row per conv layer: the first `max_channels` feature maps (C, H, W) of one image,
    the image itself (C, H, W) on the left of the first row."""
    plt = pyplot()
    cols = 1 + max_channels
    fig, axes = plt.subplots(len(maps), cols, figsize=(1.1 * cols, 1.15 * len(maps) + 0.5),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    picture = image.detach().float().cpu()
    picture = picture.permute(1, 2, 0) if picture.shape[0] == 3 else picture.mean(0)
    picture = (picture - picture.min()) / (picture.max() - picture.min()).clamp_min(1e-12)
    axes[0][0].imshow(picture.numpy(), cmap="gray")
    axes[0][0].set_title("input", fontsize=7)
    for row, (name, fmap) in zip(axes, maps, strict=True):
        fmap = fmap.detach().float().cpu()
        row[1].set_title(f"{name} {tuple(fmap.shape)}", fontsize=7, loc="left")
        for ax, channel in zip(row[1:], fmap[:max_channels], strict=False):
            ax.imshow(channel.numpy(), cmap="viridis")
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
    """The same frames as an animated GIF (Pillow, which matplotlib already needs)."""
    from PIL import Image

    plt = pyplot()
    images = []
    for epoch, classes in frames:
        fig, ax = plt.subplots(figsize=(3.4, 3.0))
        _boundary(ax, extent, classes, x, y, "init" if epoch == 0 else f"epoch {epoch}")
        fig.tight_layout()
        images.append(Image.open(io.BytesIO(png_bytes(fig, dpi=70))).convert("P"))
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=ms_per_frame, loop=0)
    return buffer.getvalue()
