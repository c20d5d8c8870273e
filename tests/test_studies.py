"""The studies in experiments/: every job of every sweep composes and validates; one quick study
runs for real through the CLI (two processes in parallel with the joblib launcher); each paper's
study runs end to end in quick mode through `nnlab.findings` (2 seeds), claims and figures."""

from __future__ import annotations

import itertools
import re

import pytest
from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser

from nnlab.config import validate

STUDIES = ["init_study", "activation_study", "loss_study", "loss_regression_study",
           "optimizer_study", "dropout_study", "lenet5_mnist", "he_init_study",
           "glorot_init_study", "lenet5_card", "lenet5_kaiming_sgd"]


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


def test_deep_mlp_takes_its_depth_and_width_from_the_command_line(compose_cfg) -> None:
    from torch import nn

    from nnlab.engine.build import build_model

    for overrides, depth, width in (([], 10, 64), (["model.depth=30", "model.width=128"], 30,
                                                   128)):
        cfg = compose_cfg(["model=deep_mlp", *overrides])
        validate(cfg)
        linears = [m for m in build_model(cfg, (1, 28, 28), 10).modules()
                   if isinstance(m, nn.Linear)]
        assert len(linears) == depth + 1  # the hidden layers and the head
        assert {m.out_features for m in linears[:-1]} == {width}


def test_he_init_study_sweeps_the_papers_depths(compose_cfg) -> None:
    params, jobs = sweep_grid(compose_cfg, "he_init_study")
    assert params["model.depth"] == "13,29" and params["init"] == "xavier_normal,kaiming_normal"
    cfg = compose_cfg(["experiment=he_init_study"])
    assert (cfg.model.width, cfg.batch_size, cfg.optimizer.lr, cfg.optimizer.momentum) == (
        128, 128, 0.01, 0.9)
    assert len(jobs) == 2 * 2 * 5


def test_quick_study_runs_in_parallel_into_one_experiment(all_runs, run_cli, tmp_path) -> None:
    """A slice of optimizer_study (2 optimisers, 1 seed; the offline digits instead of MNIST)
    with the joblib launcher, 2 jobs."""
    result = run_cli(tmp_path, "-m", "experiment=optimizer_study", "study.mode=quick",
                     "optimizer=sgd_plain,adam", "seed=0", "trainer.max_epochs=1",
                     "dataset=digits",
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
        assert run.data.metrics["grad_norm/net.1"] > 0  # the instruments ran


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


PAPER_STUDIES = ["he_init_study", "glorot_init_study", "activation_study", "dropout_study",
                 "optimizer_study", "loss_study", "init_study", "lenet5_card",
                 "lenet5_kaiming_sgd"]
FIGURES = {"he_init_study": ["he_training_error.png"],
           "glorot_init_study": ["glorot_fig2_activations.png", "glorot_fig6_init.png",
                                 "glorot_fig7_init.png"]}
CUTS = {"init_study": ["init=zeros,kaiming_normal"], "lenet5_card": ["activation=relu"],
        "lenet5_kaiming_sgd": ["init=default,kaiming", "optimizer.lr=0.05",
                               "optimizer.momentum=0.9"]}


@pytest.mark.parametrize("study", PAPER_STUDIES)
def test_a_papers_study_runs_end_to_end_in_quick_mode(study, shared_data, tmp_path,
                                                      monkeypatch) -> None:
    """2 seeds, quick mode, one epoch of 3 batches: every claim gets a verdict line with the
    paper's statement, the findings say quick mode, the papers' figures exist and reach MLflow."""
    from mlflow.tracking import MlflowClient

    from nnlab.findings import BY_NAME, main

    monkeypatch.setenv("NNLAB_DATA", str(shared_data))
    doc, store = tmp_path / "findings.md", tmp_path / "store"
    extra = ["study.quick.max_epochs=1", "study.quick.limit_train_batches=3",
             "instruments.plots=false", *CUTS.get(study, [])]
    assert main(["--mode", "quick", "--studies", study, "--seeds", "2", "--store", str(store),
                 "--out", str(doc), "--extra", " ".join(extra)]) == 0
    text = doc.read_text()
    assert "**Quick mode, seeds 0,1 (quick-mode numbers: a smoke test" in text
    for claim in [*BY_NAME[study].claims, *BY_NAME[study].targets]:
        line = next(x for x in text.splitlines() if x.startswith("- **") and claim.text in x)
        assert re.match(r"- \*\*(holds|equivalent|not shown|contradicted|untested|untestable)",
                        line), line
        assert not claim.paper or f"Paper: {claim.paper}." in line
    client = MlflowClient(f"sqlite:///{store}/{study}/mlflow.db")
    reports = client.search_runs([client.get_experiment_by_name(f"{study} reports")
                                  .experiment_id])
    logged = {a.path for a in client.list_artifacts(reports[0].info.run_id, "report")}
    for name in FIGURES.get(study, []):
        assert (doc.with_suffix("") / study / name).stat().st_size > 10_000
        assert f"report/{name}" in logged and f"]({doc.stem}/{study}/{name})" in text
