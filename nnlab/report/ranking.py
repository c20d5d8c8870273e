"""A metric's verdict: options ranked by mean, each tested against the best (Holm-corrected),
said as a sentence (report.md) or in at most three terminal lines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from nnlab.report.grouping import Group
from nnlab.report.stats import (
    ALPHA,
    detectable_difference,
    holm,
    seeds_needed,
    spread,
    t_test,
)

LOWER_IS_BETTER = ("loss", "mse", "mae", "time")
WEAK_N = 5  # fewer seeds than this per option: the verdict is flagged as weak
WIDTH = 100  # the terminal report fits this many columns


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


def describe(c: Comparison) -> str:
    if math.isnan(c.p):
        return f"{c.test}: no spread in either option, untestable"
    return f"{c.test}, Holm p={c.p_holm:.3g}, diff {c.diff:+.4f}, d={c.d:.2f}"


def higher_is_better(metric: str) -> bool:
    return not any(word in metric for word in LOWER_IS_BETTER)


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
