"""Packed sweeps vs the basic launcher: the same sweep, both ways, in one run; ratios of the jobs'
span (first MLflow run's start to last run's end) and of the wall clock.

    python bench/packed.py [--only mlp,deep_mlp,lenet5] [--repeats R] [--instruments off,on]
                           [--before TREE] [--out bench/results.md]

Each sweep runs with instruments off, then on (nnlab's default: per-layer metrics and the end
figures, which packs draw per member as solo runs do). LeNet-5 also runs its basic side with one
intra-op thread (OMP_NUM_THREADS=1), the thread count a pack trains with on the CPU: the fair
comparison of packing alone. `--before TREE` runs every side with another checkout of nnlab
too (e.g. `git archive main | tar -x -C TREE`), alternating, so before and after see one load.
Each row also gives the command's CPU seconds (its children's too: a pack's drawing process) and
the 1-minute load average at each run's start: on a shared machine wall time is not the code's.

mlp       16 jobs: model=mlp dataset=moons init=xavier_normal,kaiming_normal seed=0..7, 50 epochs
deep_mlp  8 jobs: model=deep_mlp optimizer.lr=0.01 init=xavier_normal,kaiming_normal seed=0..3,
          digits, 10 epochs
lenet5    the same 8 jobs with model=lenet5 (packed with hydra.launcher.pack_convs_on_cpu=true)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import REPO, instruments_off, median, nnlab_run  # noqa: E402

INITS = "init=xavier_normal,kaiming_normal"
SWEEPS = {
    "mlp": ("16 jobs: mlp on moons, 2 inits x 8 seeds, 50 epochs",
            ["model=mlp", "dataset=moons", INITS, "seed=range(0,8)", "trainer.max_epochs=50"]),
    "deep_mlp": ("8 jobs: deep_mlp on digits, lr 0.01, 2 inits x 4 seeds, 10 epochs",
                 ["model=deep_mlp", "dataset=digits", "optimizer.lr=0.01", INITS,
                  "seed=range(0,4)", "trainer.max_epochs=10"]),
    "lenet5": ("8 jobs: LeNet-5 on digits, lr 0.01, 2 inits x 4 seeds, 10 epochs",
               ["model=lenet5", "dataset=digits", "optimizer.lr=0.01", INITS, "seed=range(0,4)",
                "trainer.max_epochs=10"]),
}
PACKED = ["hydra/launcher=packed", "hydra.launcher.pack_convs_on_cpu=true"]


def compare(name: str, repeats: int, instruments: list[str],
            trees: dict[str, Path]) -> list[str]:
    title, args = SWEEPS[name]
    sides = {"basic": ([], None), "packed": (PACKED, None)}
    if name == "lenet5":
        sides["basic, 1 thread"] = ([], {"OMP_NUM_THREADS": "1"})
    lines = [f"### Packed sweep: {title} (median of {repeats})", "",
             "| instruments | tree | launcher | jobs span s | wall s | CPU s | load at start | "
             "packed speed-up (span) |", "|---|---|---|---|---|---|---|---|"]
    settings = {"off": instruments_off(), "on (default)": []}
    for label in instruments:
        label = "on (default)" if label == "on" else label
        found = {(tree, side): [] for tree in trees for side in sides}
        for _ in range(repeats):  # alternated, so every side and tree sees the same load
            for tree, side in found:
                extra, env = sides[side]
                found[tree, side].append(nnlab_run(["-m", *args, *settings[label], *extra], env,
                                                   trees[tree]))
        span = {key: median(runs, "span_s") for key, runs in found.items()}
        for (tree, side), runs in found.items():
            ratio = "" if side == "packed" else \
                f"**{span[tree, side] / span[tree, 'packed']:.2f}x**"
            loads = "/".join(f"{r['load']:.1f}" for r in runs)
            lines.append(f"| {label} | {tree} | {side} | {span[tree, side]:.1f} | "
                         f"{median(runs, 'wall_s'):.1f} | {median(runs, 'cpu_s'):.1f} | "
                         f"{loads} | {ratio} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SWEEPS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--instruments", default="off,on")
    parser.add_argument("--before", default=None, help="another checkout of nnlab, run alike")
    parser.add_argument("--out", default=str(REPO / "bench" / "results.md"))
    args = parser.parse_args(argv)
    import torch

    lines = [f"## Packed sweeps {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"- machine: {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads; load average at start "
             f"{os.getloadavg()[0]:.1f}", ""]
    for name in args.only.split(","):
        trees = {"this": REPO} if args.before is None else {"before": Path(args.before),
                                                            "after": REPO}
        part = compare(name, args.repeats, args.instruments.split(","), trees)
        print("\n".join(part), f"\n(load average now {os.getloadavg()[0]:.1f})\n", flush=True)
        lines += [*part, f"- load average after it {os.getloadavg()[0]:.1f}", ""]
    with Path(args.out).open("a") as handle:
        handle.write("\n".join(lines) + "\n\n")
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
