"""Figures drawn in a second process (nnlab.away): a figure function of nnlab.figures and its
arguments (plain tensors) in, PNG/GIF bytes out, while the caller goes on (a pack's members'
end-of-run figures, on the core its one-thread training leaves idle). A job it cannot draw comes
back as None: the caller draws it itself (an error in the figure is then raised there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nnlab.away import Away
from nnlab.away import serve as serve_jobs


class Drawer(Away):
    """A drawing process, started at once (its imports overlap the caller's work)."""

    def __init__(self) -> None:
        super().__init__("nnlab.drawing")


class KnownScores(nn.Module):
    """A trained net's scores on one grid of points, computed by the caller on the net's own
    device: what nnlab.figures.decision_boundary asks its model for, without the model."""

    def __init__(self, points: torch.Tensor, scores: torch.Tensor) -> None:
        super().__init__()
        self.points, self.scores = points, scores
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)  # a device to ask

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if not torch.equal(points, self.points):
            raise ValueError("KnownScores: asked for other points than it was computed on")
        return self.scores


@torch.no_grad()
def boundary_scores(model: nn.Module, x: torch.Tensor, steps: int = 200) -> KnownScores:
    """The model's scores over decision_boundary's grid around the 2-D inputs x (N, 2)."""
    x = x.cpu()
    lo, hi = x.min(0).values - 0.5, x.max(0).values + 0.5
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], steps),
                            torch.linspace(lo[1], hi[1], steps), indexing="xy")
    points = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    was_training = model.training
    model.eval()
    scores = model(points.to(next(model.parameters()).device)).cpu()
    model.train(was_training)
    return KnownScores(points, scores)


def portable(value: Any) -> Any:
    """`value` with every tensor detached on the CPU (a drawing process never touches a GPU);
    ValueError for a model, which only its scores can stand for (boundary_scores)."""
    if isinstance(value, nn.Module) and not isinstance(value, KnownScores):
        raise ValueError("a model cannot be drawn away")
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, list | tuple):
        return type(value)(portable(v) for v in value)
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    return value


def serve() -> None:
    """The drawing process: jobs from stdin, PNG/GIF bytes (None: could not) to stdout."""
    serve_jobs(_warm_up, "drawing")


def _warm_up() -> Callable[[Callable[..., Any], tuple], bytes]:
    """Load what every figure needs (Agg, fonts, Pillow's PNG encoder) before the first job."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    # lazy: only the drawing process draws; this module is imported by callers too
    from nnlab.figures import png_bytes

    torch.set_num_threads(1)
    figure = Figure(figsize=(1, 1))
    FigureCanvasAgg(figure)
    figure.add_subplot().set_title("warm-up")
    figure.canvas.draw()
    Image.new("RGB", (2, 2)).save(io.BytesIO(), format="png")
    return lambda draw, args: png_bytes(draw(*args))
