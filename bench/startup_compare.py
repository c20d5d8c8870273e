"""Start-up of two checkouts of nnlab side by side: `python -m nnlab --help`, and the command to
its first training step (LeNet-5 on the offline digits, a new store), interleaved run by run so
both see the same machine load. Used to check that a refactor costs no start-up time.

    python bench/startup_compare.py --before /path/to/old/checkout [--after .] [--repeats 5]

Appends its table to bench/results.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from run import FIRST_STEP, QUIET  # the first-step probe bench/run.py's start-up section uses

REPO = Path(__file__).resolve().parents[1]


def first_step(checkout: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        mark = Path(tmp) / "first"
        start = time.time()
        subprocess.run([sys.executable, "-c", FIRST_STEP, *QUIET], cwd=tmp, check=True,
                       capture_output=True, env={**os.environ, "FIRST_STEP_FILE": str(mark),
                                                 "PYTHONPATH": str(checkout)})
        return float(mark.read_text()) - start


def help_seconds(checkout: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nnlab", "--help"], cwd=checkout, check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(checkout)})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=REPO)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--label", default="before -> after")
    args = parser.parse_args()
    found: dict[tuple[str, str], list[float]] = {}
    load = []
    for _ in range(args.repeats):
        for side, checkout in (("before", args.before), ("after", args.after)):
            found.setdefault(("help", side), []).append(help_seconds(checkout.resolve()))
            found.setdefault(("first", side), []).append(first_step(checkout.resolve()))
        load.append(os.getloadavg()[0])
    rows = []
    for what, label in (("help", "python -m nnlab --help"),
                        ("first", "command -> first training step (digits, new store)")):
        before = statistics.median(found[(what, "before")])
        after = statistics.median(found[(what, "after")])
        rows.append(f"| {label} | {before:.2f} | {after:.2f} | {after / before:.2f} |")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        f"### Start-up, {args.label} ({stamp}; median of {args.repeats}, interleaved; "
        f"load average {min(load):.1f}-{max(load):.1f} on {os.cpu_count()} CPUs)", "",
        "| what | before s | after s | after / before |", "|---|---|---|---|", *rows, ""])
    print(text)
    with open(REPO / "bench" / "results.md", "a") as out:
        out.write("\n" + text)


if __name__ == "__main__":
    main()
