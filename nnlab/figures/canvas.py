"""The figures' shared canvas: headless matplotlib, PNG encoding, and the cache of built figures
that a run's instruments draw again with new data."""

from __future__ import annotations

import io
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(figure: Any, dpi: int = 90) -> bytes:
    """The figure as PNG bytes; the figure is closed (PNG bytes pass through)."""
    if isinstance(figure, bytes):
        return figure
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(figure)
    return buffer.getvalue()


# -- a run's figures, cheap to draw again ---------------------------------------------------------
# A run's instruments draw the same kinds of figure run after run (a sweep: dozens in a process),
# so each kind is built once per layout (axes, fonts, layout) and drawn again with new data, and
# pictures that are pixels (decision boundaries) are composed as arrays under a layer of points,
# axes and titles that matplotlib renders once per data set. Encoded with Pillow, not savefig.

DPI = 90  # of every instruments PNG
KEEP = 4  # built figures kept per kind and process (least recently used dropped)
_BUILT: OrderedDict[tuple, Any] = OrderedDict()


def built(key: tuple, build: Callable[[], Any]) -> Any:
    """What `build()` returns, built once per key (a layout; key[0] names its kind) and kept for
    the next call. Kept per kind: a pack's members, each with other data, must not push out the
    figures every member draws again (a pack drew each member's figures from scratch)."""
    found = _BUILT.pop(key, None)
    _BUILT[key] = found if found is not None else build()
    same_kind = [k for k in _BUILT if k[0] == key[0]]
    for old in same_kind[:-KEEP]:
        del _BUILT[old]
    return _BUILT[key]


def agg_figure(figsize: tuple[float, float]) -> Any:
    """A bare Agg figure (no pyplot: nothing to close, nothing kept by a figure manager)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def pixels(figure: Any) -> np.ndarray:
    """The figure rendered, (H, W, 4) uint8 RGBA; laid out (tight) on its first drawing and
    again whenever its tick labels changed (new data), so that a picture depends only on what
    it shows, not on what the figure showed before."""
    ticks = tick_labels(figure)
    if getattr(figure, "nnlab_laid_out_for", None) != ticks:
        # tight_layout starts from the current layout: start each from the figure's first
        start = getattr(figure, "nnlab_first_layout", None)
        if start is None:
            pars = figure.subplotpars
            figure.nnlab_first_layout = {k: getattr(pars, k) for k in
                                         ("left", "bottom", "right", "top", "wspace", "hspace")}
        else:
            figure.subplots_adjust(**start)
        figure.tight_layout()
        figure.nnlab_laid_out_for = ticks
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())


def tick_labels(figure: Any) -> tuple:
    """Every axis's tick labels as they would be drawn now, each digit as 0: what a tight
    layout depends on (matplotlib's default font draws every digit equally wide), so new data
    with labels of the same shape keeps the layout and the figure is not laid out again."""
    return tuple(tuple(_DIGIT.sub("0", label) for label in
                       axis.get_major_formatter().format_ticks(axis.get_major_locator()()))
                 for ax in figure.axes for axis in (ax.xaxis, ax.yaxis) if axis.get_visible())


_DIGIT = re.compile(r"\d")


def encode_png(rgba: np.ndarray) -> bytes:
    """Rendered pixels (H, W, 3 or 4) as PNG bytes, by Pillow (faster than savefig)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(buffer, format="png",
                                                               compress_level=3)
    return buffer.getvalue()


def digest(*tensors: torch.Tensor) -> tuple:
    """A key for figures drawn over these data (points of a data set)."""
    return tuple((tuple(t.shape), hash(t.detach().cpu().contiguous().numpy().tobytes()))
                 for t in tensors)


def colormap(name: str) -> Any:
    """A matplotlib colormap that draws NaN (the gaps of a mosaic) white."""
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="white")


def show_image(shown: Any, image: torch.Tensor) -> None:
    """New data into an AxesImage, its colour scale over the data's range (NaN left out), as
    imshow sets it."""
    data = image.numpy()
    shown.set_data(data)
    finite = data[np.isfinite(data)]
    if finite.size:
        shown.set_clim(finite.min(), finite.max())

