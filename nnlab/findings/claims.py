"""A study's claims and targets tested on its runs: paired or Welch t tests, TOST for claims of
no difference, one-sample t tests for targets, Holm across the study's primary ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nnlab.findings.studies import Claim, Target
from nnlab.report import (
    ALPHA,
    WEAK_N,
    detectable_difference,
    higher_is_better,
    holm,
    seeds_needed,
    spread,
    summarize,
    t_test,
    tost,
)


def run_value(run: Any, metric: str, epoch: int | None, client: Any) -> float | None:
    """The run's final `metric`, or its value after epoch `epoch` (the epoch-th logged epoch
    value, from MLflow's history)."""
    if epoch is None:
        return run.data.metrics.get(metric)
    history = sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
    return history[epoch - 1].value if len(history) >= epoch else None


def seed_values(runs: Sequence[Any], metric: str, epoch: int | None,
                client: Any) -> dict[str, float]:
    """seed -> value; a seed that occurs twice gets a key of its own (no pairing then)."""
    found: dict[str, float] = {}
    for run in runs:
        value = run_value(run, metric, epoch, client)
        if value is not None:
            seed = run.data.params.get("seed", run.info.run_id)
            found[seed if seed not in found else run.info.run_id] = value
    return found


@dataclass
class ClaimResult:
    claim: Claim
    better: list[float]
    worse: list[float]
    test: str = "-"
    diff: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))
    d: float = float("nan")
    p: float = float("nan")  # superiority: two-sided t; equivalence: TOST
    p_diff: float = float("nan")  # equivalence claims: the two-sided t for a difference
    p_holm: float = float("nan")  # primary: Holm over the study's family; secondary: = p
    detectable: float = float("nan")  # smallest |difference| found at 80% power, these seeds
    seeds_needed: int | None = None  # per option, for the observed difference
    sd: float = float("nan")  # of the per-seed differences (paired), else pooled
    n: int = 0  # seeds per side (the smaller)
    paired: bool = False

    @property
    def primary(self) -> bool:
        return self.claim.primary

    @property
    def outcome(self) -> str:
        if min(len(self.better), len(self.worse)) < 2:
            return "untested (n < 2)"
        if self.p_holm != self.p_holm:  # nan: no spread on either side
            return "untestable (no spread)"
        if self.claim.margin is not None:
            if self.p_holm < ALPHA:
                return "equivalent"
            return "contradicted (they differ)" if self.p_diff < ALPHA else \
                "not shown (neither equivalent nor different)"
        if self.p_holm >= ALPHA:
            return "not shown (no significant difference)"
        sign = 1 if higher_is_better(self.claim.metric) else -1
        return "holds" if sign * self.diff > 0 else "contradicted"

    def lab(self) -> str:
        """The lab's numbers: both means and the difference."""
        b, w = summarize(self.better), summarize(self.worse)
        when = f" after epoch {self.claim.epoch}" if self.claim.epoch else ""
        means = " vs ".join(f"{s.mean:.4g} (n={s.n})" if s.n else "no runs" for s in (b, w))
        return f"{self.claim.metric}{when}: {means}"

    def test_text(self) -> str:
        if self.test == "-":
            return "-"
        if self.claim.margin is not None:
            return f"TOST +-{self.claim.margin:g} ({self.test})"
        return self.test

    def line(self) -> str:
        c = self.claim
        stats = self.lab()
        if self.test != "-":
            holm_word = "Holm p" if c.primary else "p (secondary, not in the Holm family)"
            if c.margin is not None:
                stats += (f"; TOST with margin +-{c.margin:g} ({self.test}): p={self.p:.3g}, "
                          f"{holm_word}={self.p_holm:.3g}; difference {self.diff:+.4g} [90% CI "
                          f"{self.ci[0]:+.4g}, {self.ci[1]:+.4g}]; t for a difference: "
                          f"p={self.p_diff:.3g}")
            else:
                stats += (f"; {self.test}, p={self.p:.3g}, {holm_word}={self.p_holm:.3g}, "
                          f"difference {self.diff:+.4g} [95% CI {self.ci[0]:+.4g}, "
                          f"{self.ci[1]:+.4g}], d={self.d:.2f}")
            if self.detectable == self.detectable:
                need = "-" if self.seeds_needed is None else self.seeds_needed
                stats += (f"; smallest difference detectable at 80% power with these seeds "
                          f"{self.detectable:.3g}, seeds per option this difference needs: "
                          f"{need}")
        weak = " Weak: n < 5." if min(len(self.better), len(self.worse)) < WEAK_N else ""
        kind = "" if c.primary else " (secondary)"
        paper = f" Paper: {c.paper}." if c.paper else ""
        return f"**{self.outcome}**{kind}: {c.text}.{paper} Lab: {stats}.{weak}"


def matching(runs: Sequence[Any], options: dict[str, str]) -> list[Any]:
    def same(run: Any, key: str, value: str) -> bool:
        got = run.data.params.get(key)
        try:
            return float(got) == float(value)
        except (TypeError, ValueError):
            return got == value

    return [r for r in runs if all(same(r, k, v) for k, v in options.items())]


def check_claims(runs: Sequence[Any], claims: Sequence[Claim],
                 client: Any = None) -> list[ClaimResult]:
    """Each claim's two samples and test (`diff` = better - worse, so negative where a
    lower-is-better metric bears the claim out): a t test, or for an equivalence claim two
    one-sided tests; paired over seeds when both sides ran the same seeds. Holm across the
    study's primary claims (`holm_family` does it with the targets)."""
    results = []
    for claim in claims:
        better, worse = (seed_values(matching(runs, {**claim.where, **options}), claim.metric,
                                     claim.epoch, client)
                         for options in (claim.better, claim.worse))
        paired = bool(better) and better.keys() == worse.keys()
        seeds = sorted(better)
        a = [better[k] for k in seeds] if paired else list(better.values())
        b = [worse[k] for k in seeds] if paired else list(worse.values())
        result = ClaimResult(claim, a, b)
        if min(len(a), len(b)) >= 2:
            if claim.margin is None:
                result.test, result.diff, result.ci, result.d, result.p = t_test(a, b, paired)
            else:
                result.test, result.diff, result.ci, result.d, result.p_diff = t_test(
                    a, b, paired, level=1 - 2 * ALPHA)
                result.p = tost(a, b, claim.margin, paired)
            result.sd, result.n, result.paired = spread(a, b, paired), min(len(a), len(b)), paired
        results.append(result)
    holm_family(results)
    return results


def holm_family(results: Sequence[ClaimResult | TargetResult]) -> None:
    """Holm-adjust the primary results' p-values together (the study's family); a secondary
    result keeps its own p. Then size each claim: the smallest difference detectable at 80%
    power and the seeds its difference needs, at the level its own test faces (0.05 / m)."""
    primary = [r for r in results if r.primary]
    for r, p in zip(primary, holm([r.p for r in primary]), strict=True):
        r.p_holm = p
    for r in results:
        if not r.primary:
            r.p_holm = r.p
        if isinstance(r, ClaimResult) and r.test != "-" and r.claim.margin is None:
            alpha = ALPHA / max(1, len(primary)) if r.primary else ALPHA
            r.detectable = detectable_difference(r.sd, r.n, r.paired, alpha)
            r.seeds_needed = seeds_needed(r.diff, r.sd, r.paired, alpha)


@dataclass
class TargetResult:
    target: Target
    values: list[float]
    p: float = float("nan")  # H1: the mean is on the target's side
    p_other: float = float("nan")  # H1: the mean is on the other side
    p_holm: float = float("nan")

    @property
    def primary(self) -> bool:
        return self.target.primary

    @property
    def outcome(self) -> str:
        if len(self.values) < 2:
            return "untested (n < 2)"
        if len(set(self.values)) == 1:  # no spread, no t test: every run says it alone
            on_side = (self.values[0] < self.target.at_least) if self.target.below \
                else (self.values[0] >= self.target.at_least)
            return f"{'holds' if on_side else 'contradicted'} (every run; no spread to test)"
        if self.p_holm < ALPHA:
            return "holds"
        return "contradicted" if self.p_other < ALPHA else "not shown (no significant difference)"

    def lab(self) -> str:
        t, s = self.target, summarize(self.values)
        when = f" after epoch {t.epoch}" if t.epoch else ""
        return f"{t.metric}{when}: " + (f"{s.mean:.4g} (n={s.n})" if s.n else "no runs")

    def line(self) -> str:
        t, s = self.target, summarize(self.values)
        side = "below" if t.below else "above"
        reached = sum((v < t.at_least) if t.below else (v >= t.at_least) for v in self.values)
        stats = self.lab()
        if s.ci:
            holm_word = "Holm p" if t.primary else "p (secondary)"
            stats += (f", 95% CI [{s.ci[0]:.4g}, {s.ci[1]:.4g}]; one-sample t against "
                      f"{t.at_least}: p={self.p:.3g} (mean {side}), {holm_word}="
                      f"{self.p_holm:.3g}; p={self.p_other:.3g} for the other side")
        weak = " Weak: n < 5." if s.n < WEAK_N else ""
        kind = "" if t.primary else " (secondary)"
        paper = f" Paper: {t.paper}." if t.paper else ""
        verb = "stay below" if t.below else "reach"
        return (f"**{self.outcome}**{kind}: {t.text}.{paper} Lab: {stats}; {reached} of {s.n} "
                f"runs {verb} it.{weak}")


def check_targets(runs: Sequence[Any], targets: Sequence[Target],
                  client: Any = None) -> list[TargetResult]:
    from scipy import stats

    results = []
    for target in targets:
        values = list(seed_values(matching(runs, target.where), target.metric, target.epoch,
                                  client).values())
        result = TargetResult(target, values)
        if len(values) >= 2 and len(set(values)) > 1:
            mine, other = ("less", "greater") if target.below else ("greater", "less")
            result.p = float(stats.ttest_1samp(values, target.at_least, alternative=mine).pvalue)
            result.p_other = float(stats.ttest_1samp(values, target.at_least,
                                                     alternative=other).pvalue)
        results.append(result)
    holm_family(results)
    return results
