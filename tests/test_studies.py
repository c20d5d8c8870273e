"""The studies in experiments/: every job of every sweep composes and validates; one quick study
runs for real through the CLI (two processes in parallel with the joblib launcher)."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser

from nnlab.config import validate

STUDIES = ["init_study", "activation_study", "loss_study", "loss_regression_study",
           "optimizer_study", "dropout_study", "lenet5_mnist"]


def sweep_grid(compose_cfg, experiment: str) -> tuple[dict, list[list[str]]]:
    """(the sweeper's params, every job's overrides) of a study, as Hydra's basic sweeper sees
    them."""
    compose_cfg()  # initialise Hydra once
    hydra_cfg = compose("config", [f"experiment={experiment}"], return_hydra_config=True)
    params = dict(hydra_cfg.hydra.sweeper.params)
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    axes = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in parsed]
    return params, [list(job) for job in itertools.product(*axes)]


@pytest.mark.parametrize("experiment", STUDIES)
def test_every_job_of_a_study_validates(compose_cfg, experiment: str) -> None:
    params, jobs = sweep_grid(compose_cfg, experiment)
    assert len(str(params["seed"]).split(",")) >= 3, "a study runs several seeds"
    names = set()
    for job in jobs:
        if not job[-1].startswith("seed=") or job[-1] == "seed=0":  # seeds cannot break a config
            cfg = compose_cfg([f"experiment={experiment}", "study.mode=quick", *job])
            validate(cfg)
            names.add(cfg.mlflow.experiment_name)
    assert names == {experiment}  # all of a study's runs land in one MLflow experiment
    quick = compose_cfg([f"experiment={experiment}", "study.mode=quick"])
    full = compose_cfg([f"experiment={experiment}"])
    assert quick.trainer.max_epochs < full.trainer.max_epochs
    assert full.trainer.limit_train_batches is None
    assert quick.trainer.limit_train_batches is not None


def test_init_study_covers_the_issue(compose_cfg) -> None:
    params, jobs = sweep_grid(compose_cfg, "init_study")
    assert set(params["init"].split(",")) == {"zeros", "constant", "standard_normal", "uniform",
                                             "xavier_normal", "kaiming_normal"}
    assert len(jobs) == 6 * 2 * 2 * 3
    cfg = compose_cfg(["experiment=init_study", "model=deep_mlp", "init=standard_normal"])
    assert len(cfg.model.hidden) >= 8 and cfg.init.std == 1.0


def test_quick_study_runs_in_parallel_into_one_experiment(all_runs, run_cli, tmp_path) -> None:
    """A slice of optimizer_study (2 optimisers, 1 seed) with the joblib launcher, 2 jobs."""
    result = run_cli(tmp_path, "-m", "experiment=optimizer_study", "study.mode=quick",
                     "optimizer=sgd_plain,adam", "seed=0", "trainer.max_epochs=1",
                     "study.quick.limit_train_batches=3", "hydra/launcher=joblib",
                     "hydra.launcher.n_jobs=2", timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = all_runs(tmp_path, "optimizer_study")
    assert sorted(r.data.params["optimizer.name"] for r in runs) == ["adam", "sgd_plain"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["study.mode"] == "quick"
        assert run.data.params["trainer.limit_train_batches"] == "3"
        assert 0.0 <= run.data.metrics["test/acc"] <= 1.0
        assert run.data.metrics["grad_norm/features.0"] > 0  # the instruments ran


@pytest.mark.slow
def test_optuna_search_runs_with_the_installed_optuna(all_runs, run_cli, tmp_path) -> None:
    """hydra-optuna-sweeper with optuna 2.10 / hydra-core 1.3: 3 trials, best = max val/acc."""
    import yaml

    result = run_cli(tmp_path, "-m", "experiment=optuna_search", "study.mode=quick",
                     "hydra.sweeper.n_trials=3", "study.quick.max_epochs=1",
                     "study.quick.limit_train_batches=3", "hydra.sweep.dir=sweep", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = all_runs(tmp_path, "optuna_search")
    assert len(runs) == 3 and len({r.data.params["optimizer.lr"] for r in runs}) == 3
    for run in runs:
        assert 0.001 <= float(run.data.params["optimizer.lr"]) <= 0.3
        assert run.data.params["init.name"] in {"default", "xavier_normal", "kaiming_normal"}
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(r.data.metrics["val/acc"] for r in runs))
