"""Where a run's instruments figures spend their time, per figure, in one process.

    python bench/figures.py [--repeats R] [--before TREE] [--out bench/results.md]

Trains two real runs with the instruments on (an MLP on moons, 50 epochs: weights at init,
learning curves, confusion matrix, decision boundary, its frames and GIF; LeNet-5 on digits, 2
epochs: + kernels at init and trained, feature maps), timing every `log_figure` call: drawing
(the figure function), encoding (savefig / GIF), logging (MLflow's log_artifact); and the whole
of the end-of-run figures (`Instruments._end_plots`, which also reads the learning curves'
metric histories back). Times are CPU seconds of the process (time.process_time), which the
other jobs of a shared machine disturb far less than wall time. The first run pays
matplotlib's import; later runs in the process do not, as a sweep's do. Then the default
`python -m nnlab` (LeNet-5 on digits) as a process: its CPU seconds in all and in the figures
(the pictures' share). With `--before TREE` (another checkout of nnlab, e.g. `git archive main
| tar -x -C TREE`) both trees are measured in the same run, in alternating fresh processes.
"""

from __future__ import annotations

import argparse
import json
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

RUNS = {
    "mlp on moons, 50 epochs": ["model=mlp", "dataset=moons", "trainer.max_epochs=50"],
    "lenet5 on digits, 2 epochs": ["model=lenet5", "dataset=digits", "trainer.max_epochs=2"],
}

# `python -m nnlab` (the module run as __main__, as the command runs it) with the CPU and wall
# seconds spent in the instruments' figures written to $FIGURES_FILE.
TIMED_CLI = """
import os, runpy, time
from nnlab.engine import instruments
spent = [0.0, 0.0]
def timed(method):
    def wrapper(*args, **kwargs):
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - cpu
            spent[1] += time.perf_counter() - wall
    return wrapper
instruments.Instruments._end_plots = timed(instruments.Instruments._end_plots)
instruments.Instruments._init_plot = timed(instruments.Instruments._init_plot)
try:
    runpy.run_module("nnlab", run_name="__main__")
finally:
    open(os.environ["FIGURES_FILE"], "w").write(repr(spent))
"""


def timed_figures(repeats: int) -> dict[str, dict[str, list[float]]]:
    """Per run and figure: [draw, encode, log, total] seconds of each repeat."""
    import matplotlib.figure
    from mlflow.tracking import MlflowClient

    import nnlab
    from nnlab.engine import instruments, train_one

    sys.path.insert(0, str(Path(nnlab.__file__).parents[1] / "tests"))  # the measured tree's
    from conftest import _compose_cfg

    found: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    current: dict[str, float] = {}
    real_log_figure, real_savefig = instruments.log_figure, matplotlib.figure.Figure.savefig
    real_log_artifact = MlflowClient.log_artifact

    def clocked(key: str, fn):
        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                current[key] = current.get(key, 0.0) + time.process_time() - start
        return wrapper

    def log_figure(tracker, folder, filename, draw, *args):
        current.clear()
        start = time.process_time()
        real_log_figure(tracker, folder, filename, clocked("draw", draw), *args)
        total = time.process_time() - start
        found[run_name][filename].append([current.get("draw", 0.0), current.get("encode", 0.0),
                                          current.get("log", 0.0), total])

    instruments.log_figure = log_figure
    matplotlib.figure.Figure.savefig = clocked("encode", real_savefig)
    MlflowClient.log_artifact = clocked("log", real_log_artifact)
    end_plots = instruments.Instruments._end_plots

    def whole(self, trainer, pl_module):
        start = time.process_time()
        end_plots(self, trainer, pl_module)
        found[run_name]["all end-of-run figures"].append([0, 0, 0, time.process_time() - start])

    instruments.Instruments._end_plots = whole
    try:
        for repeat in range(repeats + 1):  # the first round pays matplotlib's import
            for run_name_, overrides in RUNS.items():
                run_name = run_name_ if repeat else f"{run_name_} (first in the process)"
                with tempfile.TemporaryDirectory() as tmp:
                    cfg = _compose_cfg([*overrides, "accelerator=cpu",
                                        "trainer.enable_progress_bar=false",
                                        f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
                                        f"mlflow.artifact_root={tmp}/artifacts"])
                    start = time.process_time()
                    train_one(cfg, output_dir=Path(tmp))
                    found[run_name]["the whole run (train_one)"].append(
                        [0, 0, 0, time.process_time() - start])
    finally:
        instruments.log_figure, matplotlib.figure.Figure.savefig = real_log_figure, real_savefig
        MlflowClient.log_artifact = real_log_artifact
        instruments.Instruments._end_plots = end_plots
    return {run: {fig: [statistics.median(t[i] for t in times) for i in range(4)]
                  for fig, times in figs.items()} for run, figs in found.items()}


def default_run_share(repeats: int) -> list[tuple[float, float, float, float]]:
    """(CPU s of the whole process, CPU s in the figures, wall s of the whole process from its
    start to its exit, wall s in the figures) of `python -m nnlab` (the default job), per
    repeat."""
    import resource

    def children() -> float:
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        return used.ru_utime + used.ru_stime

    found = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "figures_s"
            start, wall = children(), time.perf_counter()
            subprocess.run([sys.executable, "-c", TIMED_CLI, "trainer.enable_progress_bar=false"],
                           cwd=tmp, check=True, capture_output=True,
                           env={**os.environ, "FIGURES_FILE": str(out)})
            wall = time.perf_counter() - wall
            cpu_figures, wall_figures = json.loads(out.read_text())
            found.append((children() - start, cpu_figures, wall, wall_figures))
    return found


def worker(repeats: int) -> None:
    """Measure this tree (the one on PYTHONPATH) and print the figures as JSON."""
    figures = timed_figures(repeats)
    print(json.dumps({"figures": figures, "default": default_run_share(repeats)}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--before", default=None,
                        help="another tree of nnlab (e.g. a `git archive` of main) measured "
                             "in the same run, alternating with this one")
    parser.add_argument("--out", default=str(REPO / "bench" / "results.md"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.repeats)

    trees = {"after": REPO} if args.before is None else {"before": Path(args.before), "after": REPO}
    load = os.getloadavg()[0]
    found: dict[str, list[dict]] = {label: [] for label in trees}
    for _ in range(args.repeats):  # alternated, so both trees see the same load
        for label, tree in trees.items():
            out = subprocess.run([sys.executable, __file__, "--worker", "--repeats", "1"],
                                 capture_output=True, text=True, check=True,
                                 env={**os.environ, "PYTHONPATH": str(tree)})
            found[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
    labels = list(trees)
    first = found[labels[-1]][0]["figures"]
    lines = [f"## Figures per run ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"bench/figures.py)", "",
             "- trees: " + ", ".join(f"{k} = {v}" for k, v in trees.items()) +
             f"; load average at start {load:.1f}; CPU seconds, median of {args.repeats} "
             "processes (each a fresh process: the first run in it pays matplotlib's start)", "",
             "| run | figure | " + " | ".join(f"{k} CPU s" for k in labels) +
             (" | after / before |" if len(labels) > 1 else " |"),
             "|---|---|" + "---|" * (len(labels) + (len(labels) > 1))]

    def med(label: str, run: str, fig: str) -> float:
        return statistics.median(r["figures"][run][fig][3] for r in found[label])

    for run, figs in first.items():
        for fig in figs:
            values = [med(label, run, fig) for label in labels]
            ratio = f" | {values[1] / values[0]:.2f} |" if len(values) > 1 else " |"
            lines.append(f"| {run} | {fig} | " + " | ".join(f"{v:.3f}" for v in values) + ratio)
    split = found[labels[0]][0]["figures"]
    lines += ["", f"Where the {labels[0]} time goes (first repeat; draw = the figure function, "
              "encode = matplotlib's savefig outside it, log = MLflow's log_artifact):", "",
              "| run | figure | draw s | encode s | log s |", "|---|---|---|---|---|"]
    lines += [f"| {run} | {fig} | {d:.3f} | {e:.3f} | {g:.3f} |" for run, figs in split.items()
              for fig, (d, e, g, _) in figs.items() if fig.endswith((".png", ".gif"))]
    lines.append("")
    for label in labels:
        shares = [share for r in found[label] for share in r["default"]]
        cpu, cpu_figures, wall, wall_figures = (statistics.median(share[i] for share in shares)
                                                for i in range(4))
        lines.append(f"- {label}: default `python -m nnlab` (LeNet-5 on digits, 10 epochs), "
                     f"start to exit: {wall:.2f} s wall, figures {wall_figures:.2f} s = "
                     f"**{100 * wall_figures / wall:.1f}% of its wall time**; {cpu:.2f} CPU s, "
                     f"figures {cpu_figures:.2f} CPU s = {100 * cpu_figures / cpu:.1f}% (each, "
                     "wall figures/process: " + ", ".join(f"{s[3]:.2f}/{s[2]:.2f}" for s in shares)
                     + ")")
    lines += [f"- load average at end {os.getloadavg()[0]:.1f}", ""]
    print("\n".join(lines))
    with Path(args.out).open("a") as handle:
        handle.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
