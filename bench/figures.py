"""Where a run's instruments figures spend their time, per figure, in one process.

    python bench/figures.py [--repeats R] [--out bench/results.md]

Trains two real runs with the instruments on (an MLP on moons, 50 epochs: weights at init,
learning curves, confusion matrix, decision boundary, its frames and GIF; LeNet-5 on digits, 2
epochs: + kernels at init and trained, feature maps), timing every `log_figure` call: drawing
(the figure function), encoding (savefig / GIF), logging (MLflow's log_artifact); and the whole
of the end-of-run figures (`Instruments._end_plots`, which also reads the learning curves'
metric histories back). The first run pays matplotlib's import; later runs in the process do
not, as a sweep's do. Then the default `python -m nnlab` (LeNet-5 on digits) as a process: its
wall time and the seconds it spends in the figures (the pictures' share).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RUNS = {
    "mlp on moons, 50 epochs": ["model=mlp", "dataset=moons", "trainer.max_epochs=50"],
    "lenet5 on digits, 2 epochs": ["model=lenet5", "dataset=digits", "trainer.max_epochs=2"],
}

# `python -m nnlab` with the time spent in the instruments' figures written to $FIGURES_FILE.
TIMED_CLI = """
import os, time
from nnlab.engine import instruments
spent = [0.0]
def timed(method):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start
    return wrapper
instruments.Instruments._end_plots = timed(instruments.Instruments._end_plots)
instruments.Instruments._init_plot = timed(instruments.Instruments._init_plot)
try:
    from nnlab.__main__ import main
    main()
finally:
    open(os.environ["FIGURES_FILE"], "w").write(repr(spent[0]))
"""


def timed_figures(repeats: int) -> tuple[dict[str, dict[str, list[float]]], list[str]]:
    """Per run and figure: [draw, encode, log, total] seconds of each repeat."""
    import matplotlib.figure
    from mlflow.tracking import MlflowClient

    from nnlab.config import register_configs  # noqa: F401  (the schema for compose)
    from nnlab.engine import instruments, train_one

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import _compose_cfg

    found: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    current: dict[str, float] = {}
    real_log_figure, real_savefig = instruments.log_figure, matplotlib.figure.Figure.savefig
    real_log_artifact = MlflowClient.log_artifact

    def clocked(key: str, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                current[key] = current.get(key, 0.0) + time.perf_counter() - start
        return wrapper

    def log_figure(tracker, folder, filename, draw, *args):
        current.clear()
        start = time.perf_counter()
        real_log_figure(tracker, folder, filename, clocked("draw", draw), *args)
        total = time.perf_counter() - start
        found[run_name][filename].append([current.get("draw", 0.0), current.get("encode", 0.0),
                                          current.get("log", 0.0), total])

    instruments.log_figure = log_figure
    matplotlib.figure.Figure.savefig = clocked("encode", real_savefig)
    MlflowClient.log_artifact = clocked("log", real_log_artifact)
    end_plots = instruments.Instruments._end_plots

    def whole(self, trainer, pl_module):
        start = time.perf_counter()
        end_plots(self, trainer, pl_module)
        found[run_name]["all end-of-run figures"].append([0, 0, 0, time.perf_counter() - start])

    instruments.Instruments._end_plots = whole
    notes = []
    try:
        for repeat in range(repeats + 1):  # the first round pays matplotlib's import
            for run_name_, overrides in RUNS.items():
                run_name = run_name_ if repeat else f"{run_name_} (first in the process)"
                with tempfile.TemporaryDirectory() as tmp:
                    cfg = _compose_cfg([*overrides, "accelerator=cpu",
                                        "trainer.enable_progress_bar=false",
                                        f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
                                        f"mlflow.artifact_root={tmp}/artifacts"])
                    start = time.perf_counter()
                    train_one(cfg, output_dir=Path(tmp))
                    found[run_name]["the whole run (train_one)"].append(
                        [0, 0, 0, time.perf_counter() - start])
    finally:
        instruments.log_figure, matplotlib.figure.Figure.savefig = real_log_figure, real_savefig
        MlflowClient.log_artifact = real_log_artifact
        instruments.Instruments._end_plots = end_plots
    return {run: {fig: [statistics.median(t[i] for t in times) for i in range(4)]
                  for fig, times in figs.items()} for run, figs in found.items()}, notes


def default_run_share(repeats: int) -> list[tuple[float, float]]:
    """(wall s, figures s) of `python -m nnlab` (the default job), per repeat."""
    found = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "figures_s"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", TIMED_CLI, "trainer.enable_progress_bar=false"],
                           cwd=tmp, check=True, capture_output=True,
                           env={**os.environ, "PYTHONPATH": str(REPO),
                                "FIGURES_FILE": str(out)})
            found.append((time.perf_counter() - start, float(out.read_text())))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "bench" / "results.md"))
    parser.add_argument("--label", default="", help="a word on what this measures (before/after)")
    args = parser.parse_args(argv)

    load = os.getloadavg()[0]
    figures, _ = timed_figures(args.repeats)
    lines = [f"## Figures per run {args.label} ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"bench/figures.py)", "",
             f"- load average at start {load:.1f}; medians of {args.repeats} (first-in-process "
             "rows: 1)", "",
             "| run | figure | draw s | encode s | log s | total s |", "|---|---|---|---|---|---|"]
    for run, figs in figures.items():
        for fig, (draw, encode, log, total) in figs.items():
            lines.append(f"| {run} | {fig} | {draw:.3f} | {encode:.3f} | {log:.3f} | "
                         f"{total:.3f} |")
    shares = default_run_share(args.repeats)
    wall = statistics.median(w for w, _ in shares)
    spent = statistics.median(s for _, s in shares)
    lines += ["", f"- default `python -m nnlab` (LeNet-5 on digits): wall {wall:.2f} s, figures "
              f"{spent:.2f} s = **{100 * spent / wall:.1f}%** of the wall time (each repeat: "
              + ", ".join(f"{s:.2f}/{w:.2f}" for w, s in shares) + ")",
              f"- load average at end {os.getloadavg()[0]:.1f}", ""]
    print("\n".join(lines))
    with Path(args.out).open("a") as handle:
        handle.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
