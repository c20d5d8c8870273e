"""Resume and interrupts with real processes: SIGKILL mid-epoch then resume=<run id>; SIGTERM ends
the run KILLED with a checkpoint, and resume=last continues it. Each continues the SAME MLflow run,
with every epoch metric logged exactly once and no step logged twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Runs the real CLI with one extra callback that SIGKILLs the process after step KILL_AT_STEP.
KILLER = """
import os, signal, sys
import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

class Kill(Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)

init = pl.Trainer.__init__
def patched(self, *args, callbacks=None, **kwargs):
    init(self, *args, callbacks=[*(callbacks or []), Kill()], **kwargs)
pl.Trainer.__init__ = patched
from nnlab.__main__ import main
main()
"""
EPOCH_METRICS = ("val/acc", "val/loss", "train/loss_epoch", "train/acc_epoch", "time/epoch_s")

QUIET = ["trainer.enable_progress_bar=false"]


def histories(store_uri, cwd: Path, run_id: str, keys: tuple[str, ...]) -> dict[str, list]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store_uri(cwd))
    return {key: client.get_metric_history(run_id, key) for key in keys}


def assert_complete_once(store_uri, cwd: Path, run_id: str, epochs: int) -> None:
    """Each epoch metric once per epoch; each training step's loss exactly once, no gaps."""
    found = histories(store_uri, cwd, run_id, (*EPOCH_METRICS, "train/loss_step"))
    for key in EPOCH_METRICS:
        steps = [m.step for m in found[key]]
        assert len(steps) == epochs and len(set(steps)) == epochs, (key, steps)
    steps = sorted(m.step for m in found["train/loss_step"])
    assert len(steps) == len(set(steps)), f"a step was logged twice: {steps}"
    assert steps == list(range(steps[0], steps[-1] + 1)), f"a step was lost: {steps}"


def test_sigkill_mid_epoch_then_resume_by_run_id_continues_the_same_run(
    all_runs, run_cli, store_uri, tmp_path: Path,
) -> None:
    args = ["trainer.max_epochs=3", "trainer.limit_train_batches=10", "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2", "trainer.log_every_n_steps=1",
            "checkpoint.every_n_steps=5", *QUIET]
    killed = subprocess.run([sys.executable, "-c", KILLER, *args], cwd=tmp_path, text=True,
                            capture_output=True, timeout=300,
                            env={**os.environ, "KILL_AT_STEP": "17"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "RUNNING", "SIGKILL leaves the run open"
    ckpt = Path(run.data.tags["nnlab.checkpoint"])
    assert ckpt.is_file()
    before = histories(store_uri, tmp_path, run.info.run_id, ("val/acc",))["val/acc"]
    assert len(before) == 1, "killed in the second epoch, after the first one's metrics"

    result = run_cli(tmp_path, f"resume={run.info.run_id}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming run {run.info.run_id}" in result.stdout
    (resumed,) = all_runs(tmp_path)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert "test/acc" in resumed.data.metrics
    assert_complete_once(store_uri, tmp_path, run.info.run_id, epochs=3)


@pytest.mark.slow  # two full processes and a few hundred steps
def test_sigterm_ends_killed_with_a_checkpoint_and_resume_last_finishes_it(
    all_runs, run_cli, store_uri, tmp_path: Path,
) -> None:
    args = ["trainer.max_epochs=2", "batch_size=8", "trainer.limit_train_batches=80",
            "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2", "trainer.log_every_n_steps=1",
            "checkpoint.every_n_steps=5", *QUIET]
    proc = subprocess.Popen([sys.executable, "-m", "nnlab", *args], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob("mlruns/hydra/**/checkpoints/last.ckpt")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0, stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "KILLED", stderr[-3000:]
    assert f"continue with resume={run.info.run_id}" in stderr
    assert Path(run.data.tags["nnlab.checkpoint"]).is_file()

    result = run_cli(tmp_path, "resume=last")
    assert result.returncode == 0, result.stderr[-3000:]
    (resumed,) = all_runs(tmp_path)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert_complete_once(store_uri, tmp_path, run.info.run_id, epochs=2)


def test_resume_of_an_unknown_run_says_so(run_cli, tmp_path: Path) -> None:
    result = run_cli(tmp_path, "resume=0123456789abcdef0123456789abcdef")
    assert result.returncode == 2
    assert "no run with that id" in result.stderr
