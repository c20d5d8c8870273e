"""Kill and resume of a packed sweep (hydra/launcher=packed): a pack stopped by SIGTERM ends its
members' runs KILLED with a pack checkpoint; one whose process group is SIGKILLed leaves them
RUNNING. The same command with sweep.resume=true continues the pack from its checkpoint in the
SAME runs, each epoch metric logged once, ending with the numbers of a pack never stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# The real CLI with one extra callback on every Trainer (the pack's too): after optimiser step
# $STOP_AT_STEP it sends $STOP_SIGNAL to its own process (TERM) or its process group (KILL).
STOPPER = """
import os, signal
import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

class Stop(Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == int(os.environ["STOP_AT_STEP"]):
            if os.environ["STOP_SIGNAL"] == "KILL":
                os.killpg(os.getpgid(0), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGTERM)

init = pl.Trainer.__init__
def patched(self, *args, callbacks=None, **kwargs):
    init(self, *args, callbacks=[*(callbacks or []), Stop()], **kwargs)
pl.Trainer.__init__ = patched
from nnlab.__main__ import main
main()
"""
EPOCHS = 3
# 8 steps an epoch; dropout and momentum: the random streams and optimiser state must resume too
SWEEP = ["-m", "hydra/launcher=packed", "model=mlp", "dataset=moons", "seed=0,1,2,3",
         f"trainer.max_epochs={EPOCHS}", "trainer.limit_train_batches=8", "batch_size=32",
         "trainer.log_every_n_steps=1", "checkpoint.every_n_steps=2", "model.dropout=0.2",
         "optimizer.momentum=0.9", "instruments.every_n_steps=3", "instruments.plots=false",
         "trainer.enable_progress_bar=false"]
EPOCH_METRICS = ("val/acc", "val/loss", "train/loss_epoch", "train/acc_epoch")
FINAL = ("test/acc", "test/loss", "val/loss", "val/acc")


def stop_sweep(cwd: Path, at_step: int, how: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", STOPPER, *SWEEP], cwd=cwd, text=True,
                          capture_output=True, timeout=300, start_new_session=True,
                          env={**os.environ, "STOP_AT_STEP": str(at_step), "STOP_SIGNAL": how,
                               "PYTHONUNBUFFERED": "1"})


def by_seed(runs: list) -> dict[str, object]:
    return {r.data.params["seed"]: r for r in runs}


def history(store_uri, cwd: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    return sorted((m.step, m.value)
                  for m in MlflowClient(store_uri(cwd)).get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def straight_and(tmp_path_factory: pytest.TempPathFactory, run_cli_cases, all_runs):
    """straight_and(cwd, *args) -> ((folder, runs by seed) of the same sweep never stopped, the
    command `args` finished in cwd): the uninterrupted sweep runs once per module, in the same
    process as the first command asked for."""
    found: dict[str, tuple[Path, dict]] = {}

    def run(cwd: Path, *args: str):
        cases = [(cwd, list(args))]
        if not found:
            cases.insert(0, (tmp_path_factory.mktemp("straight"), SWEEP))
        *first, result = run_cli_cases(cases)
        if first:
            assert first[0].returncode == 0, first[0].stderr[-3000:]
            found["straight"] = first[0].cwd, by_seed(all_runs(first[0].cwd))
        return found["straight"], result

    return run


def resume_and_check(cwd: Path, before: dict, straight_and, all_runs, store_uri) -> None:
    """Rerun with sweep.resume=true: the same four runs end FINISHED, each epoch metric once,
    with the uninterrupted pack's values."""
    straight, result = straight_and(cwd, *SWEEP, "sweep.resume=true")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "resuming pack" in result.stdout
    assert "4 of 4 jobs finished (0 skipped as already FINISHED, 4 resumed, 0 run)" \
        in result.stdout, result.stdout[-2000:]
    after = by_seed(all_runs(cwd))
    assert len(all_runs(cwd)) == 4, "no new run: each member continued its own"
    assert {s: r.info.run_id for s, r in after.items()} == \
        {s: r.info.run_id for s, r in before.items()}
    assert {r.info.status for r in after.values()} == {"FINISHED"}
    assert len({r.data.tags["nnlab.config_hash"] for r in after.values()}) == 4
    straight_cwd, straight_runs = straight
    for seed, run in after.items():
        assert run.data.tags["nnlab.resumed_from"] == "pack.ckpt"
        for key in EPOCH_METRICS:
            got = history(store_uri, cwd, run.info.run_id, key)
            want = history(store_uri, straight_cwd, straight_runs[seed].info.run_id, key)
            assert len(got) == EPOCHS and len({s for s, _ in got}) == EPOCHS, (key, got)
            assert [s for s, _ in got] == [s for s, _ in want], key
            assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), key
        # every other metric too, the per-layer instruments' epoch and _step values included
        keys = {k for k in straight_runs[seed].data.metrics if not k.startswith("time/")}
        assert any(k.startswith("grad_norm/") for k in keys)
        assert any(k.startswith("dead/") for k in keys)
        assert set(run.data.metrics) >= keys
        for key in keys:
            got = history(store_uri, cwd, run.info.run_id, key)
            want = history(store_uri, straight_cwd, straight_runs[seed].info.run_id, key)
            assert [s for s, _ in got] == [s for s, _ in want], key
            assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), key
        steps = [s for s, _ in history(store_uri, cwd, run.info.run_id, "train/loss_step")]
        assert steps == list(range(EPOCHS * 8)), "each step's loss once, none lost"
        for key in FINAL:
            assert run.data.metrics[key] == pytest.approx(
                straight_runs[seed].data.metrics[key], rel=1e-6), (seed, key)
    # the killed sweep's parent run ends KILLED; the resumed runs stay nested under it (every
    # job resumed, so the second sweep opened no parent run of its own)
    parents = [r.info.status for r in all_runs(cwd, parents=True)]
    assert parents == ["KILLED"], parents


def test_sigterm_stops_a_pack_with_a_checkpoint_and_resume_finishes_it_exactly(
    tmp_path: Path, straight_and, all_runs, store_uri,
) -> None:
    stopped = stop_sweep(tmp_path, 11, "TERM")  # mid-epoch 1, between two periodic saves
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "KILLED" in stopped.stderr and "sweep.resume=true" in stopped.stderr
    before = by_seed(all_runs(tmp_path))
    assert len(before) == 4 and {r.info.status for r in before.values()} == {"KILLED"}
    ckpts = {r.data.tags["nnlab.checkpoint"] for r in before.values()}
    assert len(ckpts) == 1 and Path(ckpts.pop()).is_file(), "one pack checkpoint, kept"
    assert [r.info.status for r in all_runs(tmp_path, parents=True)] == ["KILLED"], \
        "the interrupted sweep's own run ends KILLED too, not left RUNNING"
    resume_and_check(tmp_path, before, straight_and, all_runs, store_uri)


@pytest.mark.slow  # the SIGTERM test above covers the resume path in the default run
def test_sigkill_of_the_process_group_then_resume_continues_from_the_last_checkpoint(
    tmp_path: Path, straight_and, run_cli, all_runs, store_uri,
) -> None:
    killed = stop_sweep(tmp_path, 13, "KILL")  # the last periodic save was before step 12
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = by_seed(all_runs(tmp_path))
    assert len(before) == 4 and {r.info.status for r in before.values()} == {"RUNNING"}
    assert all(Path(r.data.tags["nnlab.checkpoint"]).is_file() for r in before.values())
    resume_and_check(tmp_path, before, straight_and, all_runs, store_uri)
    again = run_cli(tmp_path, *SWEEP, "sweep.resume=true")  # all done: every job skipped
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 of 4 jobs finished (4 skipped as already FINISHED, 0 resumed, 0 run)" \
        in again.stdout, again.stdout[-2000:]
    assert len(all_runs(tmp_path)) == 4
