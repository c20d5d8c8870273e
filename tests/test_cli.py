"""The CLI end to end, as a subprocess: what lands in MLflow, and what bad input gets back."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import all_runs, run_cli, store_uri

FAST = ["trainer.max_epochs=1"]


def test_default_run_lands_a_finished_run_with_params_tags_metrics_artifacts(
    tmp_path: Path,
) -> None:
    result = run_cli(tmp_path, *FAST, "trainer.log_every_n_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FINISHED" in result.stdout
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "lenet5-relu-default-sgd-digits"

    params = run.data.params
    for key, value in {"model.name": "lenet5", "init.name": "default", "activation.name": "relu",
                       "optimizer.lr": "0.05", "dataset.name": "digits", "seed": "0",
                       "trainer.max_epochs": "1", "batch_size": "64",
                       "model.num_params": "61706"}.items():
        assert params[key] == value, key
    tags = run.data.tags
    for group, choice in {"model": "lenet5", "activation": "relu", "init": "default",
                          "loss": "cross_entropy", "optimizer": "sgd", "dataset": "digits",
                          "accelerator": "auto"}.items():
        assert tags[f"nnlab.{group}"] == choice
    assert "trainer.max_epochs=1" in tags["nnlab.overrides"]
    assert tags["nnlab.version"]

    metrics = run.data.metrics
    for key in ("train/loss_step", "train/loss_epoch", "train/acc_step", "train/acc_epoch",
                "val/loss", "val/acc", "test/loss", "test/acc", "time/epoch_s",
                "time/samples_per_s", "model/params"):
        assert key in metrics, key
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["time/epoch_s"] > 0
    assert metrics["val/acc"] > 0.3  # one epoch of LeNet-5 on digits learns something

    from mlflow.tracking import MlflowClient

    client = MlflowClient(store_uri(tmp_path))
    steps = client.get_metric_history(run.info.run_id, "train/loss_step")
    assert len(steps) >= 5, "train/loss is logged every N steps, not once"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "overrides.txt", "model_summary.txt"} <= artifacts
    summary = Path(client.download_artifacts(run.info.run_id, "model_summary.txt", str(tmp_path)))
    text = summary.read_text()
    assert "Conv2d" in text and "61,706" in text and "[1, 6, 28, 28]" in text


def test_two_by_two_multirun_lands_four_distinct_runs_in_one_experiment(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "-m", "experiment=init_x_activation", *FAST,
                     "trainer.limit_train_batches=5")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = all_runs(tmp_path, "init_x_activation")
    assert len(runs) == 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    choices = {(r.data.tags["nnlab.init"], r.data.tags["nnlab.activation"]) for r in runs}
    assert choices == {(i, a) for i in ("xavier_normal", "kaiming_normal")
                       for a in ("sigmoid", "relu")}
    assert len({r.data.tags["nnlab.sweep_id"] for r in runs}) == 1
    assert {r.data.tags["nnlab.experiment"] for r in runs} == {"init_x_activation"}


# (overrides, expected exit code, fragments the message must contain)
BAD_INPUTS = [
    (["model=resnet"], 1, ["model/resnet", "lenet5", "mlp"]),
    (["activation=swishy"], 1, ["activation/swishy", "relu", "sigmoid"]),
    (["batch_size=abc"], 1, ["batch_size", "abc"]),
    (["optimizer.lr=fast"], 2, ["optimizer.lr", "fast"]),
    (["optimizer.lr=0"], 2, ["optimizer.lr=0", "positive"]),
    (["optimizer.lr=-0.1"], 2, ["optimizer.lr=-0.1", "positive"]),
    (["model=mlp", "model.dropout=1.0"], 2, ["model.dropout=1.0", "[0, 1)"]),
    (["batch_size=0"], 2, ["batch_size=0", ">= 1"]),
    (["trainer.max_epochs=0"], 2, ["trainer.max_epochs=0", ">= 1"]),
    (["dataset=moons"], 2, ["lenet5", "moons", "model=mlp"]),
    (["dataset=sine", "model=mlp"], 2, ["cross_entropy", "regression", "mse"]),
    (["activation.name=swish"], 2, ["swish", "relu", "sigmoid"]),
]


@pytest.mark.parametrize(("overrides", "code", "fragments"), BAD_INPUTS,
                         ids=[" ".join(case[0]) for case in BAD_INPUTS])
def test_bad_input_is_refused_before_any_run(tmp_path: Path, overrides: list[str], code: int,
                                             fragments: list[str]) -> None:
    result = run_cli(tmp_path, *overrides, timeout=120)
    assert result.returncode == code, result.stderr[-2000:]
    message = result.stderr
    for fragment in fragments:
        assert fragment in message, (fragment, message[-2000:])
    assert "Traceback" not in message
    assert not (tmp_path / "mlruns" / "mlflow.db").exists(), "no store, let alone a run"


def test_help_lists_every_group_and_its_options(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--help", timeout=120)
    assert result.returncode == 0
    for line in ("model: ", "activation: ", "init: ", "loss: ", "optimizer: ", "dataset: ",
                 "accelerator: ", "experiment: "):
        assert line in result.stdout
    assert "kaiming_normal" in result.stdout and "leaky_relu" in result.stdout


def test_lenet5_reaches_97_percent_on_real_mnist_in_one_epoch(
    tmp_path: Path, shared_data: Path
) -> None:
    result = run_cli(tmp_path, "dataset=mnist", f"dataset.root={shared_data}",
                     "dataset.download=false", *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/acc"] >= 0.97, run.data.metrics
