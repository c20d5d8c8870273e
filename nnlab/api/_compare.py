"""nnlab.compare: `python -m nnlab.report <experiment>` from Python, its tables as DataFrames."""

from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nnlab import report
from nnlab.api._hydra import follow_working_directory
from nnlab.api._results import png_tag
from nnlab.errors import ConfigError
from nnlab.tracking import MlflowClient

DEFAULT_STORE = "sqlite:///mlruns/mlflow.db"  # the report command's --tracking-uri default


@dataclass
class Report:
    """A study's report: per metric the report's table (options as rows, best first) and its
    verdict, every finished run with its options and final values, and the figures."""

    experiment: str
    options: list[str]  # the params that tell the groups apart (e.g. init.name)
    tables: dict[str, pd.DataFrame]  # metric -> the report's table (numbers where numeric)
    verdicts: dict[str, str]  # metric -> the report's verdict sentence
    runs: pd.DataFrame  # one row per finished run, its options, seed and final values
    figures: dict[str, bytes] = field(default_factory=dict)  # name -> PNG
    path: Path | None = None  # report.md, when written (save=True)
    report_run_id: str | None = None  # the MLflow run it was logged to (save=True)

    def __repr__(self) -> str:
        return "\n\n".join([f"Report({self.experiment}: options {self.options})",
                            *(f"{m}\n{t}\n{self.verdicts[m]}" for m, t in self.tables.items())])

    def _repr_html_(self) -> str:
        parts = [f"<h4>nnlab report: {html.escape(self.experiment)}</h4>",
                 f"<p>{len(self.runs)} finished runs; options that vary: "
                 f"{html.escape(', '.join(self.options) or '(none)')}</p>"]
        for metric, table in self.tables.items():
            parts += [f"<h5>{html.escape(metric)}</h5>", table.to_html(index=False, na_rep=""),
                      f"<p><b>Verdict:</b> {html.escape(self.verdicts[metric])}</p>"]
        parts += [png_tag(png, name) for name, png in self.figures.items()]
        return "\n".join(parts)


def _table(verdict: Any) -> pd.DataFrame:
    """The report's table of one metric, with the columns that hold numbers as numbers."""
    frame = pd.DataFrame(report.rows(verdict), columns=report.HEADER)
    for column in frame.columns:
        numbers = pd.to_numeric(frame[column].str.rstrip("*"), errors="coerce")
        if numbers.notna().all():
            frame[column] = numbers
    return frame


def _figures(client: Any, groups: list[Any]) -> dict[str, bytes]:
    """The report's learning-curve bands and per-layer gradient norms, as PNG bytes."""
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        curves, gradients = Path(tmp) / "curves.png", Path(tmp) / "gradients.png"
        if report.plot_learning_curves(client, groups, curves):
            found["learning curves"] = curves.read_bytes()
        if report.plot_gradients(groups, gradients):
            found["per-layer gradient norms"] = gradients.read_bytes()
    return found


def compare(experiment: str, *, tracking_uri: str | None = None, all_metrics: bool = False,
            save: bool = False) -> Report:
    """Compare a study's runs, as `python -m nnlab.report EXPERIMENT` does: the FINISHED runs of
    the MLflow experiment grouped by the options that vary, per metric n, mean, sd, 95% CI, the
    difference vs the best with its CI, Cohen's d, the (paired or Welch) t-test with Holm's
    correction and the verdict. `tracking_uri` defaults to the CLI's sqlite store;
    `all_metrics` is --all-metrics. With `save`, it also writes reports/<experiment>/
    (report.md, report.html, figures) and logs it to MLflow, as the command does.

        nnlab.compare("init_x_activation")
    """
    follow_working_directory()
    uri = tracking_uri or DEFAULT_STORE
    client = MlflowClient(uri)
    if client.get_experiment_by_name(experiment) is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ConfigError(f"experiment={experiment!r} is invalid: {uri} has no MLflow "
                          f"experiment of that name. Valid: {names}.")
    runs = report.load_runs(client, experiment)
    if not runs:
        raise ConfigError(f"experiment={experiment!r} is invalid: it has no FINISHED runs to "
                          "compare. Valid: an experiment whose runs finished.")
    options = report.varying_options(runs)
    groups = sorted(report.group_runs(runs, options), key=lambda g: g.label)
    metrics = report.shown_metrics(report.report_metrics(runs), all_metrics)
    if "loss.name" in options:  # each loss in its own units: not compared (as the report)
        metrics = [m for m in metrics if "loss" not in m]
    found = report.verdicts(groups, metrics)
    each_run = pd.DataFrame([{**g.options, "seed": r.data.params.get("seed"),
                              **{m: r.data.metrics.get(m) for m in metrics},
                              "run_id": r.info.run_id} for g in groups for r in g.runs])
    result = Report(experiment, options, {v.metric: _table(v) for v in found},
                    {v.metric: v.sentence() for v in found}, each_run, _figures(client, groups))
    if save:
        out = Path("reports") / experiment
        result.path, _ = report.write_report(client, experiment, out, all_metrics)
        result.report_run_id = report.log_report(client, experiment, out)
    return result
