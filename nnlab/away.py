"""A helper process: jobs (a function and its arguments, pickled) in, their bytes out, while the
caller goes on. nnlab.drawing draws a pack's figures in one, nnlab.tracking.writer writes a
pack's metrics in another; each on the core a pack's one-thread training leaves idle.

The process is `python -c` on the serving module (not multiprocessing, which would run the
caller's unguarded script again), in a session of its own so a Ctrl-C at the terminal reaches
only the caller, which ends it; it also ends when its stdin closes, so a killed caller leaves no
stray process. A job it cannot do comes back as None: the caller does it itself (an error is
then raised where it would have been). No torch and no MLflow here: each server imports what its
jobs need.
"""

from __future__ import annotations

import contextlib
import gc
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

READY = "ready"  # a helper process's first message: imported and warmed up
_SIZE = struct.Struct("<Q")


class Away:
    """A helper process running `<module>.serve()`, started at once (its imports overlap the
    caller's work). `submit` queues a job without waiting; `results` returns what came back:
    (key, bytes or None)."""

    def __init__(self, module: str) -> None:
        root = str(Path(__file__).resolve().parents[1])
        code = f"import sys; sys.path.insert(0, {root!r}); from {module} import serve; serve()"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env, start_new_session=True)
        self.ready = False  # imported and warmed up: jobs are done at once
        self.ended = False  # nothing more comes back (every result before the end returned)
        self.away = 0  # jobs submitted and not yet back
        self._closed = False
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self._back: queue.Queue[tuple[Hashable, bytes | None] | None] = queue.Queue()
        threading.Thread(target=self._send, daemon=True).start()
        threading.Thread(target=self._receive, daemon=True).start()

    def submit(self, key: Hashable, job: Callable[..., Any], *args: Any) -> None:
        self.away += 1
        self._out.put(pickle.dumps((key, pickle.dumps((job, args)))))

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
        """End the process: at once while it is still starting or has jobs away (the caller
        does what did not come back), else once it has read the end of its input."""
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


def spare_cpu() -> bool:
    """Whether this process may use a second CPU, where a helper process works beside it."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cpus or 1) >= 2


def serve(warm_up: Callable[[], Callable[[Callable[..., Any], tuple], bytes]],
          what: str) -> None:
    """A helper process's loop: `do = warm_up()` (the imports), then jobs from stdin and
    `do(function, args)`'s bytes (None: could not) to stdout, until stdin closes. Anything
    printed goes to stderr, not into the results; `what` names the work in the message of a job
    that failed."""
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    do = warm_up()
    _write(results, pickle.dumps(READY))
    while (frame := _read(sys.stdin.buffer)) is not None:
        key, job = pickle.loads(frame)
        try:
            function, args = pickle.loads(job)
            out: bytes | None = do(function, args)
        except Exception as err:  # the caller does it again, where an error is raised
            print(f"nnlab: the {what} process could not do {key}: {type(err).__name__}: {err}",
                  file=sys.stderr, flush=True)
            out = None
        _write(results, pickle.dumps((key, out)))
    gc.freeze()  # no collections at exit: the caller may be waiting (see nnlab.__main__)


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
