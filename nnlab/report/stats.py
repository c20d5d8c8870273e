"""A study's statistics (scipy.stats, statsmodels): seed summaries, t tests, Holm's
correction, two one-sided tests, and the power of a comparison (detectable difference, seeds
needed)."""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05  # significance level; the CIs are 1 - ALPHA
POWER = 0.8  # the power at which the detectable difference and the seeds needed are computed


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
