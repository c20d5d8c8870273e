"""Figures drawn in a second process: a figure function of nnlab.figures and its arguments (plain
tensors) in, PNG/GIF bytes out, while the caller goes on (a pack's members' end-of-run figures,
on the core its one-thread training leaves idle).

The drawing process is `python -c` on this module (not multiprocessing, which would run the
caller's unguarded script again), in a session of its own so a Ctrl-C at the terminal reaches
only the caller, which ends it; it also ends when its stdin closes, so a killed caller leaves no
stray process. A job it cannot draw comes back as None: the caller draws it itself (an error in
the figure is then raised where it would have been).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

READY = "ready"  # the drawing process's first message: imported and warmed up
_SIZE = struct.Struct("<Q")


class Drawer:
    """A drawing process, started at once (its imports overlap the caller's work). `submit`
    queues a job without waiting; `results` returns what came back: (key, bytes or None)."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[1])
        code = f"import sys; sys.path.insert(0, {root!r}); from nnlab.drawing import serve; serve()"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env, start_new_session=True)
        self.ready = False  # imported and warmed up: jobs are drawn at once
        self.ended = False  # nothing more comes back (every result before the end returned)
        self.away = 0  # jobs submitted and not yet back
        self._closed = False
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self._back: queue.Queue[tuple[Hashable, bytes | None] | None] = queue.Queue()
        threading.Thread(target=self._send, daemon=True).start()
        threading.Thread(target=self._receive, daemon=True).start()

    def submit(self, key: Hashable, draw: Callable[..., Any], *args: Any) -> None:
        self.away += 1
        self._out.put(pickle.dumps((key, pickle.dumps((draw, args)))))

    def results(self, timeout: float | None = 0) -> list[tuple[Hashable, bytes | None]]:
        """What came back (waiting up to `timeout` s for the first; None: until one comes, or
        the process ends)."""
        found = []
        try:
            item = self._back.get(timeout=timeout) if timeout != 0 else self._back.get_nowait()
            while True:
                if item is None:  # the process ended: nothing more comes back
                    self._back.put(None)
                    self.ended = True
                    break
                found.append(item)
                item = self._back.get_nowait()
        except queue.Empty:
            pass
        self.away -= len(found)
        return found

    def close(self) -> None:
        """End the process: at once while it is still starting or has jobs away (nothing of
        value is lost), else once it has read the end of its input."""
        if self._closed:
            return
        self._closed = True
        self._out.put(None)  # the sender closes the process's input
        if self.away or not self.ready:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _send(self) -> None:
        pipe = self.process.stdin
        with contextlib.suppress(OSError):  # the process ended; the receiver says so
            while (frame := self._out.get()) is not None:
                _write(pipe, frame)
        with contextlib.suppress(OSError):
            pipe.close()

    def _receive(self) -> None:
        try:
            while (frame := _read(self.process.stdout)) is not None:
                message = pickle.loads(frame)
                if message == READY:
                    self.ready = True
                else:
                    self._back.put(message)
        except (OSError, pickle.UnpicklingError, EOFError):
            pass
        self.ready = False
        self._back.put(None)


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
    """The drawing process: jobs from stdin, PNG/GIF bytes (None: could not) to stdout, until
    stdin closes. Anything printed goes to stderr, not into the results."""
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    torch.set_num_threads(1)
    # lazy: only the drawing process draws; the module itself is imported by callers too
    from nnlab.figures import png_bytes

    _warm_up()
    _write(results, pickle.dumps(READY))
    while (frame := _read(sys.stdin.buffer)) is not None:
        key, job = pickle.loads(frame)
        try:
            draw, args = pickle.loads(job)
            picture: bytes | None = png_bytes(draw(*args))
        except Exception as err:  # the caller draws it again, where an error is raised
            print(f"nnlab: the drawing process could not draw {key}: {type(err).__name__}: "
                  f"{err}", file=sys.stderr, flush=True)
            picture = None
        _write(results, pickle.dumps((key, picture)))


def _warm_up() -> None:
    """Load what every figure needs (Agg, fonts, Pillow's PNG encoder) before the first job."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    figure = Figure(figsize=(1, 1))
    FigureCanvasAgg(figure)
    figure.add_subplot().set_title("warm-up")
    figure.canvas.draw()
    Image.new("RGB", (2, 2)).save(io.BytesIO(), format="png")


def _write(pipe: IO[bytes], frame: bytes) -> None:
    pipe.write(_SIZE.pack(len(frame)) + frame)
    pipe.flush()


def _read(pipe: IO[bytes]) -> bytes | None:
    """One frame, or None at the end of the input."""
    head = pipe.read(_SIZE.size)
    if len(head) < _SIZE.size:
        return None
    frame = pipe.read(_SIZE.unpack(head)[0])
    return frame if len(frame) == _SIZE.unpack(head)[0] else None
