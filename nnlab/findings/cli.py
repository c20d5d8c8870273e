"""`python -m nnlab.findings` (`make findings`): run the studies, then write docs/findings.md.

For each study below: a fresh MLflow store (`<store>/<study>/mlflow.db`), one multirun of
`experiment=<study>` in the chosen mode with the chosen seeds (plus the study's grid cut, said in
the document), its wall time, `nnlab.report`'s tables and verdicts, and the study's claims, each
tested directly (option vs option on one metric: paired t over seeds, or Welch's t, Holm-
corrected across the study's claims). Nothing in the written document is typed by hand but the
claims' wording.

    python -m nnlab.findings                        # full mode, every study (~21 min on 2 cores)
    python -m nnlab.findings --mode quick --studies loss_regression_study --seeds 2
    python -m nnlab.findings --report-only          # re-read existing stores, rewrite the doc
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from nnlab.findings.document import study_section, write_findings
from nnlab.findings.studies import BY_NAME, DEFAULT_SEEDS, DEFAULT_STUDIES, Study


def study_seeds(study: Study, mode: str, asked: int | None) -> int:
    """The seeds per option: --seeds when given, else the study's own in full mode, else 5."""
    return asked or (study.seeds if mode == "full" else None) or DEFAULT_SEEDS


def sweep_command(study: Study, mode: str, seeds: int, store: Path,
                  extra: Sequence[str]) -> list[str]:
    cut = study.quick if mode == "quick" else study.full
    return [sys.executable, "-m", "nnlab", "-m", f"experiment={study.name}", f"study.mode={mode}",
            "seed=" + ",".join(str(s) for s in range(seeds)), *cut,
            f"mlflow.tracking_uri=sqlite:///{store.resolve()}/mlflow.db",
            f"mlflow.artifact_root={store.resolve()}/artifacts",
            f"hydra.sweep.dir={store.resolve()}/hydra", *extra]


def shown(command: Sequence[str]) -> str:
    """The command as a reader would type it (no interpreter path, no store paths)."""
    words = ["python", *command[1:]]
    return " ".join(w for w in words if not w.startswith(("mlflow.", "hydra.sweep.dir")))


def run_study(study: Study, command: list[str], store: Path, log: Path) -> float:
    """Run the sweep into a fresh store; its output goes to `log`. Returns wall seconds."""
    if store.exists():
        shutil.rmtree(store)
    store.mkdir(parents=True)
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seconds = time.perf_counter() - start
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    (store / "wall.json").write_text(json.dumps({"seconds": seconds, "load_1min_at_end": load,
                                                 "exit": done.returncode}))
    if done.returncode not in (0, 1):  # 1: some job failed (diverged runs are findings too)
        raise SystemExit(f"nnlab.findings: {study.name} exited {done.returncode}; see {log}")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m nnlab.findings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("full", "quick"), default="full")
    parser.add_argument("--studies", default=",".join(DEFAULT_STUDIES),
                        help=f"comma-separated, from {', '.join(BY_NAME)} (default: all but "
                        f"{', '.join(sorted(set(BY_NAME) - set(DEFAULT_STUDIES)))})")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 per option (default: 5, or in "
                        "full mode the seeds a study's pilot power analysis asked for)")
    parser.add_argument("--out", type=Path, help="the document (default: docs/findings.md in "
                        "full mode, reports/findings-quick.md in quick mode)")
    parser.add_argument("--store", type=Path, help="MLflow stores, one per study (default: "
                        "mlruns/findings/<mode>)")
    parser.add_argument("--report-only", action="store_true",
                        help="do not run anything: report on the stores as they are")
    parser.add_argument("--extra", default="", help="more overrides for every sweep, e.g. "
                        "'hydra/launcher=joblib hydra.launcher.n_jobs=2'")
    args = parser.parse_args(argv)
    names = [n for n in args.studies.split(",") if n]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or (args.seeds is not None and args.seeds < 1):
        parser.error(f"--studies {','.join(unknown)} is invalid: valid studies are "
                     f"{', '.join(BY_NAME)}" if unknown else
                     f"--seeds {args.seeds} is invalid: give an integer >= 1")
    doc = args.out or Path("docs/findings.md" if args.mode == "full"
                           else "reports/findings-quick.md")
    stores = args.store or Path("mlruns/findings") / args.mode
    sections = []
    for name in names:
        study = BY_NAME[name]
        store = stores / name
        seeds = study_seeds(study, args.mode, args.seeds)
        command = sweep_command(study, args.mode, seeds, store, args.extra.split())
        wall = None
        if not args.report_only:
            print(f"nnlab.findings: running {shown(command)}", flush=True)
            wall = run_study(study, command, store, stores / f"{name}.log")
            print(f"nnlab.findings: {name} took {wall:.0f} s", flush=True)
        body, results = study_section(study, shown(command), wall, store,
                                      doc.with_suffix("") / name, doc)
        sections.append((study, body, results))
    write_findings(doc, args.mode, args.seeds or DEFAULT_SEEDS, sections, argv)
    print(f"nnlab.findings: wrote {doc}")
    return 0
