"""`python -m nnlab.report <experiment>`: compare a study's runs, aggregated over seeds.

Reads the FINISHED runs of one MLflow experiment, groups them by the options that vary (a
`<group>.name` param, or another param that still varies within those groups, e.g.
`model.dropout`). Per metric (the monitored val/acc or val/r2 and the test metrics; every
final metric with --all-metrics) and option: n, mean, sample sd, the 95% t confidence interval;
every option against the best: the difference with its CI, Cohen's d, a t-test (paired over
seeds when both ran the same seeds, else Welch's) with Holm's correction, and a verdict that
names a winner only when the difference is significant at 0.05 (n < 5: flagged weak; n < 2: no
spread, no verdict). Prints one table per metric (it fits the terminal), writes
`<out>/report.md` with learning curves (seed bands) and per-layer gradient norms, and logs the
report to MLflow as a run named `report` (tag `nnlab.report=true`) in the same experiment;
later reports skip such runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from nnlab.errors import NnlabError
from nnlab.quiet import quiet
from nnlab.report.output import log_report, write_report
from nnlab.tracking.store import existing_store


def folder_name(experiment: str) -> str:
    """An experiment's name as one safe folder name: no separators, no leading dots (so
    `../../x` or `/abs` stays under reports/)."""
    import re

    return re.sub(r"[^\w.-]+", "_", experiment).lstrip(".") or "_"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnlab.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="MLflow experiment name (a study's)")
    parser.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    parser.add_argument("--out", type=Path, help="folder for report.md and plots "
                        "(default: reports/<experiment>)")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    parser.add_argument("--all-metrics", action="store_true", help="every final metric "
                        "(default: the monitored val/acc or val/r2 and the test metrics)")
    args = parser.parse_args(argv)

    quiet()
    out = args.out or Path("reports") / folder_name(args.experiment)
    try:
        client = existing_store(args.tracking_uri, "nnlab.report")
        path, _ = write_report(client, args.experiment, out, args.all_metrics)
    except NnlabError as err:
        print(f"nnlab.report: error: {err}", file=sys.stderr)
        return 2
    print(f"nnlab.report: wrote {path}\nnnlab.report: wrote {path.with_suffix('.html')}")
    if not args.no_log:
        print(f"nnlab.report: logged as run {log_report(client, args.experiment, out)}")
    return 0
