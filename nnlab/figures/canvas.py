"""The figures' shared canvas: headless matplotlib, PNG encoding, and the cache of built figures
that a run's instruments draw again with new data."""

from __future__ import annotations

import io
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
KEEP = 16  # built figures kept per process (least recently used dropped)
_BUILT: OrderedDict[tuple, Any] = OrderedDict()


def built(key: tuple, build: Callable[[], Any]) -> Any:
    """What `build()` returns, built once per key (a layout) and kept for the next call."""
    found = _BUILT.pop(key, None)
    _BUILT[key] = found if found is not None else build()
    while len(_BUILT) > KEEP:
        _BUILT.popitem(last=False)
    return _BUILT[key]


def agg_figure(figsize: tuple[float, float]) -> Any:
    """A bare Agg figure (no pyplot: nothing to close, nothing kept by a figure manager)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def pixels(figure: Any) -> np.ndarray:
    """The figure rendered, (H, W, 4) uint8 RGBA; laid out (tight) on its first drawing only."""
    if not getattr(figure, "nnlab_laid_out", False):
        figure.tight_layout()
        figure.nnlab_laid_out = True
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())


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

