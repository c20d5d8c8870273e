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
import math
import statistics
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnlab.errors import NnlabError, ReportError
from nnlab.quiet import quiet
from nnlab.report_page import write_page
from nnlab.tracking import tags
from nnlab.tracking.life import MONITORED as MONITOR_BY_TASK
from nnlab.tracking.store import existing_store

NOT_OPTIONS = ("seed", "mlflow.", "model.num_params", "study.", "hydra.")
LOWER_IS_BETTER = ("loss", "mse", "mae", "time")
CURVES = ("train/loss_epoch", "val/loss", "val/acc", "val/r2")
MONITORED = tuple(MONITOR_BY_TASK.values())  # what the sweepers optimise
ALPHA = 0.05  # significance level; the CIs are 1 - ALPHA
WEAK_N = 5  # fewer seeds than this per option: the verdict is flagged as weak
POWER = 0.8  # the power at which the detectable difference and the seeds needed are computed
WIDTH = 100  # the terminal report fits this many columns


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


# -- statistics (scipy.stats) ---------------------------------------------------------------------


@dataclass
class Summary:
    """n, mean, sample sd and the 95% t confidence interval of the mean (sd/ci None if n < 2)."""

    n: int
    mean: float
    sd: float | None
    ci: tuple[float, float] | None


def summarize(values: Sequence[float], level: float = 1 - ALPHA) -> Summary:
    from scipy import stats

    n = len(values)
    if n == 0:
        return Summary(0, float("nan"), None, None)
    mean = statistics.fmean(values)
    if n < 2:
        return Summary(n, mean, None, None)
    sd = statistics.stdev(values)
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return Summary(n, mean, sd, (mean - half, mean + half))


@dataclass
class Comparison:
    """One option against the best: `diff` = option - best with its 95% CI, Cohen's d, the
    test's p-value and the Holm-adjusted p-value across the metric's comparisons."""

    group: Group
    test: str  # "paired t" (same seeds in both) or "Welch t"
    diff: float
    ci: tuple[float, float]
    d: float
    p: float
    p_holm: float = float("nan")
    sd: float = float("nan")  # of the per-seed differences (paired), else pooled
    n: int = 0  # seeds per option (the smaller side)
    detectable: float = float("nan")  # smallest |difference| found at POWER with these seeds
    seeds_needed: int | None = None  # seeds per option the observed difference would need

    @property
    def significant(self) -> bool:
        return self.p_holm < ALPHA  # False when nan (no spread: nothing to test)


def t_test(option: Sequence[float], best: Sequence[float], paired: bool,
           level: float = 1 - ALPHA) -> tuple[str, float, tuple[float, float], float, float]:
    """(test, option - best, its CI, Cohen's d, two-sided p). Paired: the values are in seed
    order, d = mean difference / sd of the differences (d_z). Welch: d = difference / pooled sd.
    p and the CI are nan where neither sample varies."""
    import numpy as np
    from scipy import stats

    a, b = np.asarray(option, dtype=float), np.asarray(best, dtype=float)
    diff = float(a.mean() - b.mean())
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if paired:
            result = stats.ttest_rel(a, b)
            sd = float(np.std(a - b, ddof=1))
            test = "paired t"
        else:
            result = stats.ttest_ind(a, b, equal_var=False)
            pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (
                len(a) + len(b) - 2)
            sd = float(np.sqrt(pooled))
            test = "Welch t"
        low, high = result.confidence_interval(level)
    d = diff / sd if sd > 0 else float("nan")
    return test, diff, (float(low), float(high)), d, float(result.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (nan stays nan and is not counted)."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    adjusted = [float("nan")] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def tost(a: Sequence[float], b: Sequence[float], margin: float, paired: bool) -> float:
    """Two one-sided t tests (Schuirmann): p for "a - b lies within (-margin, +margin)", the
    larger of the two one-sided p-values (paired: on the per-seed differences; else Welch)."""
    import numpy as np
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if paired:
            low = stats.ttest_1samp(x - y, -margin, alternative="greater").pvalue
            high = stats.ttest_1samp(x - y, margin, alternative="less").pvalue
        else:
            low = stats.ttest_ind(x + margin, y, equal_var=False, alternative="greater").pvalue
            high = stats.ttest_ind(x - margin, y, equal_var=False, alternative="less").pvalue
    return float(max(low, high))


def spread(a: Sequence[float], b: Sequence[float], paired: bool) -> float:
    """The sd behind Cohen's d: of the per-seed differences (paired), else the pooled sd."""
    import numpy as np

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired:
        return float(np.std(x - y, ddof=1))
    pooled = ((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / (len(x) + len(y) - 2)
    return float(np.sqrt(pooled))


def _solve(paired: bool, **known: float | None) -> float:
    """statsmodels' t-test power equation solved for the one argument passed as None (paired:
    a one-sample t on the differences; else two samples of equal size)."""
    import numpy as np
    from statsmodels.stats.power import TTestIndPower, TTestPower

    n = known.pop("nobs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = TTestPower().solve_power(nobs=n, **known) if paired \
            else TTestIndPower().solve_power(nobs1=n, **known)
    return float(np.asarray(found).item())


def detectable_difference(sd: float, n: int, paired: bool, alpha: float = ALPHA,
                          power: float = POWER) -> float:
    """The smallest |difference| a two-sided t test at `alpha` finds with probability `power`
    with n seeds per option (paired: sd of the differences; else the pooled sd)."""
    if n < 2 or not sd > 0:
        return float("nan")
    return _solve(paired, effect_size=None, nobs=n, alpha=alpha, power=power) * sd


def seeds_needed(diff: float, sd: float, paired: bool, alpha: float = ALPHA,
                 power: float = POWER) -> int | None:
    """Seeds per option for a two-sided t test at `alpha` to find `diff` with `power` (None:
    no difference or no spread to size it from)."""
    if not sd > 0 or not abs(diff) > 0:
        return None
    from statsmodels.stats.power import TTestIndPower, TTestPower

    effect = abs(diff) / sd
    analysis = TTestPower() if paired else TTestIndPower()
    if analysis.power(effect, 2, alpha) >= power:  # the solver fails below 2; 2 is the least
        return 2
    try:
        n = _solve(paired, effect_size=effect, nobs=None, alpha=alpha, power=power)
    except (ValueError, RuntimeError):
        return None
    return math.ceil(n) if math.isfinite(n) else None


@dataclass
class Verdict:
    """A metric's ranking: the best option, each other option tested against it."""

    metric: str
    ranked: list[Group]  # best first
    comparisons: dict[int, Comparison]  # id(group) -> its test against the best
    untested: list[Group]  # n < 2 on either side: no spread, no test

    @property
    def best(self) -> Group:
        return self.ranked[0]

    @property
    def weak(self) -> bool:
        return min(g.summary(self.metric).n for g in self.ranked) < WEAK_N

    def sentence(self) -> str:
        metric, best = self.metric, self.best
        s = best.summary(metric)
        head = f"{metric}: best mean {best.label} {s.mean:.4f} (n={s.n})"
        if len(self.ranked) == 1:
            return f"{head}; the only option, nothing to compare."
        if s.n < 2:
            return (f"{head}: n < 2, so there is no spread, no test and no verdict; run more "
                    "seeds.")
        comps = list(self.comparisons.values())  # in rank order: the runner-up first
        better = [c for c in comps if c.significant]
        same = [c for c in comps if not c.significant]
        parts = []
        if not comps:
            parts.append("no other option has n >= 2: no test, no verdict")
        elif not better:
            parts.append("no significant difference at 0.05 (" + "; ".join(
                f"vs {c.group.label}: {describe(c)}" for c in same) + ")")
        else:
            parts.append(f"better than {', '.join(c.group.label for c in better)} "
                         f"at 0.05 ({'; '.join(describe(c) for c in better)})")
            if same:
                parts.append("no significant difference at 0.05 from " + "; ".join(
                    f"{c.group.label} ({describe(c)})" for c in same))
            else:
                parts[-1] = f"the winner: {parts[-1]}"
        if self.untested:
            parts.append(f"not tested (n < 2): {', '.join(g.label for g in self.untested)}")
        if self.weak:
            parts.append(f"weak: fewer than {WEAK_N} seeds per option")
        return f"{head}; " + "; ".join(parts) + "."


    def lines(self, width: int = WIDTH) -> list[str]:
        """The verdict in at most three lines of at most `width` characters (the terminal's)."""
        best, s = self.best, self.best.summary(self.metric)
        head = f"{self.metric}: best {best.label} {s.mean:.4f} (n={s.n})"
        if len(self.ranked) == 1:
            return [fit(f"{head}; the only option", [], "", width)]
        if s.n < 2 or not self.comparisons:
            return [fit(head, [], "", width), "no verdict; run more seeds (n < 2 per option: "
                    "no spread, no test)"]
        notes = [f"weak: n < {WEAK_N}"] if self.weak else []
        if self.untested:
            notes.append(f"{len(self.untested)} option(s) untested (n < 2)")
        out = [fit(head + "".join(f"; {n}" for n in notes), [], "", width)]
        comps = list(self.comparisons.values())
        better = [c.group.label for c in comps if c.significant]
        same = [c for c in comps if not c.significant]
        if better:
            out.append(fit(f"beats at {ALPHA} (Holm): ", better, "", width))
        if same:
            c = same[0]  # the closest to the best
            need = "" if c.seeds_needed is None else f", {c.seeds_needed} seeds find it"
            tail = (f"; nearest {c.diff:+.4f} (detectable {c.detectable:.4f}{need})"
                    if not math.isnan(c.detectable) else "; no spread to test")
            out.append(fit("not told apart from it: ", [x.group.label for x in same], tail, width))
        return out


def fit(prefix: str, items: Sequence[str], suffix: str, width: int) -> str:
    """prefix + as many comma-separated items as fit + '(+k more)' + suffix in `width` columns;
    else the count of items, then without the suffix, then cut."""
    for keep in range(len(items), 0, -1):
        more = f" (+{len(items) - keep} more)" if keep < len(items) else ""
        text = prefix + ", ".join(items[:keep]) + more + suffix
        if len(text) <= width:
            return text
    count = f"{len(items)} options" if items else ""
    for text in (prefix + count + suffix, prefix + count):
        if len(text) <= width:
            return text
    return text[:width - 3] + "..."


def add_seeds_command(runs: Sequence[Any], seeds: int = WEAK_N) -> str:
    """The multirun that brings each option to `seeds` seeds, rebuilt from the runs' overrides;
    `sweep.resume=true` skips the runs that already finished."""
    import shlex

    values: dict[str, list[str]] = {}
    for run in sorted(runs, key=lambda r: getattr(r.info, "start_time", 0) or 0):  # sweep order
        for word in shlex.split(run.data.tags.get(tags.OVERRIDES, "")):
            key, _, value = word.partition("=")
            if key in ("seed", "sweep.resume") or key.startswith(("hydra", "+hydra")):
                continue
            values.setdefault(key, [])
            if value not in values[key]:
                values[key].append(value)
    have = {int(run.data.params.get("seed", 0)) for run in runs}
    seed_list = sorted(have)
    candidate = 0
    while len(seed_list) < max(seeds, len(have)):
        if candidate not in have:
            seed_list.append(candidate)
        candidate += 1
    words = ["python", "-m", "nnlab", "-m", *(f"{k}={','.join(v)}" for k, v in values.items()),
             "seed=" + ",".join(map(str, sorted(seed_list))), "sweep.resume=true"]
    return " ".join(shlex.quote(w) if any(ch in w for ch in " '\"()") else w for w in words)


def wrapped(command: str, width: int = WIDTH) -> list[str]:
    """A shell command over lines of at most `width` columns, joined by backslashes."""
    lines, line = [], ""
    for word in command.split(" "):
        if line and len(line) + 1 + len(word) > width - 2:
            lines.append(line + " \\")
            line = "    " + word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line]


def describe(c: Comparison) -> str:
    if math.isnan(c.p):
        return f"{c.test}: no spread in either option, untestable"
    return f"{c.test}, Holm p={c.p_holm:.3g}, diff {c.diff:+.4f}, d={c.d:.2f}"


def higher_is_better(metric: str) -> bool:
    return not any(word in metric for word in LOWER_IS_BETTER)


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


def verdicts(groups: Sequence[Group], metrics: Sequence[str]) -> list[Verdict]:
    """Per metric: rank by mean, test every option with n >= 2 against the best (paired t when
    both ran the same seeds, else Welch t), Holm-correct the metric's p-values."""
    found = []
    for metric in metrics:
        sign = 1 if higher_is_better(metric) else -1
        ranked = sorted((g for g in groups if g.summary(metric).n),
                        key=lambda g: -sign * g.summary(metric).mean)
        if not ranked:
            continue
        best, comparisons, untested = ranked[0], {}, []
        for g in ranked[1:]:
            if g.summary(metric).n < 2 or best.summary(metric).n < 2:
                untested.append(g)
                continue
            mine, theirs = g.values(metric), best.values(metric)
            paired = bool(mine) and mine.keys() == theirs.keys()
            if paired:
                seeds = sorted(mine)
                a, b = [mine[k] for k in seeds], [theirs[k] for k in seeds]
            else:
                a, b = g.by_run(metric), best.by_run(metric)
            comparisons[id(g)] = Comparison(g, *t_test(a, b, paired))
            comparisons[id(g)].sd, comparisons[id(g)].n = spread(a, b, paired), min(len(a), len(b))
        family = max(1, len(comparisons))
        for c, p in zip(comparisons.values(), holm([c.p for c in comparisons.values()]),
                        strict=True):
            c.p_holm = p
            paired = c.test == "paired t"
            c.detectable = detectable_difference(c.sd, c.n, paired, ALPHA / family)
            c.seeds_needed = seeds_needed(c.diff, c.sd, paired, ALPHA / family)
        found.append(Verdict(metric, ranked, comparisons, untested))
    return found


def power_cells(c: Comparison | None) -> list[str]:
    """The comparison's smallest detectable difference and the seeds its difference needs."""
    if c is None or math.isnan(c.detectable):
        return ["", ""]
    needed = "-" if c.seeds_needed is None else str(c.seeds_needed)
    return [f"{c.detectable:.4f}", needed]


def rows(verdict: Verdict) -> list[list[str]]:
    """A metric's table rows: option, n, mean, sd, 95% CI, diff vs best [CI], d, p (Holm), test,
    the smallest difference detectable at 80% power, the seeds the difference would need."""
    out = []
    for g in verdict.ranked:
        s = g.summary(verdict.metric)
        sd = f"{s.sd:.4f}" if s.sd is not None else "n<2"
        ci = f"[{s.ci[0]:.4f}, {s.ci[1]:.4f}]" if s.ci else "-"
        c = verdict.comparisons.get(id(g))
        if g is verdict.best:
            tail = ["(best)", "", "", ""]
        elif c is None:
            tail = ["untested", "", "", ""]
        else:
            diff_ci = "" if math.isnan(c.ci[0]) else f" [{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]"
            d = "" if math.isnan(c.d) else f"{c.d:.2f}"
            p = "-" if math.isnan(c.p_holm) else f"{c.p_holm:.3g}" + ("*" if c.significant else "")
            tail = [f"{c.diff:+.4f}{diff_ci}", d, p, c.test]
        out.append([g.label, str(s.n), f"{s.mean:.4f}", sd, ci, *tail, *power_cells(c)])
    return out


HEADER = ["option", "n", "mean", "sd", "95% CI", "diff vs best [95% CI]", "d", "p (Holm)",
          "test", "detectable at 80%", "seeds needed"]
TERMINAL = ("option", "n", "mean", "sd", "diff vs best", "p (Holm)", "detect.", "seeds")


def terminal_rows(verdict: Verdict) -> list[list[str]]:
    """The table's narrow cut for a 100-column terminal (the CIs and tests stay in report.md)."""
    out = []
    for row in rows(verdict):
        diff = row[5].split(" [")[0]
        out.append([row[0], row[1], row[2], row[3], diff, row[7], row[9], row[10]])
    return out


def print_tables(experiment: str, found: Sequence[Verdict], runs: Sequence[Any] = ()) -> None:
    """Per metric a narrow table (options as rows) and at most three lines of verdict, all in
    WIDTH columns; where the seeds are too few, the command that adds them."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=WIDTH)
    for verdict in found:
        table = Table(title=f"{experiment}: {verdict.metric} (final value, over seeds)")
        for i, name in enumerate(TERMINAL):
            table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
        for row in terminal_rows(verdict):
            table.add_row(*row)
        console.print(table)
        for line in verdict.lines():
            console.print(line, soft_wrap=True, highlight=False, markup=False)
        console.print()
    if runs and any(line.startswith("no verdict") for v in found for line in v.lines()):
        console.print("no verdict; run more seeds. This adds them (finished runs are skipped):",
                      highlight=False)
        for line in wrapped(add_seeds_command(runs)):
            console.print(line, soft_wrap=True, highlight=False, markup=False)
        console.print()
    console.print(f"detect.: the smallest difference a t test finds at {POWER:.0%} power with "
                  "these seeds; seeds: per", highlight=False)
    console.print("option, what the observed difference would need (both at 0.05 / the "
                  "comparisons of the metric)", highlight=False)


def markdown_table(verdict: Verdict) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(verdict)]
    return "\n".join(lines)


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


def shown_metrics(metrics: Sequence[str], all_metrics: bool) -> list[str]:
    """The monitored metric (val/acc or val/r2) and the test metrics, or every one."""
    chosen = [m for m in metrics if all_metrics or m in MONITORED or m.startswith("test/")]
    return sorted(chosen, key=lambda m: (m not in MONITORED, m))  # the monitored one first


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


if __name__ == "__main__":
    sys.exit(main())
