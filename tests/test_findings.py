"""nnlab.findings: claims tested on known numbers, and the script end to end in quick mode on
one small study (a cut grid: 2 losses x 2 seeds of loss_regression_study)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from scipy import stats

from nnlab.findings import (
    BY_NAME,
    DEFAULT_STUDIES,
    Claim,
    Target,
    check_claims,
    check_targets,
    main,
    study_seeds,
)


def run(loss: str, seed: int, mse: float) -> SimpleNamespace:
    return SimpleNamespace(info=SimpleNamespace(run_id=f"{loss}{seed}"), data=SimpleNamespace(
        params={"loss.name": loss, "seed": str(seed)}, metrics={"test/mse": mse}))


def test_claims_hold_fail_or_are_contradicted_by_paired_tests() -> None:
    low, high, same = [0.08, 0.09, 0.07, 0.085], [0.13, 0.14, 0.12, 0.135], [0.09, 0.07, 0.08,
                                                                           0.08]
    runs = [run(name, s, v) for name, values in (("a", low), ("b", high), ("c", same))
            for s, v in enumerate(values)]
    claims = [Claim("a beats b", "test/mse", {"loss.name": "a"}, {"loss.name": "b"}),
              Claim("b beats a", "test/mse", {"loss.name": "b"}, {"loss.name": "a"}),
              Claim("a beats c", "test/mse", {"loss.name": "a"}, {"loss.name": "c"}),
              Claim("a beats z", "test/mse", {"loss.name": "a"}, {"loss.name": "z"})]
    holds, contradicted, not_shown, untested = check_claims(runs, claims)
    raw = [stats.ttest_rel(low, high).pvalue, stats.ttest_rel(high, low).pvalue,
           stats.ttest_rel(low, same).pvalue]
    assert holds.p == pytest.approx(raw[0]) and holds.test == "paired t"
    assert holds.p_holm == pytest.approx(min(1, 3 * min(raw[:2])))  # Holm over 3 tested claims
    assert holds.outcome == "holds"  # lower mse is better
    assert contradicted.outcome == "contradicted"
    assert not_shown.outcome == "not shown (no significant difference)"
    assert untested.outcome == "untested (n < 2)" and "no runs" in untested.line()
    assert "paired t, p=" in holds.line() and "Weak: n < 5." in holds.line()


def test_a_target_is_a_one_sided_one_sample_t_test() -> None:
    above, below = [0.991, 0.992, 0.993, 0.992], [0.985, 0.986, 0.984, 0.987]
    runs = [run(name, s, v) for name, values in (("hi", above), ("lo", below))
            for s, v in enumerate(values)]
    for r in runs:
        r.data.metrics["test/acc"] = r.data.metrics.pop("test/mse")
    reach, miss, none = check_targets(runs, [
        Target("hi reaches 99%", "test/acc", 0.99, {"loss.name": "hi"}),
        Target("lo reaches 99%", "test/acc", 0.99, {"loss.name": "lo"}),
        Target("nothing reaches 99%", "test/acc", 0.99, {"loss.name": "none"})])
    assert reach.p == pytest.approx(stats.ttest_1samp(above, 0.99, alternative="greater").pvalue)
    assert reach.outcome == "holds" and "4 of 4 runs reach it" in reach.line()
    assert miss.outcome == "contradicted" and "0 of 4 runs reach it" in miss.line()
    assert none.outcome == "untested (n < 2)"


@pytest.mark.parametrize("study", list(BY_NAME))
def test_every_claim_names_options_its_study_sweeps(compose_cfg, study: str) -> None:
    from test_studies import sweep_grid

    params, _ = sweep_grid(compose_cfg, study)
    swept = {key: str(values).split(",") for key, values in params.items()}
    for claim in BY_NAME[study].claims:
        for options in (claim.better, claim.worse, claim.where):
            for key, value in options.items():
                axis = swept[key.removesuffix(".name")]
                assert any(same(value, v) for v in axis), (claim.text, key, value, axis)


def same(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def test_unknown_study_is_refused(capsys) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--studies", "nope_study", "--report-only"])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "--studies nope_study is invalid" in message and "loss_regression_study" in message


def test_findings_end_to_end_in_quick_mode(tmp_path) -> None:
    doc, store = tmp_path / "docs" / "findings.md", tmp_path / "store"
    assert main(["--mode", "quick", "--studies", "loss_regression_study", "--seeds", "2",
                 "--store", str(store), "--out", str(doc),
                 "--extra", "loss=mse,smooth_l1 instruments.plots=false"]) == 0
    text = doc.read_text()
    assert "quick mode, 2 seeds per option" in text
    section = text.split("(`loss_regression_study`)")[1]
    ran = re.search(r"Ran `python -m nnlab -m experiment=loss_regression_study study.mode=quick "
                    r"seed=0,1 loss=mse,smooth_l1 instruments.plots=false`: 4 finished runs of 3 "
                    r"epoch\(s\), (\d+) s wall", section)
    assert ran and int(ran.group(1)) > 0

    # the claim's p-value is scipy's paired t over the runs in the store
    client = MlflowClient(f"sqlite:///{store}/loss_regression_study/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("loss_regression_study")
                               .experiment_id])
    mse = {(r.data.params["loss.name"], r.data.params["seed"]): r.data.metrics["test/mse"]
           for r in runs if r.data.tags.get("mlflow.source.name") != "nnlab sweep"}
    p = stats.ttest_rel([mse["smooth_l1", s] for s in "01"], [mse["mse", s] for s in "01"]).pvalue
    claim = next(x for x in section.splitlines() if "SmoothL1 beats MSE" in x and x[:2] == "- ")
    assert f"paired t, p={p:.3g}" in claim
    assert "untested (n < 2)" in section  # L1 was cut from the grid
    # the report's own tables and figures, linked relative to the document
    assert "### test/mse" in section and "| loss=smooth_l1 | 2 |" in section
    assert "](findings/loss_regression_study/learning_curves.png)" in section
    assert (doc.parent / "findings" / "loss_regression_study" / "learning_curves.png"
            ).stat().st_size > 10_000
    assert set(BY_NAME) >= {"init_study", "activation_study", "optimizer_study"}
    # --report-only rewrites the document from the stores, keeping each study's measured time
    assert main(["--mode", "quick", "--studies", "loss_regression_study", "--seeds", "2",
                 "--store", str(store), "--out", str(doc), "--report-only",
                 "--extra", "loss=mse,smooth_l1 instruments.plots=false"]) == 0
    assert f"{ran.group(1)} s wall (1-min load average" in doc.read_text()



def test_a_study_runs_the_seeds_its_pilot_asked_for_in_full_mode_only() -> None:
    """The yaml's sweeper seeds and the findings' seeds agree; --seeds overrides; quick runs 5."""
    for name, study in BY_NAME.items():
        yaml_file = Path(__file__).parents[1] / "experiments" / f"{name}.yaml"
        params = OmegaConf.load(yaml_file).hydra.sweeper.params
        assert study_seeds(study, "full", None) == len(str(params.seed).split(",")), name
        assert study_seeds(study, "quick", None) == 5
        assert study_seeds(study, "full", 2) == 2
    assert study_seeds(BY_NAME["dropout_study"], "full", None) == 11
    assert study_seeds(BY_NAME["lenet5_card"], "full", None) == 10
    # `make findings` leaves out only the study that takes hours here (LeNet-5 on 60k MNIST)
    assert set(BY_NAME) - set(DEFAULT_STUDIES) == {"lenet5_mnist"}
