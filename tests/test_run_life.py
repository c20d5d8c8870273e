"""The run's life at its edges: a run stopped after its last epoch resumes to FINISHED with its
model, runs started from Python never share a checkpoint, a run that a live process trains
cannot be resumed, a run started from a thread ends FINISHED, a failed run whose error text
cannot be stored still ends FAILED, and a stop asked for after training is never swallowed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from nnlab.engine import train_one
from nnlab.engine.callbacks import Checkpointer
from nnlab.errors import ConfigError
from nnlab.tracking import tags

SHORT = ["model=mlp", "dataset=moons", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
         "instruments.plots=false"]


def store(tmp: Path) -> list[str]:
    return [f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
            f"mlflow.artifact_root={tmp}/artifacts"]


def only_run(tmp: Path):
    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    experiment = client.get_experiment_by_name("nnlab")
    return client, client.search_runs([experiment.experiment_id])


def test_a_run_killed_after_its_last_epoch_resumes_to_finished_with_its_model(
        compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C after the test metrics: the run is KILLED with its final checkpoint; following the
    advice (resume=<id>) must finish it, with the monitored value and the trained model."""
    monkeypatch.chdir(tmp_path)
    value = train_one(compose_cfg([*SHORT, *store(tmp_path)]))
    client, (run,) = only_run(tmp_path)
    client.set_terminated(run.info.run_id, "KILLED")  # as a Ctrl-C after the test stage leaves it
    again = train_one(compose_cfg([*SHORT, *store(tmp_path), f"resume={run.info.run_id}"]))
    done = client.get_run(run.info.run_id)
    assert done.info.status == "FINISHED"
    assert again == pytest.approx(value) == pytest.approx(done.data.metrics["val/acc"])
    names = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/state_dict.pt", "model/info.json"} <= names


def test_runs_started_from_python_keep_their_own_checkpoints(
        compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for seed in (0, 1):
        train_one(compose_cfg([*SHORT, *store(tmp_path), f"seed={seed}"]))
    _, runs = only_run(tmp_path)
    paths = {run.data.tags[tags.CHECKPOINT] for run in runs}
    assert len(paths) == 2 and all(Path(p).is_file() for p in paths)
    assert all(Path(p).is_relative_to(tmp_path / "mlruns" / "hydra" / "runs") for p in paths)


def test_a_run_started_from_another_thread_ends_finished(
        compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    found: dict[str, object] = {}
    cfg = compose_cfg([*SHORT, *store(tmp_path)])

    def job() -> None:
        try:
            found["value"] = train_one(cfg)
        except BaseException as err:  # reported below
            found["error"] = err

    worker = threading.Thread(target=job)
    worker.start()
    worker.join(timeout=300)
    assert "error" not in found, found.get("error")
    _, (run,) = only_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["val/acc"] == pytest.approx(found["value"])


def test_a_failed_run_whose_error_text_cannot_be_stored_still_ends_failed(
        run_cli, tmp_path: Path) -> None:
    """The artifact root sits under a plain file, so no artifact can be written: the run must
    still end in a final state (FAILED), never stay RUNNING."""
    (tmp_path / "afile").write_text("not a folder")
    done = run_cli(tmp_path, "model=mlp", "dataset=moons", "trainer.max_epochs=1",
                   f"mlflow.artifact_root={tmp_path}/afile/artifacts")
    assert done.returncode != 0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("nnlab")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert all(r.info.status in ("FAILED", "KILLED") for r in runs), \
        [(r.info.run_id, r.info.status) for r in runs]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_run_that_a_live_process_trains_cannot_be_resumed(tmp_path: Path) -> None:
    """resume=last while the run still trains in another process: refused in one paragraph
    (exit 2), and the training process goes on undisturbed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "nnlab", "model=mlp", "dataset=moons", "trainer.max_epochs=500",
         "checkpoint.every_n_steps=5", "instruments.enabled=false",
         "trainer.enable_progress_bar=false"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ckpt = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ckpt is None:
            time.sleep(1)
            if (tmp_path / "mlruns" / "mlflow.db").exists():
                client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
                experiment = client.get_experiment_by_name("nnlab")
                runs = client.search_runs([experiment.experiment_id]) if experiment else []
                if runs and Path(runs[0].data.tags.get(tags.CHECKPOINT, "/none")).is_file():
                    ckpt, run_id = runs[0].data.tags[tags.CHECKPOINT], runs[0].info.run_id
        assert ckpt is not None, "the first run never saved a checkpoint"
        second = subprocess.run([sys.executable, "-m", "nnlab", "resume=last",
                                 "trainer.enable_progress_bar=false"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr[-2000:]
        assert second.stderr.startswith(f"nnlab: error: resume=last (run {run_id}) is invalid: "
                                        "that run is being trained right now"), second.stderr
        assert f"process {first.pid}" in second.stderr
        assert first.poll() is None, "the first run did not survive the refused resume"
        client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
        (run,) = client.search_runs([client.get_experiment_by_name("nnlab").experiment_id])
        assert run.info.status == "RUNNING"
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    assert first.returncode == 130


def test_a_stop_asked_for_after_training_is_never_swallowed(tmp_path: Path) -> None:
    """Outside the fit a signal raises at once; should that KeyboardInterrupt be swallowed
    (inside a finaliser, say), the next check raises it again."""
    checkpointer = Checkpointer(tmp_path / "last.ckpt", every_n_steps=0)
    checkpointer.raise_if_stopped()  # nothing asked: nothing raised
    with pytest.raises(KeyboardInterrupt):
        checkpointer.request_stop(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt, match="signal 2"):
        checkpointer.raise_if_stopped()


def test_claiming_a_checkpoint_twice_is_refused(tmp_path: Path) -> None:
    from nnlab.engine.resume import claim_checkpoint

    path = tmp_path / "checkpoints" / "last.ckpt"
    with claim_checkpoint(path, "abc"):
        code = ("import sys; from pathlib import Path; from nnlab.engine.resume import "
                "claim_checkpoint\nwith claim_checkpoint(Path(sys.argv[1]), 'abc'): pass")
        other = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                               text=True, timeout=120)
        assert other.returncode != 0 and "ConfigError" in other.stderr
        assert f"process {os.getpid()}" in other.stderr
    with claim_checkpoint(path, "abc"):  # released: free again
        pass
    with pytest.raises(ConfigError, match="being trained right now"), \
            claim_checkpoint(path, "abc"), claim_checkpoint(path, "abc"):
        pass
