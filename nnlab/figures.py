"""Figures as pure functions: numbers in, a matplotlib Figure (a study's) or PNG/GIF bytes (a
run's instruments) out.

No function here reads MLflow, a trainer or a config; callers (nnlab.engine.instruments,
nnlab.report) collect the numbers and save or log what comes back. matplotlib is imported on
first use.
"""

from __future__ import annotations

import io
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
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


# -- a run's figures, cheap to draw again ---------------------------------------------------------
# A run's instruments draw the same kinds of figure run after run (a sweep: dozens in a process),
# so each kind is built once per layout (axes, fonts, layout) and drawn again with new data, and
# pictures that are pixels (decision boundaries) are composed as arrays under a layer of points,
# axes and titles that matplotlib renders once per data set. Encoded with Pillow, not savefig.

DPI = 90  # of every instruments PNG
KEEP = 16  # built figures kept per process (least recently used dropped)
_BUILT: OrderedDict[tuple, Any] = OrderedDict()


def _built(key: tuple, build: Callable[[], Any]) -> Any:
    """What `build()` returns, built once per key (a layout) and kept for the next call."""
    found = _BUILT.pop(key, None)
    _BUILT[key] = found if found is not None else build()
    while len(_BUILT) > KEEP:
        _BUILT.popitem(last=False)
    return _BUILT[key]


def _figure(figsize: tuple[float, float]) -> Any:
    """A bare Agg figure (no pyplot: nothing to close, nothing kept by a figure manager)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _pixels(figure: Any) -> np.ndarray:
    """The figure rendered, (H, W, 4) uint8 RGBA; laid out (tight) on its first drawing only."""
    if not getattr(figure, "nnlab_laid_out", False):
        figure.tight_layout()
        figure.nnlab_laid_out = True
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels[..., :3])).save(buffer, format="png",
                                                               compress_level=3)
    return buffer.getvalue()


def _digest(*tensors: torch.Tensor) -> tuple:
    """A key for figures drawn over these data (points of a data set)."""
    return tuple((tuple(t.shape), hash(t.detach().cpu().contiguous().numpy().tobytes()))
                 for t in tensors)


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

    return matplotlib.colormaps[name].with_extremes(bad="white")


def _show(shown: Any, image: torch.Tensor) -> None:
    """New data into an AxesImage, its colour scale over the data's range (NaN left out), as
    imshow sets it."""
    data = image.numpy()
    shown.set_data(data)
    finite = data[np.isfinite(data)]
    if finite.size:
        shown.set_clim(finite.min(), finite.max())


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
        fig = _figure((max(4.0, tile * cols + 0.4), tile * rows + 0.8))
        ax = fig.add_subplot()
        shown = ax.imshow(image.numpy(), cmap=_cmap("gray"), interpolation="nearest")
        ax.axis("off")
        ax.set_title(f"{title}\n(out, in, h, w) = {tuple(w.shape)}", fontsize=9)
        return fig, shown

    fig, shown = _built(("kernels", tuple(w.shape), title), build)
    _show(shown, image)
    return _png(_pixels(fig))


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
        fig = _figure((1.1 * max_channels, 1.2 * len(maps) + 1.6))
        axes = fig.subplots(len(maps) + 1, 1, squeeze=False)[:, 0]
        shown = [axes[0].imshow(picture.numpy(), cmap="gray")]
        axes[0].set_title("input", fontsize=8)
        for ax, (name, fmap), row in zip(axes[1:], maps, rows, strict=True):
            shown.append(ax.imshow(row.numpy(), cmap=_cmap("viridis"), interpolation="nearest"))
            ax.set_title(f"{name} {tuple(fmap.shape)}", fontsize=8)
        for ax in axes:
            ax.axis("off")
        fig.suptitle("feature maps of one test image, layer by layer", fontsize=9)
        return fig, shown

    key = ("feature maps", tuple(picture.shape), max_channels,
           tuple((name, tuple(fmap.shape)) for name, fmap in maps))
    fig, shown = _built(key, build)
    for artist, data in zip(shown, [picture, *rows], strict=True):
        _show(artist, data)
    return _png(_pixels(fig))


# -- 2-D decision boundary over training --------------------------------------------------------

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
        self.rgba = _pixels(figure).copy()
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
        fig = _figure((2.3 * len(frames), 2.6))
        axes = fig.subplots(1, len(frames), squeeze=False)[0]
        for ax, (epoch, _) in zip(axes, frames, strict=True):
            _points(ax, x, y, 5, 0.15)
            ax.set(xlim=extent[:2], ylim=extent[2:], xticks=[], yticks=[])
            ax.set_title("init" if epoch == 0 else f"epoch {epoch}", fontsize=8)
        title = fig.suptitle("decision boundary over training (train points)", fontsize=9)
        return _Overlay(fig, axes, int(y.max()) + 1, title)

    key = ("boundary frames", tuple(extent), tuple(e for e, _ in frames), *_digest(x, y))
    return _built(key, build)


def boundary_strip(frames: Sequence[BoundaryFrame], extent: Sequence[float], x: torch.Tensor,
                   y: torch.Tensor) -> bytes:
    """The decision boundary at several epochs side by side (epoch 0 = as initialised), PNG."""
    return _png(_frames_overlay(frames, extent, x, y).compose([c for _, c in frames]))


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


# -- one run's instruments ------------------------------------------------------------------


def weight_histograms(
    histograms: Sequence[tuple[str, tuple[int, ...], float, torch.Tensor, torch.Tensor]],
) -> bytes:
    """One histogram per layer of its weights, as initialised. PNG bytes."""
    cols = min(4, len(histograms))
    rows = -(-len(histograms) // cols)

    def build() -> tuple[Any, list[tuple[Any, Any]]]:
        fig = _figure((3.2 * cols, 2.4 * rows))
        axes = list(fig.subplots(rows, cols, squeeze=False).flat)
        for ax in axes[len(histograms):]:
            ax.axis("off")
        for ax in axes:
            ax.tick_params(labelsize=7)
        fig.suptitle("weights right after init")
        return fig, [(ax, ax.stairs([0.0], [0.0, 1.0], fill=True, color="tab:blue"))
                     for ax in axes[:len(histograms)]]

    fig, panels = _built(("weight histograms", rows, cols, len(histograms)), build)
    for (ax, stairs), (name, shape, std, counts, edges) in zip(panels, histograms, strict=True):
        stairs.set_data(counts.numpy(), edges.numpy())
        ax.set_title(f"{name} {shape}\nstd={std:.3g}", fontsize=8)
        ax.relim()
        ax.autoscale_view()
    return _png(_pixels(fig))


def learning_curves(curves: dict[str, list[tuple[int, float]]]) -> bytes:
    """Loss curves on the left, the other per-epoch metrics on the right, against steps. PNG."""
    keys = sorted(key for key, points in curves.items() if points)

    def build() -> tuple[Any, list[Any], dict[str, Any]]:
        fig = _figure((10, 3.6))
        left, right = fig.subplots(1, 2)
        lines = {key: (left if "loss" in key else right).plot([], [], label=key)[0]
                 for key in keys}
        for ax, title in ((left, "loss"), (right, "metrics")):
            ax.set_xlabel("step")
            ax.set_title(title)
            if ax.lines:
                ax.legend(fontsize=7)
        return fig, [left, right], lines

    fig, axes, lines = _built(("learning curves", *keys), build)
    for key, line in lines.items():
        steps, values = zip(*sorted(curves[key]), strict=True)
        line.set_data(steps, values)
        line.set_marker("." if len(steps) < 30 else "None")
    for ax in axes:
        ax.relim()
        ax.autoscale_view()
    return _png(_pixels(fig))


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> bytes:
    """The test set's confusion matrix with its counts, PNG bytes."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    counts = multiclass_confusion_matrix(predicted, target, num_classes)

    def build() -> tuple[Any, Any, Any, list[Any]]:
        fig = _figure((4.6, 4))
        ax = fig.add_subplot()
        shown = ax.imshow(np.zeros((num_classes, num_classes)), cmap="Blues")
        fig.colorbar(shown, ax=ax)
        texts = [ax.text(j, i, "", ha="center", va="center", fontsize=7)
                 for i in range(num_classes) for j in range(num_classes)]
        ax.set(xlabel="predicted", ylabel="true", xticks=range(num_classes),
               yticks=range(num_classes))
        return fig, ax, shown, texts

    fig, ax, shown, texts = _built(("confusion matrix", num_classes), build)
    _show(shown, counts.float())
    for text, n in zip(texts, counts.flatten().tolist(), strict=True):
        text.set_text(str(n) if n else "")
    acc = counts.diag().sum().item() / max(counts.sum().item(), 1)
    ax.set_title(f"test confusion matrix (acc {acc:.3f})")
    return _png(_pixels(fig))


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
        fig = _figure((5, 4.2))
        ax = fig.add_subplot()
        _points(ax, x, y, 8, 0.2)
        ax.set(xlim=(lo[0].item(), hi[0].item()), ylim=(lo[1].item(), hi[1].item()),
               title="decision boundary (train points)", xlabel="x1", ylabel="x2")
        return _Overlay(fig, [ax], int(y.max()) + 1)

    return _png(_built(("decision boundary", *_digest(x, y)), build).compose([classes]))


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
