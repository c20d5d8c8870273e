"""`python -m nnlab.report <experiment>`: compare a study's runs, aggregated over seeds.

Reads the FINISHED runs of one MLflow experiment, groups them by the options that vary (a
`<group>.name` param, or another param that still varies within those groups, e.g.
`model.dropout`), and aggregates each metric over the seeds (mean, std, n). Prints a rich table,
writes `<out>/report.md` with learning-curve and per-layer gradient-norm plots, names the best
option per metric with its margin over the runner-up, and logs the report to MLflow as a run
named `report` (tag `nnlab.report=true`) in the same experiment; later reports skip such runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_TAG = "nnlab.report"
LAYERS_TAG = "nnlab.instruments.layers"
NOT_OPTIONS = ("seed", "mlflow.", "model.num_params", "study.", "hydra.")
LOWER_IS_BETTER = ("loss", "mse", "mae", "time")
CURVES = ("train/loss_epoch", "val/loss", "val/acc", "val/r2")


@dataclass
class Group:
    """The runs of one option combination (one per seed)."""

    options: dict[str, str]
    runs: list[Any] = field(default_factory=list)

    @property
    def label(self) -> str:
        return " ".join(f"{k.removesuffix('.name')}={v}" for k, v in self.options.items())

    def stats(self, metric: str) -> tuple[float, float, int]:
        """(mean, sample std, n) of a metric's final value over the group's runs."""
        values = [r.data.metrics[metric] for r in self.runs if metric in r.data.metrics]
        if not values:
            return float("nan"), float("nan"), 0
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return statistics.fmean(values), std, len(values)


@dataclass
class Verdict:
    metric: str
    best: Group
    runner_up: Group | None
    margin: float  # |best mean - runner-up mean|, in the metric's units

    @property
    def clear(self) -> bool:
        """The margin exceeds the two groups' seed spreads added up."""
        if self.runner_up is None:
            return False
        return self.margin > self.best.stats(self.metric)[1] + self.runner_up.stats(self.metric)[1]

    def sentence(self) -> str:
        mean, std, n = self.best.stats(self.metric)
        if self.runner_up is None:
            return f"{self.metric}: only {self.best.label} ({mean:.4f} ± {std:.4f}, n={n})"
        r_mean, r_std, r_n = self.runner_up.stats(self.metric)
        verdict = "clear" if self.clear else "within the seed spread"
        return (f"{self.metric}: best {self.best.label} {mean:.4f} ± {std:.4f} (n={n}); "
                f"runner-up {self.runner_up.label} {r_mean:.4f} ± {r_std:.4f} (n={r_n}); "
                f"margin {self.margin:.4f} ({verdict})")


def higher_is_better(metric: str) -> bool:
    return not any(word in metric for word in LOWER_IS_BETTER)


def load_runs(client: Any, experiment: str) -> list[Any]:
    """The experiment's FINISHED training runs (earlier reports left out)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"nnlab.report: no MLflow experiment named {experiment!r}")
    runs = client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'",
                              max_results=50000)
    return [r for r in runs if r.data.tags.get(REPORT_TAG) != "true"]


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


def verdicts(groups: Sequence[Group], metrics: Sequence[str]) -> list[Verdict]:
    found = []
    for metric in metrics:
        sign = 1 if higher_is_better(metric) else -1
        ranked = sorted((g for g in groups if g.stats(metric)[2]),
                        key=lambda g: -sign * g.stats(metric)[0])
        if not ranked:
            continue
        runner_up = ranked[1] if len(ranked) > 1 else None
        margin = abs(ranked[0].stats(metric)[0] - runner_up.stats(metric)[0]) if runner_up else 0.0
        found.append(Verdict(metric, ranked[0], runner_up, margin))
    return found


def cell(group: Group, metric: str) -> str:
    mean, std, n = group.stats(metric)
    return f"{mean:.4f} ± {std:.4f}" if n else "-"


def print_table(experiment: str, groups: Sequence[Group], options: Sequence[str],
                metrics: Sequence[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{experiment}: mean ± std over seeds")
    for key in options:
        table.add_column(key.removesuffix(".name"))
    table.add_column("n", justify="right")
    for metric in metrics:
        table.add_column(metric, justify="right")
    for g in groups:
        table.add_row(*g.options.values(), str(len(g.runs)), *(cell(g, m) for m in metrics))
    Console(width=max(120, 24 * len(metrics))).print(table)


def markdown_table(groups: Sequence[Group], options: Sequence[str],
                   metrics: Sequence[str]) -> str:
    head = [k.removesuffix(".name") for k in options] + ["n", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        row = [*g.options.values(), str(len(g.runs)), *(cell(g, m) for m in metrics)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mean_curve(client: Any, runs: Sequence[Any], key: str) -> list[float]:
    """A metric's per-epoch history, averaged over runs (truncated to the shortest)."""
    curves = []
    for run in runs:
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        if history:
            curves.append([m.value for m in history])
    if not curves:
        return []
    length = min(map(len, curves))
    return [statistics.fmean(c[i] for c in curves) for i in range(length)]


def plot_learning_curves(client: Any, groups: Sequence[Group], path: Path) -> bool:
    keys = [k for k in CURVES if any(k in r.data.metrics for g in groups for r in g.runs)]
    if not keys:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for g in groups:
            curve = mean_curve(client, g.runs, key)
            if curve:
                ax.plot(range(1, len(curve) + 1), curve, marker=".", label=g.label)
        ax.set(title=f"{key} (mean over seeds)", xlabel="epoch")
        if "loss" in key:
            ax.set_yscale("log")
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return True


def layer_gradients(group: Group) -> tuple[list[str], list[float]]:
    """The group's per-layer gradient norms of the last epoch, mean over seeds, input first."""
    layers = group.runs[0].data.tags.get(LAYERS_TAG, "")
    names = [n for n in layers.split(",") if n]
    norms = []
    for name in names:
        values = [r.data.metrics.get(f"grad_norm/{name}") for r in group.runs]
        values = [v for v in values if v is not None]
        norms.append(statistics.fmean(values) if values else float("nan"))
    return names, norms


def plot_gradients(groups: Sequence[Group], path: Path) -> bool:
    """One panel per architecture: gradient norm per layer (log scale), one line per group."""
    panels: dict[tuple[str, ...], list[tuple[Group, list[float]]]] = {}
    for g in groups:
        names, norms = layer_gradients(g)
        if names:
            panels.setdefault(tuple(names), []).append((g, norms))
    if not panels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (names, lines) in zip(axes[0], panels.items(), strict=True):
        for g, norms in lines:
            ax.plot(range(len(names)), [max(v, 1e-12) for v in norms], marker="o", label=g.label)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
        ax.set(title="gradient norm per layer, last epoch (input -> output)",
               ylabel="||grad||")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return True


def write_report(client: Any, experiment: str, out: Path) -> tuple[Path, list[Verdict]]:
    """Build the table, verdicts and plots; write `out/report.md`."""
    runs = load_runs(client, experiment)
    if not runs:
        raise SystemExit(f"nnlab.report: experiment {experiment!r} has no FINISHED runs")
    options = varying_options(runs)
    groups = sorted(group_runs(runs, options), key=lambda g: g.label)
    metrics = report_metrics(runs)
    ranked = metrics
    note = ""
    if "loss.name" in options:  # different losses: their values are not on one scale
        ranked = [m for m in metrics if "loss" not in m]
        note = ("The loss varies, so `*/loss*` values are each in their own loss's units and "
                "are not ranked.")
    found = verdicts(groups, ranked)
    print_table(experiment, groups, options, metrics)
    for v in found:
        print(v.sentence())
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Study report: {experiment}", "",
             f"{len(runs)} finished runs in {len(groups)} groups; options that vary: "
             f"{', '.join(options) or '(none)'}. Cells: mean ± sample std over seeds "
             "(final value of each run).", "", markdown_table(groups, options, metrics), "",
             "## Best option per metric", "", *([note, ""] if note else []),
             *(f"- {v.sentence()}" for v in found), ""]
    if plot_learning_curves(client, groups, out / "learning_curves.png"):
        lines += ["## Learning curves", "", "![learning curves](learning_curves.png)", ""]
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
    return path, found


def log_report(client: Any, experiment: str, out: Path) -> str:
    """Log the report folder as artifacts of a `report` run in the study's experiment."""
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    run = client.create_run(experiment_id, run_name="report",
                            tags={REPORT_TAG: "true", "mlflow.source.name": "nnlab.report"})
    client.log_artifacts(run.info.run_id, str(out), "report")
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnlab.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="MLflow experiment name (a study's)")
    parser.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    parser.add_argument("--out", type=Path, help="folder for report.md and plots "
                        "(default: reports/<experiment>)")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    args = parser.parse_args(argv)

    from nnlab.tracking import MlflowClient

    client = MlflowClient(args.tracking_uri)
    out = args.out or Path("reports") / args.experiment
    path, _ = write_report(client, args.experiment, out)
    print(f"nnlab.report: wrote {path}")
    if not args.no_log:
        print(f"nnlab.report: logged as run {log_report(client, args.experiment, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
