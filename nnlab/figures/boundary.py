"""A 2-D data set's decision boundary (PNG, GIF): class colours composed as pixels under points,
axes and titles that matplotlib renders once per data set."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from nnlab.figures.canvas import agg_figure, built, digest, encode_png, pixels

BoundaryFrame = tuple[int, torch.Tensor]  # (epoch, predicted class on the grid, (steps, steps))
BOUNDARY_ALPHA = 0.35  # of the class colours under the points


class _Overlay:
    """A boundary figure without its class colours: points, axes and titles, rendered on a
    transparent background once per data set (`show`), and each axes' pixel box; `compose` lays
    class grids under it."""

    def __init__(self, figure: Any, axes: Sequence[Any], title: Any = None) -> None:
        figure.patch.set_alpha(0)
        for ax in axes:
            ax.patch.set_alpha(0)
        self.figure, self.axes, self.title = figure, list(axes), title
        self.shown: tuple | None = None  # the data set (key) the pixels show
        self.last: tuple[list[torch.Tensor], np.ndarray] | None = None

    def show(self, x: torch.Tensor, y: torch.Tensor, extent: Sequence[float]) -> _Overlay:
        """The points x (N, 2) coloured by class y, over `extent` (x0, x1, y0, y1), rendered."""
        key = (tuple(extent), *digest(x, y))
        if key == self.shown:
            return self
        for ax in self.axes:
            for c, points in enumerate(ax.lines):  # one marker line per class
                points.set_data(x[y == c, 0].numpy(), x[y == c, 1].numpy())
            ax.set(xlim=extent[:2], ylim=extent[2:])
        self.rgba = pixels(self.figure).copy()
        self.height = self.rgba.shape[0]
        self.boxes = [self._box(ax) for ax in self.axes]
        # the first pixel row under the figure's title (`title`: its suptitle)
        self.title_bottom = 0 if self.title is None else round(
            self.height - self.title.get_window_extent(self.figure.canvas.get_renderer()).y0)
        colours = class_colours(len(self.axes[0].lines))[:, :3]
        self.colours = (BOUNDARY_ALPHA * colours + 1 - BOUNDARY_ALPHA).astype(np.float32)
        self.shown, self.last = key, None
        return self

    def _box(self, ax: Any) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) pixel rows/columns of the axes' data area."""
        box = ax.bbox
        return (round(self.height - box.y1), round(self.height - box.y0), round(box.x0),
                round(box.x1))

    def compose(self, grids: Sequence[torch.Tensor]) -> np.ndarray:
        """(H, W, 3) uint8: each class grid (rows = y, bottom up) stretched over its axes, the
        overlay on top (the same grids again: the last picture, not composed twice)."""
        if self.last is not None and len(self.last[0]) == len(grids) and all(
                a is b for a, b in zip(self.last[0], grids, strict=True)):
            return self.last[1]
        rgba = self.rgba.astype(np.float32) / 255
        rgb, alpha = rgba[..., :3], rgba[..., 3:]
        base = np.ones_like(rgb)
        for (top, bottom, left, right), grid in zip(self.boxes, grids, strict=True):
            classes = grid.numpy().astype(np.int64).clip(0, len(self.colours) - 1)[::-1]
            rows = np.arange(bottom - top) * classes.shape[0] // max(bottom - top, 1)
            cols = np.arange(right - left) * classes.shape[1] // max(right - left, 1)
            base[top:bottom, left:right] = self.colours[classes[rows][:, cols]]
        out = rgb * alpha + base * (1 - alpha)
        self.last = (list(grids), (out * 255 + 0.5).astype(np.uint8))
        return self.last[1]


def class_colours(classes: int) -> np.ndarray:
    """(classes, 4) RGBA: coolwarm from its first to its last colour, as a scatter plot coloured
    by class spreads them."""
    import matplotlib

    return matplotlib.colormaps["coolwarm"](np.linspace(0, 1, max(classes, 2))[:classes])


def _points(ax: Any, classes: int, size: float, width: float) -> None:
    """Empty markers, one line per class, for `_Overlay.show` (a marker line is stamped, about
    5x faster for Agg to draw than a scatter plot's paths)."""
    for colour in class_colours(classes):
        ax.plot([], [], "o", ms=size ** 0.5, mfc=colour, mec="k", mew=width, ls="none")


def _frames_overlay(frames: Sequence[BoundaryFrame], extent: Sequence[float], x: torch.Tensor,
                    y: torch.Tensor) -> _Overlay:
    """The strip's overlay: built once per set of frame titles, shown again for new data (a
    sweep's or a pack's runs each split the data their own way)."""
    def build() -> _Overlay:
        fig = agg_figure((2.3 * len(frames), 2.6))
        axes = fig.subplots(1, len(frames), squeeze=False)[0]
        for ax, (epoch, _) in zip(axes, frames, strict=True):
            _points(ax, classes, 5, 0.15)
            ax.set(xticks=[], yticks=[])  # limits: `show`, per data set
            ax.set_title("init" if epoch == 0 else f"epoch {epoch}", fontsize=8)
        title = fig.suptitle("decision boundary over training (train points)", fontsize=9)
        return _Overlay(fig, axes, title)

    classes = int(y.max()) + 1
    key = ("boundary frames", classes, tuple(e for e, _ in frames))
    return built(key, build).show(x, y, extent)


def boundary_strip(frames: Sequence[BoundaryFrame], extent: Sequence[float], x: torch.Tensor,
                   y: torch.Tensor) -> bytes:
    """The decision boundary at several epochs side by side (epoch 0 = as initialised), PNG."""
    return encode_png(_frames_overlay(frames, extent, x, y).compose([c for _, c in frames]))


def boundary_gif(frames: Sequence[BoundaryFrame], extent: Sequence[float], x: torch.Tensor,
                 y: torch.Tensor, ms_per_frame: int = 600) -> bytes:
    """The same frames as an animated GIF (Pillow, which matplotlib already needs): the strip's
    panels, one per frame, each with its title."""
    from PIL import Image

    overlay = _frames_overlay(frames, extent, x, y)
    strip = overlay.compose([c for _, c in frames])
    width = strip.shape[1] / len(frames)
    images = [Image.fromarray(np.ascontiguousarray(
        strip[overlay.title_bottom:, round(i * width):round((i + 1) * width)])).quantize(
        64, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        for i in range(len(frames))]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=ms_per_frame, loop=0)
    return buffer.getvalue()


@torch.no_grad()
def decision_boundary(model, x: torch.Tensor, y: torch.Tensor, steps: int = 200) -> bytes:
    """The playground picture: predicted class over a grid, with the training points on top.
    PNG bytes."""
    x, y = x.cpu(), y.cpu()
    lo, hi = x.min(0).values - 0.5, x.max(0).values + 0.5
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], steps),
                            torch.linspace(lo[1], hi[1], steps), indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    was_training = model.training
    model.eval()
    scores = model(grid.to(next(model.parameters()).device)).cpu()
    model.train(was_training)
    grid_classes = scores.argmax(-1).reshape(steps, steps)
    classes = int(y.max()) + 1

    def build() -> _Overlay:
        fig = agg_figure((5, 4.2))
        ax = fig.add_subplot()
        _points(ax, classes, 8, 0.2)
        ax.set(title="decision boundary (train points)", xlabel="x1", ylabel="x2")
        return _Overlay(fig, [ax])

    extent = [lo[0].item(), hi[0].item(), lo[1].item(), hi[1].item()]
    overlay = built(("decision boundary", classes), build).show(x, y, extent)
    return encode_png(overlay.compose([grid_classes]))

