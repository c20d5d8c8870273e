"""The CLI end to end, in a subprocess: what lands in MLflow, and what bad input gets back. The
training commands run in one process (nnlab's real entry point once each, tests/helpers/
cli_driver.py); --help runs as its own process, the torch-free start it has."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FAST = ["trainer.max_epochs=1"]
CARD_SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=5",
              "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]


@pytest.fixture(scope="module")
def commands(run_cli_cases, request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> dict:
    """name -> [(folder, finished command), ...]: every training command of this file, each in
    its folder, in one process."""
    try:
        data: Path | None = request.getfixturevalue("shared_data")
    except pytest.skip.Exception:  # no real MNIST here: its test is skipped, the others run
        data = None
    folders = {name: tmp_path_factory.mktemp(name) for name in ("default", "sweep", "mnist",
                                                                  "card")}
    cases = {
        "default": [(folders["default"], [*FAST, "trainer.log_every_n_steps=2"])],
        "sweep": [(folders["sweep"], ["-m", "experiment=init_x_activation", *FAST,
                                      "trainer.limit_train_batches=5"])],
        "card": [(folders["card"], ["model=lenet5", "init=kaiming", *CARD_SHORT]),
                 (folders["card"], ["-m", "model=lenet5", "init=xavier,kaiming",
                                    "activation=sigmoid,relu", *CARD_SHORT])],
    }
    if data is not None:
        cases["mnist"] = [(folders["mnist"], ["dataset=mnist", f"dataset.root={data}",
                                              "dataset.download=false", *FAST])]
    results = iter(run_cli_cases([case for group in cases.values() for case in group]))
    return {name: [(cwd, next(results)) for cwd, _ in group] for name, group in cases.items()}


def test_default_run_lands_a_finished_run_with_params_tags_metrics_artifacts(
    all_runs, commands, store_uri,
) -> None:
    ((tmp_path, result),) = commands["default"]
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


def test_two_by_two_multirun_lands_four_distinct_runs_in_one_experiment(
    all_runs, commands,
) -> None:
    ((tmp_path, result),) = commands["sweep"]
    assert result.returncode == 0, result.stderr[-3000:]
    runs = all_runs(tmp_path, "init_x_activation")
    assert len(runs) == 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    choices = {(r.data.tags["nnlab.init"], r.data.tags["nnlab.activation"]) for r in runs}
    assert choices == {(i, a) for i in ("xavier_normal", "kaiming_normal")
                       for a in ("sigmoid", "relu")}
    assert len({r.data.tags["nnlab.sweep_id"] for r in runs}) == 1
    assert {r.data.tags["nnlab.experiment"] for r in runs} == {"init_x_activation"}
    (parent,) = all_runs(tmp_path, "init_x_activation", parents=True)  # the UI folds the sweep
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert parent.data.tags["nnlab.sweep_id"] == runs[0].data.tags["nnlab.sweep_id"]


def test_help_lists_every_group_and_its_options(run_cli, tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--help", timeout=120)
    assert result.returncode == 0
    for line in ("model: ", "activation: ", "init: ", "loss: ", "optimizer: ", "dataset: ",
                 "accelerator: ", "experiment: "):
        assert line in result.stdout
    assert "kaiming_normal" in result.stdout and "leaky_relu" in result.stdout


def test_the_command_leaves_its_objects_out_of_the_last_collections(tmp_path: Path) -> None:
    """`nnlab` (cli) exits without Python's last garbage collections over its objects (they took
    seconds after a run); main alone, which a caller in a process that goes on uses, does not."""
    code = ("import gc, sys\n"
            "sys.argv = ['nnlab', '--help']\n"
            "import nnlab.__main__ as entry\n"
            "for name in ('main', 'cli'):\n"
            "    try:\n"
            "        getattr(entry, name)()\n"
            "    except SystemExit:\n"
            "        pass\n"
            "    print(name, gc.get_freeze_count(), file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    counts = dict(line.split() for line in result.stderr.splitlines()[-2:])
    assert counts["main"] == "0" and int(counts["cli"]) > 10_000, result.stderr[-2000:]


def test_lenet5_reaches_97_percent_on_real_mnist_in_one_epoch(all_runs, commands,
    shared_data: Path
) -> None:
    ((tmp_path, result),) = commands["mnist"]  # (shared_data: skipped where the data is absent)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/acc"] >= 0.97, run.data.metrics


def test_the_cards_commands_run_as_written(all_runs, commands) -> None:
    """`python -m nnlab model=lenet5 init=kaiming` and the card's 2x2 sweep (kept short)."""
    (tmp_path, single), (_, sweep) = commands["card"]
    assert single.returncode == 0, single.stderr[-3000:]
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    runs = all_runs(tmp_path)
    assert len(runs) == 5 and {r.info.status for r in runs} == {"FINISHED"}
    assert {(r.data.tags["nnlab.init"], r.data.tags["nnlab.activation"]) for r in runs} == {
        ("kaiming", "relu"), ("xavier", "relu"), ("kaiming", "sigmoid"), ("xavier", "sigmoid")}
    he = [r for r in runs if r.data.tags["nnlab.init"] == "kaiming"]
    assert {r.data.params["init.distribution"] for r in he} == {"normal"}
    assert {r.data.params["init.mode"] for r in he} == {"fan_in"}
