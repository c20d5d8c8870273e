"""What a person sees: a default run in a 100-column terminal prints no warning, no INFO line, and
nothing wider than the terminal (the progress bar included)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_terminal(cwd: Path, *args: str, columns: int = 100) -> str:
    """The CLI's whole output as a terminal of `columns` x 40 shows it (colours stripped)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen([sys.executable, "-m", "nnlab", *args], cwd=cwd,
                               stdin=follower, stdout=follower, stderr=follower,
                               env={**env, "TERM": "xterm-256color"}, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=600) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    os.close(leader)
    return ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def test_a_default_run_fits_a_100_column_terminal_and_says_nothing_needless(
    tmp_path: Path,
) -> None:
    screen = run_in_terminal(tmp_path, "trainer.max_epochs=2")
    lines = [line for line in re.split(r"[\r\n]", screen) if line.strip()]
    assert any(line.startswith("nnlab: FINISHED val/acc=") for line in lines), screen[-2000:]
    assert any("Epoch 1/1" in line for line in lines), "the progress bar was shown"
    too_wide = [line for line in lines if len(line.rstrip()) > 100]
    assert not too_wide, too_wide
    for noise in ("Warning", "warn(", "INFO", "v_num", "litlogger", "Tip:"):
        assert noise not in screen, (noise, screen[-3000:])
