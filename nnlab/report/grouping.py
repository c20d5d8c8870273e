"""A study's runs from MLflow: the FINISHED ones, the options that vary, the groups (one per
option combination, a run per seed) and the metrics worth ranking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nnlab.errors import ReportError
from nnlab.report.stats import Summary, summarize
from nnlab.tracking import tags
from nnlab.tracking.life import MONITORED as MONITOR_BY_TASK

NOT_OPTIONS = ("seed", "mlflow.", "model.num_params", "study.", "hydra.")
MONITORED = tuple(MONITOR_BY_TASK.values())  # what the sweepers optimise


@dataclass
class Group:
    """The runs of one option combination (one per seed)."""

    options: dict[str, str]
    runs: list[Any] = field(default_factory=list)

    @property
    def label(self) -> str:
        return " ".join(f"{k.removesuffix('.name')}={v}" for k, v in self.options.items()) \
            or "(all runs)"

    def values(self, metric: str) -> dict[str, float]:
        """seed -> the metric's final value; {} when a seed occurs twice (no pairing then, see
        `by_run`)."""
        found = {r.data.params.get("seed", r.info.run_id): r.data.metrics[metric]
                 for r in self.runs if metric in r.data.metrics}
        return found if len(found) == len(self.by_run(metric)) else {}

    def by_run(self, metric: str) -> list[float]:
        return [r.data.metrics[metric] for r in self.runs if metric in r.data.metrics]

    def summary(self, metric: str) -> Summary:
        return summarize(self.by_run(metric))


def load_runs(client: Any, experiment: str) -> list[Any]:
    """The experiment's FINISHED training runs (earlier reports left out)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ReportError(f"no MLflow experiment named {experiment!r}")
    runs = client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'",
                              max_results=50000)
    return [r for r in runs if r.data.tags.get(tags.REPORT) != "true"  # reports from before 0.2
            and r.data.tags.get(tags.SOURCE) != "nnlab sweep"]  # a sweep's parent run


def failed_runs(client: Any, experiment: str) -> list[Any]:
    """Runs that ended FAILED or KILLED (e.g. diverged), listed but never aggregated."""
    found = client.get_experiment_by_name(experiment)
    return [r for status in ("FAILED", "KILLED") for r in client.search_runs(
        [found.experiment_id], f"attributes.status = '{status}'", max_results=50000)]


def varying_options(runs: Sequence[Any]) -> list[str]:
    """The params that tell the groups apart: varying `*.name`s, plus any other varying param
    that is not already fixed by them (e.g. `model.dropout`, but not `model.hidden`)."""
    keys = sorted({k for r in runs for k in r.data.params if not k.startswith(NOT_OPTIONS)})
    varying = [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]
    names = [k for k in varying if k.endswith(".name")]

    def by_names(run: Any) -> tuple:
        return tuple(run.data.params.get(k) for k in names)

    extra = []
    for key in varying:
        if key in names:
            continue
        seen: dict[tuple, set] = {}
        for run in runs:
            seen.setdefault(by_names(run), set()).add(run.data.params.get(key))
        if any(len(values) > 1 for values in seen.values()):
            extra.append(key)
    return names + extra


def group_runs(runs: Sequence[Any], options: Sequence[str]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for run in runs:
        values = {k: str(run.data.params.get(k)) for k in options}
        groups.setdefault(tuple(values.values()), Group(values)).runs.append(run)
    return list(groups.values())


def report_metrics(runs: Sequence[Any]) -> list[str]:
    """Final-value metrics worth ranking: test/*, val/*, train/*_epoch present in every run."""
    common = set.intersection(*(set(r.data.metrics) for r in runs))
    return sorted(k for k in common if k.startswith(("test/", "val/"))
                  or (k.startswith("train/") and k.endswith("_epoch")))


def shown_metrics(metrics: Sequence[str], all_metrics: bool) -> list[str]:
    """The monitored metric (val/acc or val/r2) and the test metrics, or every one."""
    chosen = [m for m in metrics if all_metrics or m in MONITORED or m.startswith("test/")]
    return sorted(chosen, key=lambda m: (m not in MONITORED, m))  # the monitored one first


def nothing_to_compare(experiment: str, runs: Sequence[Any], loss_varies: bool) -> str:
    """Why a report has no metric to rank: the runs share none on one scale."""
    counts = {m: sum(m in r.data.metrics for r in runs) for m in MONITORED}
    logged = ", ".join(f"{m} in {n} run(s)" for m, n in counts.items() if n) or "neither " + \
        " nor ".join(MONITORED)
    loss = "; the loss varies, so loss values are not on one scale" if loss_varies else ""
    return (f"experiment {experiment!r} has nothing to compare: its "
            f"{len(runs)} finished runs share no metric ({logged}{loss}). A report compares "
            "runs of one task (classification: val/acc, regression: val/r2); log each task's "
            "runs to an experiment of its own (mlflow.experiment_name=<name>).")
