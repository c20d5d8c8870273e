"""What a report writes: report.md with its figures (learning-curve bands, per-layer gradient
norms) and report.html, and the report's run in MLflow."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnlab.errors import ReportError
from nnlab.report.grouping import (
    Group,
    failed_runs,
    group_runs,
    load_runs,
    nothing_to_compare,
    report_metrics,
    shown_metrics,
    varying_options,
)
from nnlab.report.ranking import WEAK_N, Verdict, verdicts
from nnlab.report.stats import ALPHA
from nnlab.report.tables import markdown_table, print_tables
from nnlab.report_page import write_page
from nnlab.tracking import tags

CURVES = ("train/loss_epoch", "val/loss", "val/acc", "val/r2")


def seed_curves(client: Any, groups: Sequence[Group]) -> dict[str, dict[str, list[list[float]]]]:
    """metric -> option -> each run's per-epoch history (the data of the learning-curve bands)."""
    curves: dict[str, dict[str, list[list[float]]]] = {}
    for key in CURVES:
        for g in groups:
            for run in g.runs:
                if key not in run.data.metrics:
                    continue
                history = sorted(client.get_metric_history(run.info.run_id, key),
                                 key=lambda m: m.step)
                curves.setdefault(key, {}).setdefault(g.label, []).append(
                    [m.value for m in history])
    return curves


def plot_learning_curves(client: Any, groups: Sequence[Group], path: Path) -> bool:
    # lazy: matplotlib and torch load only when a figure is drawn
    from nnlab.figures import learning_curve_bands, png_bytes

    curves = seed_curves(client, groups)
    if not curves:
        return False
    path.write_bytes(png_bytes(learning_curve_bands(curves)))
    return True


def layer_gradients(group: Group) -> tuple[list[str], list[float]]:
    """The group's per-layer gradient norms of the last epoch, mean over seeds, input first."""
    layers = group.runs[0].data.tags.get(tags.LAYERS, "")
    names = [n for n in layers.split(",") if n]
    norms = []
    for name in names:
        values = [r.data.metrics.get(f"grad_norm/{name}") for r in group.runs]
        values = [v for v in values if v is not None]
        norms.append(statistics.fmean(values) if values else float("nan"))
    return names, norms


def plot_gradients(groups: Sequence[Group], path: Path) -> bool:
    """One panel per architecture: gradient norm per layer (log scale), one line per group."""
    # lazy: matplotlib and torch load only when a figure is drawn
    from nnlab.figures import gradient_profiles, png_bytes

    panels: dict[tuple[str, ...], list[tuple[str, list[float]]]] = {}
    for g in groups:
        names, norms = layer_gradients(g)
        if names:
            panels.setdefault(tuple(names), []).append((g.label, norms))
    if not panels:
        return False
    path.write_bytes(png_bytes(gradient_profiles(panels)))
    return True


def write_report(client: Any, experiment: str, out: Path,
                 all_metrics: bool = False) -> tuple[Path, list[Verdict]]:
    """Build the tables, verdicts and plots; write `out/report.md`."""
    runs = load_runs(client, experiment)
    if not runs:
        raise ReportError(f"experiment {experiment!r} has no FINISHED runs")
    options = varying_options(runs)
    groups = sorted(group_runs(runs, options), key=lambda g: g.label)
    metrics = shown_metrics(report_metrics(runs), all_metrics)
    note = ""
    if "loss.name" in options:  # different losses: their values are not on one scale
        metrics = [m for m in metrics if "loss" not in m]
        note = ("The loss varies, so `*/loss*` values are each in their own loss's units and "
                "are left out.")
    if not metrics:
        raise ReportError(nothing_to_compare(experiment, runs, bool(note)))
    found = verdicts(groups, metrics)
    print_tables(experiment, found, runs)
    out.mkdir(parents=True, exist_ok=True)
    fewest = min(len(g.runs) for g in groups)
    lines = [f"# Study report: {experiment}", "",
             f"{len(runs)} finished runs in {len(groups)} groups; options that vary: "
             f"{', '.join(options) or '(none)'}. Each metric: the final value of each run; per "
             "option n, mean, sample sd and the 95% t confidence interval of the mean; each "
             "option against the best one: the difference with its 95% CI, Cohen's d, and a "
             "two-sided t-test (paired over seeds when both options ran the same seeds, else "
             "Welch's), p-values Holm-corrected across the metric's comparisons "
             f"(* = significant at {ALPHA}).", ""]
    if fewest < WEAK_N:
        lines += [f"**Weak evidence: some option has only {fewest} run(s); fewer than "
                  f"{WEAK_N} seeds per option make any verdict weak"
                  + (", and with one run there is no spread and no verdict" if fewest < 2
                     else "") + ".**", ""]
    if note:
        lines += [note, ""]
    for verdict in found:
        lines += [f"## {verdict.metric}", "", markdown_table(verdict), "",
                  f"Verdict: {verdict.sentence()}", ""]
    if plot_learning_curves(client, groups, out / "learning_curves.png"):
        lines += ["## Learning curves", "", "Mean over seeds per option, band: ± one sd.", "",
                  "![learning curves](learning_curves.png)", ""]
    if plot_gradients(groups, out / "layer_gradients.png"):
        lines += ["## Per-layer gradient norms", "", "![gradients](layer_gradients.png)", ""]
    failed = failed_runs(client, experiment)
    if failed:
        lines += ["## Runs that did not finish (not aggregated)", "",
                  *(f"- {r.info.run_name} (seed {r.data.params.get('seed')}): {r.info.status}, "
                    f"{r.data.tags.get('nnlab.error', 'no error recorded')}" for r in failed), ""]
        print(f"{len(failed)} runs did not finish; see the report")
    path = out / "report.md"
    path.write_text("\n".join(lines))
    write_page(path)  # report.html beside it: the same report, figures embedded
    return path, found


def report_experiment(experiment: str) -> str:
    """Where a study's reports are logged: an experiment of their own, so the study's runs table
    shows training runs only."""
    return f"{experiment} reports"


def log_report(client: Any, experiment: str, out: Path) -> str:
    """Log the report folder as artifacts of a `report` run in the study's report experiment."""
    found = client.get_experiment_by_name(report_experiment(experiment))
    experiment_id = found.experiment_id if found else client.create_experiment(
        report_experiment(experiment), tags={tags.EXPERIMENT_KIND: tags.MODEL_TRAINING})
    run = client.create_run(experiment_id, run_name=f"report {experiment}",
                            tags={tags.REPORT: "true", tags.SOURCE: "nnlab.report"})
    client.log_artifacts(run.info.run_id, str(out), "report")
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id
