"""A run's instruments figures (PNG bytes): weights at init, learning curves, the confusion
matrix, and what a conv net learns (its kernels, feature maps)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from nnlab.figures.canvas import agg_figure, built, colormap, encode_png, pixels, show_image

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


def kernel_grid(weight: torch.Tensor, title: str) -> bytes:
    """A conv layer's kernels (out, in, kh, kw) as one tile each: RGB when the layer reads 3
    channels (AlexNet's coloured first layer), else grey of the mean over input channels; each
    tile scaled to its own min..max. PNG bytes."""
    w = weight.detach().float().cpu()
    tiles = _unit((w if w.shape[1] == 3 else w.mean(1, keepdim=True)).permute(0, 2, 3, 1))
    rows, cols = _grid_shape(len(tiles))
    image = mosaic(tiles if tiles.shape[-1] == 3 else tiles[..., 0], cols)
    if image.dim() == 3:  # RGB: NaN gaps become white
        image = torch.nan_to_num(image, nan=1.0)

    def build() -> tuple[Any, Any]:
        tile = 0.75 if len(tiles) > 24 else 1.1
        fig = agg_figure((max(4.0, tile * cols + 0.4), tile * rows + 0.8))
        ax = fig.add_subplot()
        shown = ax.imshow(image.numpy(), cmap=colormap("gray"), interpolation="nearest")
        ax.axis("off")
        ax.set_title(f"{title}\n(out, in, h, w) = {tuple(w.shape)}", fontsize=9)
        return fig, shown

    fig, shown = built(("kernels", tuple(w.shape), title), build)
    show_image(shown, image)
    return encode_png(pixels(fig))


def feature_maps(image: torch.Tensor, maps: Sequence[tuple[str, torch.Tensor]],
                 max_channels: int = 8) -> bytes:
    """The image (C, H, W) on the first row, then one row per conv layer: its first
    `max_channels` feature maps (C, H, W), each scaled to its own range. PNG bytes."""
    picture = image.detach().float().cpu()
    picture = _unit((picture.permute(1, 2, 0) if picture.shape[0] == 3 else picture.mean(0))
                    [None])[0]
    rows = [mosaic(_unit(fmap.detach().float().cpu()[:max_channels]), max_channels)
            for _, fmap in maps]

    def build() -> tuple[Any, list[Any]]:
        fig = agg_figure((1.1 * max_channels, 1.2 * len(maps) + 1.6))
        axes = fig.subplots(len(maps) + 1, 1, squeeze=False)[:, 0]
        shown = [axes[0].imshow(picture.numpy(), cmap="gray")]
        axes[0].set_title("input", fontsize=8)
        for ax, (name, fmap), row in zip(axes[1:], maps, rows, strict=True):
            shown.append(ax.imshow(row.numpy(), cmap=colormap("viridis"), interpolation="nearest"))
            ax.set_title(f"{name} {tuple(fmap.shape)}", fontsize=8)
        for ax in axes:
            ax.axis("off")
        fig.suptitle("feature maps of one test image, layer by layer", fontsize=9)
        return fig, shown

    key = ("feature maps", tuple(picture.shape), max_channels,
           tuple((name, tuple(fmap.shape)) for name, fmap in maps))
    fig, shown = built(key, build)
    for artist, data in zip(shown, [picture, *rows], strict=True):
        show_image(artist, data)
    return encode_png(pixels(fig))


# -- one run's instruments ------------------------------------------------------------------


def weight_histograms(
    histograms: Sequence[tuple[str, tuple[int, ...], float, torch.Tensor, torch.Tensor]],
) -> bytes:
    """One histogram per layer of its weights, as initialised. PNG bytes."""
    cols = min(4, len(histograms))
    rows = -(-len(histograms) // cols)

    def build() -> tuple[Any, list[tuple[Any, Any]]]:
        fig = agg_figure((3.2 * cols, 2.4 * rows))
        grid = fig.add_gridspec(rows, cols)  # axes for the layers only: the grid's rest is blank
        axes = [fig.add_subplot(grid[i // cols, i % cols]) for i in range(len(histograms))]
        for ax in axes:
            ax.tick_params(labelsize=7)
        fig.suptitle("weights right after init")
        return fig, [(ax, ax.stairs([0.0], [0.0, 1.0], fill=True, color="tab:blue"))
                     for ax in axes]

    fig, panels = built(("weight histograms", rows, cols, len(histograms)), build)
    for (ax, stairs), (name, shape, std, counts, edges) in zip(panels, histograms, strict=True):
        stairs.set_data(counts.numpy(), edges.numpy())
        ax.set_title(f"{name} {shape}\nstd={std:.3g}", fontsize=8)
        ax.relim()
        ax.autoscale_view()
    return encode_png(pixels(fig))


def learning_curves(curves: dict[str, list[tuple[int, float]]]) -> bytes:
    """Loss curves on the left, the other per-epoch metrics on the right, against steps. PNG."""
    keys = sorted(key for key, points in curves.items() if points)

    def build() -> tuple[Any, list[Any], dict[str, Any]]:
        fig = agg_figure((10, 3.6))
        left, right = fig.subplots(1, 2)
        lines = {key: (left if "loss" in key else right).plot([], [], label=key)[0]
                 for key in keys}
        for ax, title in ((left, "loss"), (right, "metrics")):
            ax.set_xlabel("step")
            ax.set_title(title)
            if ax.lines:
                ax.legend(fontsize=7)
        return fig, [left, right], lines

    fig, axes, lines = built(("learning curves", *keys), build)
    for key, line in lines.items():
        steps, values = zip(*sorted(curves[key]), strict=True)
        line.set_data(steps, values)
        line.set_marker("." if len(steps) < 30 else "None")
    for ax in axes:
        ax.relim()
        ax.autoscale_view()
    return encode_png(pixels(fig))


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> bytes:
    """The test set's confusion matrix with its counts, PNG bytes."""
    return confusion_figure(confusion_counts(predicted, target, num_classes))


def confusion_counts(predicted: torch.Tensor, target: torch.Tensor,
                     num_classes: int) -> torch.Tensor:
    """(classes, classes) counts, rows = true class (torchmetrics')."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    return multiclass_confusion_matrix(predicted, target, num_classes)


def confusion_figure(counts: torch.Tensor) -> bytes:
    """A confusion matrix's counts drawn, PNG bytes (no torchmetrics: a drawing process draws
    it from counts computed elsewhere)."""
    num_classes = counts.shape[0]

    def build() -> tuple[Any, Any, Any, list[Any]]:
        fig = agg_figure((4.6, 4))
        ax = fig.add_subplot()
        shown = ax.imshow(np.zeros((num_classes, num_classes)), cmap="Blues")
        fig.colorbar(shown, ax=ax)
        # the counts sit inside their cells: left out of the layout (the tight layout measured
        # every one of them, classes squared texts, for margins they cannot move)
        texts = [ax.text(j, i, "", ha="center", va="center", fontsize=7, in_layout=False)
                 for i in range(num_classes) for j in range(num_classes)]
        ax.set(xlabel="predicted", ylabel="true", xticks=range(num_classes),
               yticks=range(num_classes))
        return fig, ax, shown, texts

    fig, ax, shown, texts = built(("confusion matrix", num_classes), build)
    show_image(shown, counts.float())
    for text, n in zip(texts, counts.flatten().tolist(), strict=True):
        text.set_text(str(n) if n else "")
    acc = counts.diag().sum().item() / max(counts.sum().item(), 1)
    ax.set_title(f"test confusion matrix (acc {acc:.3f})")
    return encode_png(pixels(fig))

