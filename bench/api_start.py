"""nnlab.train from Python: time from the call to the first training step, first call in a fresh
process (imports included) vs later calls in the same process (what a notebook's second cell
pays). Appends a section to bench/results.md.

    python bench/api_start.py [--repeats 3] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ["model=lenet5", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
       "trainer.limit_val_batches=1", "instruments.plots=false",
       "trainer.enable_progress_bar=false"]

# One process: nnlab.train three times; each call's seconds from the call to its first batch.
DRIVER = """
import sys, time
import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
marks = []
class First(Callback):
    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == 0 and len(marks) < len(starts):
            marks.append(time.perf_counter())
init = pl.Trainer.__init__
def patched(self, *a, callbacks=None, **k):
    init(self, *a, callbacks=[*(callbacks or []), First()], **k)
pl.Trainer.__init__ = patched
starts = []
starts.append(time.perf_counter())
import nnlab
for seed in range(int(sys.argv[1])):
    if seed:
        starts.append(time.perf_counter())
    nnlab.train(*sys.argv[2:], f"seed={seed}")
print("MARKS", [m - s for s, m in zip(starts, marks)])
"""


def one_process(calls: int, cwd: str) -> list[float]:
    """[first call's seconds to its first step, second call's, ...] in one fresh process."""
    done = subprocess.run([sys.executable, "-c", DRIVER, str(calls), *RUN], cwd=cwd,
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = next(x for x in done.stdout.splitlines() if x.startswith("MARKS"))
    return eval(line.removeprefix("MARKS"))  # a list of floats printed by DRIVER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes")
    parser.add_argument("--calls", type=int, default=3, help="nnlab.train calls per process")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3]
    firsts, laters = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            marks = one_process(args.calls, tmp)
            firsts.append(marks[0])
            laters += marks[1:]
            print(f"first {marks[0]:.2f} s, later {', '.join(f'{m:.2f}' for m in marks[1:])} s")
    first, later = statistics.median(firsts), statistics.median(laters)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    met = "yes" if later < 2 else "no"
    section = f"""
## nnlab.train in one process: call -> first training step ({when})

LeNet-5 on digits (`{' '.join(RUN)}`), {args.repeats} fresh processes x {args.calls} calls,
into one existing sqlite store; load average {' '.join(load)} before, {' '.join(load_after)}
after (2-core CPU, shared).

| figure | target | measured (median) | met |
|---|---|---|---|
| first `nnlab.train` in a fresh process (imports included) | - | {first:.2f} s | - |
| a later `nnlab.train` in the same process | < 2 s | {later:.2f} s | {met} |
| later / first | - | {later / first:.2f} | - |

All calls: first {', '.join(f'{x:.2f}' for x in firsts)} s; later
{', '.join(f'{x:.2f}' for x in laters)} s. The first call is mostly imports (torch, Lightning,
MLflow, Hydra's plugins); a later one pays Hydra's composition, nnlab's validation, the data,
the store and the run's set-up only. `python bench/api_start.py` appends this section.
"""
    print(section)
    if not args.no_write:
        with open(ROOT / "bench" / "results.md", "a") as out:
            out.write(section)


if __name__ == "__main__":
    main()
