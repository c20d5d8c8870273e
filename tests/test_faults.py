"""Faults, end to end: a sweep that survives a failing job, a diverging run, and bad inputs that
each fail with one clear message, a non-zero exit and no run left RUNNING."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2"]
IDX = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
       "t10k-labels-idx1-ubyte"]


def test_sweep_runs_every_job_and_reports_the_one_that_diverged(
    all_runs, run_cli, store_uri, tmp_path: Path,
) -> None:
    result = run_cli(tmp_path, "-m", "optimizer.lr=1e3,0.05", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=8", "trainer.limit_val_batches=2",
                     "trainer.limit_test_batches=2", "checkpoint.every_n_steps=0")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
    assert "1 of 2 jobs finished, 1 failed" in result.stderr
    assert "job 0 (optimizer.lr=1000.0" in result.stderr and "Diverged" in result.stderr

    runs = {run.data.params["optimizer.lr"]: run for run in all_runs(tmp_path)}
    assert set(runs) == {"1000.0", "0.05"}, "the job after the failed one still ran"
    assert runs["0.05"].info.status == "FINISHED"
    (parent,) = all_runs(tmp_path, parents=True)
    assert parent.info.status == "FAILED", "a sweep with a failed job ends FAILED"
    failed = runs["1000.0"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["diverged"] == "true"
    assert "Diverged" in failed.data.tags["nnlab.error"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(store_uri(tmp_path))
    error = Path(client.download_artifacts(failed.info.run_id, "error.txt", str(tmp_path)))
    assert re.search(r"Diverged: the training loss is (nan|inf|-inf) at step \d+; the run stopped",
                     error.read_text()), error.read_text()[-2000:]
    losses = client.get_metric_history(failed.info.run_id, "train/loss_step")
    assert len(losses) <= 8, "training stopped at the first non-finite step, not epoch end"
    drawn = {a.path for a in client.list_artifacts(failed.info.run_id, "instruments")}
    assert drawn == {"instruments/weights_at_init.png"}, "a failed run keeps its init histograms"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the with-block ends


def mnist_root(tmp_path: Path, corrupt: bool) -> str:
    root = tmp_path / "data"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    if corrupt:
        for name in IDX:
            (raw / name).write_bytes(b"\x00\x00\x08\x03not an idx file" * 50)
    return str(root)


def unwritable_store(tmp_path: Path) -> str:
    (tmp_path / "mlruns").write_text("a file where the store's folder should be\n")
    return "mlflow.tracking_uri=sqlite:///mlruns/mlflow.db"  # (root ignores chmod, so a file)


def unwritable_mlruns(tmp_path: Path) -> list[str]:
    """mlruns/ cannot hold the store (Hydra's own output folder is put elsewhere)."""
    return [unwritable_store(tmp_path), "hydra.run.dir=outputs"]


# case -> (arguments, a fragment of the one-paragraph message, exit code)
BAD_INPUTS = {
    "missing data offline": (lambda t: ["dataset=mnist", f"dataset.root={mnist_root(t, False)}",
                                        "dataset.download=false"],
                             "cannot load MNIST from root", 2),
    "corrupt data file": (lambda t: ["dataset=mnist", f"dataset.root={mnist_root(t, True)}",
                                     "dataset.download=false"],
                          "cannot load MNIST from root", 2),
    "unwritable mlruns": (unwritable_mlruns,
                          "cannot open or create the MLflow store", 2),
    "unreachable tracking server": (
        lambda t: [f"mlflow.tracking_uri=http://127.0.0.1:{closed_port()}"],
        "cannot reach the MLflow tracking server ([Errno 111] Connection refused", 2),
    "empty sweep list": (lambda t: ["-m", "seed=range(0,0)"],
                         "the sweep launched no jobs", 1),
    "typo in an experiment name": (lambda t: ["experiment=init_x_activaton"],
                                   "experiment=init_x_activaton is invalid", 2),
}


@pytest.fixture(scope="module")
def bad_outcomes(run_cli_cases, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """case -> its finished command: every case in its own folder, all through nnlab's real
    entry point in one process (what fails is the command, not the process)."""
    folders = {case: tmp_path_factory.mktemp(case.replace(" ", "-")) for case in BAD_INPUTS}
    cases = [(folders[case], [*make_args(folders[case]), *TINY])
             for case, (make_args, _, _) in BAD_INPUTS.items()]
    return dict(zip(BAD_INPUTS, run_cli_cases(cases, timeout=600), strict=True))


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_with_one_clear_message_and_leaves_nothing(
    all_runs, bad_outcomes, case: str,
) -> None:
    _, fragment, code = BAD_INPUTS[case]
    result = bad_outcomes[case]
    assert result.returncode == code, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("nnlab: error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not any(run.info.status == "RUNNING" for run in all_runs(result.cwd))
    assert not (result.cwd / "mlruns" / "mlflow.db").exists(), "no store for a run that never began"
    if case == "unreachable tracking server":  # bounded retries, not MLflow's minutes
        assert result.seconds < 120
