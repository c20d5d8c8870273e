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
    """A boundary figure without its class colours: points, axes and titles rendered once, on a
    transparent background, and each axes' pixel box; `compose` lays class grids under it."""

    def __init__(self, figure: Any, axes: Sequence[Any], classes: int,
                 title: Any = None) -> None:
        figure.patch.set_alpha(0)
        for ax in axes:
            ax.patch.set_alpha(0)
        self.rgba = pixels(figure).copy()
        self.height = self.rgba.shape[0]
        self.boxes = [self._box(ax) for ax in axes]
        # the first pixel row under the figure's title (`title`: its suptitle)
        self.title_bottom = 0 if title is None else round(
            self.height - title.get_window_extent(figure.canvas.get_renderer()).y0)
        import matplotlib

        cmap = matplotlib.colormaps["coolwarm"]
        colours = cmap(np.linspace(0, 1, max(classes, 2)))[:classes, :3] if classes > 1 else \
            cmap([0.0])[:, :3]
        self.colours = (BOUNDARY_ALPHA * colours + 1 - BOUNDARY_ALPHA).astype(np.float32)
        self.last: tuple[list[torch.Tensor], np.ndarray] | None = None

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


def _points(ax: Any, x: torch.Tensor, y: torch.Tensor, size: float, width: float) -> None:
    ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), c=y.numpy(), s=size, cmap="coolwarm",
               edgecolors="k", linewidths=width)


def _frames_overlay(frames: Sequence[BoundaryFrame], extent: Sequence[float], x: torch.Tensor,
                    y: torch.Tensor) -> _Overlay:
    def build() -> _Overlay:
        fig = agg_figure((2.3 * len(frames), 2.6))
        axes = fig.subplots(1, len(frames), squeeze=False)[0]
        for ax, (epoch, _) in zip(axes, frames, strict=True):
            _points(ax, x, y, 5, 0.15)
            ax.set(xlim=extent[:2], ylim=extent[2:], xticks=[], yticks=[])
            ax.set_title("init" if epoch == 0 else f"epoch {epoch}", fontsize=8)
        title = fig.suptitle("decision boundary over training (train points)", fontsize=9)
        return _Overlay(fig, axes, int(y.max()) + 1, title)

    key = ("boundary frames", tuple(extent), tuple(e for e, _ in frames), *digest(x, y))
    return built(key, build)


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
    classes = scores.argmax(-1).reshape(steps, steps)

    def build() -> _Overlay:
        fig = agg_figure((5, 4.2))
        ax = fig.add_subplot()
        _points(ax, x, y, 8, 0.2)
        ax.set(xlim=(lo[0].item(), hi[0].item()), ylim=(lo[1].item(), hi[1].item()),
               title="decision boundary (train points)", xlabel="x1", ylabel="x2")
        return _Overlay(fig, [ax], int(y.max()) + 1)

    return encode_png(built(("decision boundary", *digest(x, y)), build).compose([classes]))

