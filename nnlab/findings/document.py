"""The findings document: per study its runs, timing, claims, report and the papers' figures,
and the claims at a glance on top."""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nnlab.findings.claims import (
    ClaimResult,
    TargetResult,
    check_claims,
    check_targets,
    holm_family,
)
from nnlab.findings.papers import PAPER_FIGURES
from nnlab.findings.studies import STUDIES, Study
from nnlab.report import ALPHA, load_runs, log_report, write_report
from nnlab.tracking import MlflowClient, tags

CHECKOUT = Path(__file__).resolve().parents[2]  # the checkout: its experiments/ and docs/


def span_seconds(runs: Sequence[Any]) -> float:
    """First run's start to last run's end, from MLflow (ms timestamps)."""
    starts = [r.info.start_time for r in runs if r.info.start_time]
    ends = [r.info.end_time for r in runs if r.info.end_time]
    return (max(ends) - min(starts)) / 1000 if starts and ends else float("nan")


def study_section(study: Study, command: str, wall: float | None, store: Path, figures: Path,
                  doc: Path) -> tuple[list[str], list[ClaimResult | TargetResult]]:
    client = MlflowClient(f"sqlite:///{store.resolve()}/mlflow.db")
    found = client.get_experiment_by_name(study.name)
    runs = load_runs(client, study.name) if found else []
    if not runs:
        return [f"## {study.title} (`{study.name}`)", "",
                f"**No finished runs** for `{command}`: see {store.parent / study.name}.log.",
                ""], []
    report, _ = write_report(client, study.name, figures)
    results = [*check_claims(runs, study.claims, client),
               *check_targets(runs, study.targets, client)]
    holm_family(results)  # the study's primary claims and targets: one Holm family
    recorded = store / "wall.json"
    load = None
    if recorded.exists():  # the time the study's run took, and how busy the machine was
        found = json.loads(recorded.read_text())
        wall = found["seconds"] if wall is None else wall
        load = found.get("load_1min_at_end")
    epochs = sorted({r.data.params.get("trainer.max_epochs") for r in runs})
    packed = sum(tags.PACK in r.data.tags for r in runs)
    packs = len({r.data.tags[tags.PACK] for r in runs if tags.PACK in r.data.tags})
    timing = f"{wall:.0f} s wall" if wall is not None else "wall time not measured"
    if load is not None:
        timing += f" (1-min load average at its end {load:.1f})"
    quick = "study.mode=quick" in command
    cut = study.quick if quick else study.full
    seeds = sorted({int(r.data.params.get("seed", 0)) for r in runs})
    header = CHECKOUT / "experiments" / f"{study.name}.yaml"
    setup = [line[2:] for line in header.read_text().splitlines()[1:]
             if line.startswith("# ")] if header.is_file() else []
    lines = [f"## {study.title} (`{study.name}`)", "",
             f"**{'Quick' if quick else 'Full'} mode, seeds {','.join(map(str, seeds))}"
             + (" (quick-mode numbers: a smoke test, not the study's result)" if quick else "")
             + ".**", "", *(["> " + " ".join(setup), ""] if setup else []),
             f"Ran `{command}`: {len(runs)} finished runs of {'/'.join(map(str, epochs))} "
             f"epoch(s), {timing} on this machine "
             f"(MLflow: first run start to last run end {span_seconds(runs):.0f} s); "
             f"{packed} of them trained in {packs} pack(s) (`hydra/launcher=packed`), "
             f"{len(runs) - packed} solo."
             + (f" Grid cut to fit the machine: `{' '.join(cut)}`." if cut else ""), "",
             "### Claims", "",
             f"Holm family: the {sum(r.primary for r in results)} primary claim(s); secondary "
             "ones are tested alone.", "", *(f"- {r.line()}" for r in results), ""]
    papers = PAPER_FIGURES[study.name](client, runs, figures) \
        if study.name in PAPER_FIGURES else []
    log_report(client, study.name, figures)  # the report, its plots and the papers' figures
    relative = os.path.relpath(figures, doc.parent)
    body = "\n".join(["### Report (`python -m nnlab.report " + study.name + "`)",
                      report.read_text().split("\n", 1)[1].strip()])
    body = re.sub(r"^## ", "### ", body, flags=re.MULTILINE)
    body = "\n".join([*papers, body])
    body = re.sub(r"\]\(([\w.-]+\.png)\)", lambda m: f"]({relative}/{m.group(1)})", body)
    lines += [body, ""]
    return lines, results


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), {gpu}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def write_findings(doc: Path, mode: str, seeds: int, sections: list[tuple[Study, list[str],
                   list[ClaimResult | TargetResult]]], argv: Sequence[str]) -> None:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    how = (f"Regenerated by `python -m nnlab.findings {' '.join(argv)}` from the stores that "
           "`python -m nnlab.findings` filled (each study's time below is that run's)"
           if "--report-only" in argv else
           f"Generated by `python -m nnlab.findings {' '.join(argv)}` (`make findings`)")
    lines = ["# What the studies show", "",
             f"{how} on {now}: {mode} mode, {seeds} seeds per option unless a study asks for "
             f"more, on {machine()} (each section says the mode and seeds it ran; the yaml "
             "header says why a study runs more). Do not edit by hand: rerun the command. "
             "Each study reproduces a paper's experiment at lab scale; its yaml header "
             "(quoted in the section) cites the paper and says how the set-up was scaled. Every "
             "table is `python -m nnlab.report`'s output on these runs (final value per run; n, "
             "mean, sample sd, 95% t CI; each option vs the best: paired t over seeds when both "
             "ran the same seeds, else Welch's t, Holm-corrected; * = significant at "
             f"{ALPHA}; the smallest difference detectable at 80% power and the seeds the "
             "observed difference needs). Each claim is tested directly on the paper's metric "
             "and budget (a value after epoch k, or the final one): **holds** (significant in "
             "the claimed direction), **equivalent** (a claim of no difference: two one-sided "
             "tests with the stated margin), **not shown** (undecided), **contradicted** "
             "(significant the other way, or for an equivalence claim a significant "
             "difference). A study's primary claims and targets form its Holm family; "
             "secondary ones are tested alone and marked so. A target (a level to reach or "
             "stay under) is a one-sided one-sample t-test of the runs against it.", "",
             "## Claims at a glance", "",
             "| study | claim | paper | lab | test | p (Holm) | verdict |",
             "|---|---|---|---|---|---|---|"]
    for study, _, results in sections:
        for r in results:
            if isinstance(r, ClaimResult):
                text, paper, test = r.claim.text, r.claim.paper, r.test_text()
            else:
                text, paper, test = r.target.text, r.target.paper, "one-sample t"
            kind = "" if r.primary else " (secondary)"
            p = r.p_holm
            lines.append(f"| {study.name} | {text}{kind} | {paper or '-'} | {r.lab()} | {test} | "
                         f"{'-' if p != p else f'{p:.3g}'} | {r.outcome} |")
    left = [s.name for s in STUDIES if s.name not in {study.name for study, _, _ in sections}]
    if left:
        lines += ["", f"Not run for this document: {', '.join(f'`{n}`' for n in left)} "
                  "(`python -m nnlab.findings --studies <name>` runs one)."]
    lines.append("")
    for _, body, _ in sections:
        lines += body
    appendix = CHECKOUT / "docs" / "findings-appendix.md"
    if appendix.is_file():  # measurements made outside the studies (NumPy parity, overhead)
        lines += [line for line in appendix.read_text().splitlines()
                  if not line.startswith("<!--")]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(lines))
