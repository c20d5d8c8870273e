"""nnlab.report's statistics: fixed numbers against scipy.stats, the verdict's wording, and a
real sweep where one option is clearly worse (optimizer.lr 1e-5 vs 0.05)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from nnlab.report import Group, holm, main, summarize, t_test, verdicts

A = [0.91, 0.93, 0.90, 0.94, 0.92]
B = [0.88, 0.89, 0.88, 0.90, 0.89]


def fake_group(label: str, values: list[float], seeds: list[int] | None = None,
               metric: str = "test/acc") -> Group:
    seeds = list(range(len(values))) if seeds is None else seeds
    runs = [SimpleNamespace(info=SimpleNamespace(run_id=f"{label}{i}"),
                            data=SimpleNamespace(params={"seed": str(s)}, metrics={metric: v}))
            for i, (s, v) in enumerate(zip(seeds, values, strict=True))]
    return Group({"init.name": label}, runs)


def test_summary_is_the_t_interval() -> None:
    s = summarize(A)
    assert s.n == 5 and s.mean == pytest.approx(np.mean(A))
    assert s.sd == pytest.approx(np.std(A, ddof=1))
    low, high = stats.t.interval(0.95, 4, loc=np.mean(A), scale=stats.sem(A))
    assert s.ci == pytest.approx((low, high))
    one = summarize([0.5])
    assert one.n == 1 and one.sd is None and one.ci is None


def test_welch_and_paired_match_scipy() -> None:
    test, diff, ci, d, p = t_test(B, A, paired=False)
    welch = stats.ttest_ind(B, A, equal_var=False)
    assert test == "Welch t" and p == pytest.approx(welch.pvalue)
    assert diff == pytest.approx(np.mean(B) - np.mean(A))
    assert ci == pytest.approx(tuple(welch.confidence_interval()))
    pooled = math.sqrt((np.var(A, ddof=1) + np.var(B, ddof=1)) / 2)  # equal n: pooled sd
    assert d == pytest.approx(diff / pooled)

    test, diff, ci, d, p = t_test(B, A, paired=True)
    paired = stats.ttest_rel(B, A)
    assert test == "paired t" and p == pytest.approx(paired.pvalue)
    assert ci == pytest.approx(tuple(paired.confidence_interval()))
    differences = np.subtract(B, A)
    assert d == pytest.approx(differences.mean() / differences.std(ddof=1))


def test_holm_step_down() -> None:
    # sorted 0.01, 0.02, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.02), max(0.04, 1 x 0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    adjusted = holm([float("nan"), 0.02])
    assert math.isnan(adjusted[0]) and adjusted[1] == pytest.approx(0.02)


def test_verdict_pairs_matching_seeds_and_corrects_with_holm() -> None:
    c = [0.92, 0.92, 0.91, 0.93, 0.91]  # as good as A within the noise
    (verdict,) = verdicts([fake_group("a", A), fake_group("b", B), fake_group("c", c)],
                          ["test/acc"])
    assert [g.label for g in verdict.ranked] == ["init=a", "init=c", "init=b"]
    raw = [stats.ttest_rel(c, A).pvalue, stats.ttest_rel(B, A).pvalue]
    got = [verdict.comparisons[id(g)] for g in verdict.ranked[1:]]
    assert [x.test for x in got] == ["paired t", "paired t"]
    assert [x.p_holm for x in got] == pytest.approx(holm(raw))
    assert [x.significant for x in got] == [False, True]
    sentence = verdict.sentence()
    assert "better than init=b at 0.05 (paired t, Holm p=" in sentence
    assert "no significant difference at 0.05 from init=c (paired t" in sentence
    assert "winner" not in sentence  # c is not beaten: no winner is named
    assert "weak" not in sentence  # n = 5

    (clear,) = verdicts([fake_group("a", A), fake_group("b", B)], ["test/acc"])
    assert "the winner: better than init=b at 0.05" in clear.sentence()


def test_unmatched_seeds_use_welch_and_overlap_is_not_significant() -> None:
    a, b = [0.90, 0.95, 0.85], [0.89, 0.94, 0.86]
    (verdict,) = verdicts([fake_group("a", a), fake_group("b", b, seeds=[5, 6, 7])], ["test/acc"])
    (comparison,) = verdict.comparisons.values()
    assert comparison.test == "Welch t"
    assert comparison.p == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue)
    sentence = verdict.sentence()
    assert "no significant difference at 0.05" in sentence
    assert "weak: fewer than 5 seeds per option" in sentence
    assert "winner" not in sentence


def test_one_run_per_option_has_no_spread_and_no_verdict(tmp_path) -> None:
    (verdict,) = verdicts([fake_group("a", [0.92]), fake_group("b", [0.90])], ["test/acc"])
    sentence = verdict.sentence()
    assert "n < 2, so there is no spread, no test and no verdict" in sentence
    assert not verdict.comparisons
    from nnlab.report import markdown_table

    table = markdown_table(verdict)
    assert "± 0.0000" not in table and "0.0000" not in table.split("|")[4]
    assert "| init=a | 1 | 0.9200 | n<2 | - | (best) |" in table


@pytest.fixture(scope="module")
def lr_sweep(moons_study, tmp_path_factory):
    """optimizer.lr in {1e-5, 0.05} x 3 seeds: an MLP on moons, 3 epochs each."""
    tmp = tmp_path_factory.mktemp("lr_sweep")
    uri = moons_study(tmp, "lr_sweep", {"optimizer.lr": ("1e-5", "0.05"),
                                        "seed": ("0", "1", "2")},
                      model=("model=mlp", "model.hidden=[16]"))
    return uri, tmp


def test_a_clearly_worse_learning_rate_is_found_significant(compose_cfg, lr_sweep, capsys) -> None:
    uri, tmp = lr_sweep
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("lr_sweep").experiment_id])
    by_lr = {lr: {r.data.params["seed"]: r.data.metrics["test/acc"] for r in runs
                  if float(r.data.params["optimizer.lr"]) == lr} for lr in (1e-5, 0.05)}
    seeds = sorted(by_lr[0.05])
    good, bad = ([by_lr[lr][s] for s in seeds] for lr in (0.05, 1e-5))
    expected = stats.ttest_rel(bad, good)

    out = tmp / "report"
    assert main(["lr_sweep", "--tracking-uri", uri, "--out", str(out), "--no-log"]) == 0
    printed = capsys.readouterr().out
    text = (out / "report.md").read_text()
    section = text.split("## test/acc")[1].split("## ")[0]
    assert "| optimizer.lr=0.05 | 3 |" in section
    assert f"{expected.pvalue:.3g}*" in section and "paired t" in section
    verdict = next(x for x in section.splitlines() if x.startswith("Verdict:"))
    assert "best mean optimizer.lr=0.05" in verdict
    assert f"the winner: better than optimizer.lr=1e-05 at 0.05 (paired t, Holm p=" \
           f"{expected.pvalue:.3g}" in verdict
    assert "weak: fewer than 5 seeds" in verdict
    assert "## val/acc" in text and "## train/loss_epoch" not in text  # default metrics only
    assert "Weak evidence" in text
    assert (out / "learning_curves.png").stat().st_size > 10_000
    assert max(map(len, printed.splitlines())) <= 120  # rich wraps to the terminal width
    assert main(["lr_sweep", "--tracking-uri", uri, "--out", str(out), "--no-log",
                 "--all-metrics"]) == 0
    assert "## train/loss_epoch" in (out / "report.md").read_text()


# -- equivalence (TOST) and power, against statsmodels and a hand computation -------------------


def test_tost_matches_statsmodels_paired_and_welch() -> None:
    from statsmodels.stats.weightstats import ttost_ind, ttost_paired

    from nnlab.report import tost

    for margin in (0.01, 0.03, 0.05):
        paired = ttost_paired(np.array(A), np.array(B), -margin, margin)[0]
        welch = ttost_ind(np.array(A), np.array(B), -margin, margin, usevar="unequal")[0]
        assert tost(A, B, margin, paired=True) == pytest.approx(paired, rel=1e-9)
        assert tost(A, B, margin, paired=False) == pytest.approx(welch, rel=1e-9)
    # by hand: the paired differences 0.03, 0.04, 0.02, 0.04, 0.03 (mean 0.032) lie inside +-0.05
    diffs = np.subtract(A, B)
    se = diffs.std(ddof=1) / math.sqrt(5)
    upper = stats.t.cdf((diffs.mean() - 0.05) / se, 4)  # H0: mean >= +0.05
    lower = stats.t.sf((diffs.mean() + 0.05) / se, 4)  # H0: mean <= -0.05
    assert tost(A, B, 0.05, paired=True) == pytest.approx(max(upper, lower))
    assert tost(A, B, 0.05, paired=True) < 0.05 < tost(A, B, 0.01, paired=True)


def power_by_hand(effect: float, n: int, alpha: float, paired: bool) -> float:
    """Two-sided t test power from the noncentral t (one sample of n differences, or two samples
    of n each)."""
    df, nc = (n - 1, effect * math.sqrt(n)) if paired else (2 * n - 2, effect * math.sqrt(n / 2))
    crit = stats.t.ppf(1 - alpha / 2, df)
    return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)


@pytest.mark.parametrize("paired", [True, False])
def test_detectable_difference_has_80_percent_power(paired: bool) -> None:
    from nnlab.report import detectable_difference

    sd = 0.02
    for n, alpha in ((5, 0.05), (5, 0.05 / 3), (10, 0.05)):
        smallest = detectable_difference(sd, n, paired, alpha)
        assert power_by_hand(smallest / sd, n, alpha, paired) == pytest.approx(0.8, abs=1e-4)
    assert math.isnan(detectable_difference(sd, 1, paired))


@pytest.mark.parametrize("paired", [True, False])
def test_seeds_needed_is_the_fewest_with_80_percent_power(paired: bool) -> None:
    from nnlab.report import seeds_needed

    for diff, sd in ((0.01, 0.02), (0.05, 0.04), (0.003, 0.01)):
        n = seeds_needed(diff, sd, paired)
        assert power_by_hand(diff / sd, n, 0.05, paired) >= 0.8
        assert n == 2 or power_by_hand(diff / sd, n - 1, 0.05, paired) < 0.8
    assert seeds_needed(0.5, 0.001, paired) == 2  # huge effects: the least a t test can use
    assert seeds_needed(0.0, 0.01, paired) is None and seeds_needed(0.01, 0.0, paired) is None


def test_comparisons_carry_the_power_figures() -> None:
    from nnlab.report import detectable_difference, seeds_needed, spread

    c_values = [0.905, 0.935, 0.895, 0.945, 0.915]
    (verdict,) = verdicts([fake_group("a", A), fake_group("b", B), fake_group("c", c_values)],
                          ["test/acc"])
    for group, values in ((verdict.ranked[1], c_values), (verdict.ranked[2], B)):
        c = verdict.comparisons[id(group)]
        sd = spread(values, A, paired=True)
        assert c.detectable == pytest.approx(detectable_difference(sd, 5, True, 0.05 / 2))
        assert c.seeds_needed == seeds_needed(c.diff, sd, True, 0.05 / 2)


def test_terminal_verdict_is_three_lines_of_at_most_100_columns() -> None:
    groups = [fake_group(f"a_very_long_initialisation_name_number_{i}", [0.9 - 0.01 * i + 0.002 * s
                                                                           for s in range(5)])
              for i in range(12)]
    groups.append(fake_group("close", [0.9005, 0.9015, 0.9045, 0.9065, 0.9075]))
    (verdict,) = verdicts(groups, ["test/acc"])
    lines = verdict.lines()
    assert 1 < len(lines) <= 3 and all(len(line) <= 100 for line in lines)
    assert lines[1].startswith("beats at 0.05 (Holm): ") and "more)" in lines[1]
    assert "not told apart from it: " in lines[2] and "seeds find it)" in lines[2]


def test_one_seed_per_option_says_no_verdict_and_the_command_that_adds_seeds() -> None:
    from nnlab.report import add_seeds_command, wrapped

    runs = []
    for i, (init, act) in enumerate([(i, a) for i in ("xavier", "kaiming")
                                     for a in ("sigmoid", "relu")]):
        runs.append(SimpleNamespace(
            info=SimpleNamespace(run_id=str(i)),
            data=SimpleNamespace(params={"seed": "0", "init.name": init}, metrics={},
                                 tags={"nnlab.overrides": f"model=lenet5 init={init} "
                                                          f"activation={act}"})))
    assert add_seeds_command(runs) == ("python -m nnlab -m model=lenet5 init=xavier,kaiming "
                                       "activation=sigmoid,relu seed=0,1,2,3,4 "
                                       "sweep.resume=true")
    (verdict,) = verdicts([fake_group("xavier", [0.92]), fake_group("kaiming", [0.90])],
                          ["test/acc"])
    assert verdict.lines()[1].startswith("no verdict; run more seeds")
    long = add_seeds_command(runs) + "".join(f" some.key{i}=value{i}" for i in range(30))
    assert all(len(line) <= 100 for line in wrapped(long))
    assert " ".join(w.rstrip("\\").strip() for w in wrapped(long)).split() == long.split()
