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


def test_resume_of_an_unknown_run_says_so(first_commands) -> None:
    result = first_commands["unknown"]
    assert result.returncode == 2
    assert "no run with that id" in result.stderr


# The same experiment straight through, and stopped by SIGTERM after step STOP_AT_STEP then
# resumed: dropout and batch-wise augmentation draw random numbers, the data is reshuffled
# every epoch, and the stop falls mid-epoch or at an epoch's end.
TERMINATOR = KILLER.replace("signal.SIGKILL", "signal.SIGTERM").replace("KILL_AT_STEP",
                                                                        "STOP_AT_STEP")
EXACT = ["trainer.max_epochs=3", "trainer.limit_train_batches=8", "trainer.limit_val_batches=2",
         "trainer.limit_test_batches=2", "trainer.log_every_n_steps=1", "batch_size=16",
         "checkpoint.every_n_steps=3", "model=mlp", "model.dropout=0.3",
         "dataset.crop_padding=2", "dataset.hflip=true", "instruments.every_n_steps=4",
         "instruments.plots=false", "accelerator=cpu"]


def logged(store_uri, cwd: Path, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric but the clock's: per key, its (step, value) history."""
    from mlflow.tracking import MlflowClient

    keys = [k for k in MlflowClient(store_uri(cwd)).get_run(run_id).data.metrics
            if not k.startswith("time/")]
    return {key: sorted((m.step, m.value) for m in history)
            for key, history in histories(store_uri, cwd, run_id, tuple(keys)).items()}


@pytest.fixture(scope="module")
def first_commands(tmp_path_factory: pytest.TempPathFactory, run_cli_cases) -> dict:
    """The commands that need no killed run first, in one process: the uninterrupted in-memory
    run ("straight-true", its folder in `.cwd`) and a resume of a run that does not exist."""
    names = ("straight-true", "unknown")
    return dict(zip(names, run_cli_cases([
        (tmp_path_factory.mktemp(names[0]), [*EXACT, "dataset.in_memory=true"]),
        (tmp_path_factory.mktemp(names[1]), ["resume=0123456789abcdef0123456789abcdef"]),
    ]), strict=True))


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, run_cli,
             all_runs, store_uri):
    """in_memory -> what the uninterrupted run logged (run once per module)."""
    found: dict[str, dict] = {}

    def get(in_memory: str) -> dict[str, list[tuple[int, float]]]:
        if in_memory not in found:
            if in_memory == "true":  # run beside another command (first_commands)
                result = request.getfixturevalue("first_commands")["straight-true"]
                cwd = result.cwd
            else:
                cwd = tmp_path_factory.mktemp(f"straight-{in_memory}")
                result = run_cli(cwd, *EXACT, f"dataset.in_memory={in_memory}")
            assert result.returncode == 0, result.stderr[-3000:]
            (run,) = all_runs(cwd)
            found[in_memory] = logged(store_uri, cwd, run.info.run_id)
        return found[in_memory]

    return get


@pytest.mark.parametrize(("in_memory", "stop_at"), [
    ("true", 11),  # mid-epoch: epoch 1 stops before its 4th batch
    pytest.param("true", 8, marks=pytest.mark.slow),  # at the end of epoch 0
    pytest.param("false", 13, marks=pytest.mark.slow),  # the DataLoader path, mid-epoch
])
def test_sigterm_then_resume_logs_what_the_uninterrupted_run_logs(
    tmp_path: Path, straight, in_memory: str, stop_at: int, run_cli, all_runs, store_uri,
) -> None:
    args = [*EXACT, f"dataset.in_memory={in_memory}", *QUIET]
    stopped = subprocess.run([sys.executable, "-c", TERMINATOR, *args], cwd=tmp_path, text=True,
                             capture_output=True, timeout=300,
                             env={**os.environ, "STOP_AT_STEP": str(stop_at)})
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "KILLED"
    result = run_cli(tmp_path, f"resume={run.info.run_id}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not resumable" not in result.stderr
    (resumed,) = all_runs(tmp_path)
    assert resumed.data.tags["nnlab.resume_exact"] == "true"

    expected, found = straight(in_memory), logged(store_uri, tmp_path, run.info.run_id)
    assert {"val/loss", "train/loss_epoch", "test/acc"} <= set(expected)
    assert any(k.startswith("grad_norm/") for k in expected)
    assert sorted(found) == sorted(expected)
    for key in expected:
        assert [s for s, _ in found[key]] == [s for s, _ in expected[key]], key
        assert [v for _, v in found[key]] == pytest.approx([v for _, v in expected[key]],
                                                           rel=1e-6), key


@pytest.mark.parametrize("in_memory", [True, False])
def test_the_data_order_resumes_where_the_epoch_stopped(in_memory: bool) -> None:
    """The data module's saved state repeats the stopped epoch's order from the saved batch and
    then goes on as the uninterrupted run does (in memory and through a DataLoader)."""
    from nnlab.data.digits import DigitsDataModule

    def firsts(loader, stop: int | None = None) -> list[list[float]]:
        out = []
        for i, (x, _) in enumerate(loader):
            if i == stop:
                break
            out.append(x[:, 0].flatten()[:5].tolist())
        return out

    def module() -> DigitsDataModule:
        data = DigitsDataModule(batch_size=100, seed=3, in_memory=in_memory)
        data.prepare()
        return data

    reference = module().train_dataloader()
    epochs = [firsts(reference) for _ in range(3)]

    stopped = module().train_dataloader()
    firsts(stopped)
    assert firsts(stopped, stop=4) == epochs[1][:4]
    order = stopped.order_state if in_memory else stopped.sampler.order_state

    resumed = module()
    resumed.load_state_dict({"train_order_state": order, "train_batches_done": 4})
    loader = resumed.train_dataloader()
    assert firsts(loader) == epochs[1][4:]
    assert firsts(loader) == epochs[2]
