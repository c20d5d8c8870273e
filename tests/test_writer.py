"""A pack's metric batches written by a second process (nnlab.tracking.writer): the store holds
what an in-process write leaves; a batch stays `unwritten` until the process has written it (a
checkpoint keeps those), and a resumed member writes them again without doubling any; a batch
the process cannot write is written, and raises, here; a writing process that dies loses
nothing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from nnlab.packed import Member
from nnlab.packed import runner as pack_runner
from nnlab.tracking import Tracker
from nnlab.tracking.writer import MetricWriter


def ready_writer() -> MetricWriter:
    """A writing process that has done its imports."""
    writer = MetricWriter()
    deadline = time.monotonic() + 300
    while not writer.process.ready:
        assert not writer.process.ended and time.monotonic() < deadline, "no writer got ready"
        time.sleep(0.1)
    return writer


def new_run(tmp_path: Path) -> Tracker:
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "writer")
    tracker.run_id = tracker.client.create_run(tracker.client.get_experiment_by_name(
        "writer").experiment_id).info.run_id
    return tracker


def values(n: int, step0: int = 0) -> list[Metric]:
    return [Metric(f"grad_norm/net.{i % 3}", i * 0.5, 1_700_000_000_000 + i, step0 + i // 3)
            for i in range(n)]


def stored(tracker: Tracker) -> list[tuple]:
    client = tracker.client
    return sorted((m.key, m.value, m.timestamp, m.step)
                  for key in client.get_run(tracker.run_id).data.metrics
                  for m in client.get_metric_history(tracker.run_id, key))


def as_rows(metrics: list[Metric]) -> list[tuple]:
    return sorted((m.key, m.value, m.timestamp, m.step) for m in metrics)


def test_batches_written_away_are_in_the_store_once_settled(tmp_path: Path) -> None:
    tracker = new_run(tmp_path)
    writer = ready_writer()
    sent = values(120)
    for start in range(0, 120, 50):
        writer.send(tracker, sent[start:start + 50])
    writer.settle(tracker.run_id)
    assert writer.unwritten(tracker.run_id) == []
    assert stored(tracker) == as_rows(sent)
    writer.close()
    assert writer.process.process.poll() is not None


def test_a_stalled_writer_keeps_values_unwritten_and_a_lost_one_loses_nothing(
        tmp_path: Path) -> None:
    tracker = new_run(tmp_path)
    writer = ready_writer()
    os.kill(writer.process.process.pid, signal.SIGSTOP)  # busy elsewhere: nothing written yet
    try:
        sent = values(30)
        writer.send(tracker, sent)
        assert as_rows(writer.unwritten(tracker.run_id)) == as_rows(sent)  # a checkpoint's
        assert stored(tracker) == []
    finally:
        os.kill(writer.process.process.pid, signal.SIGKILL)  # and then it dies
    writer.settle(tracker.run_id)  # what it held is written here
    assert stored(tracker) == as_rows(sent)
    writer.close()
    assert stored(tracker) == as_rows(sent)  # nothing written twice


def test_a_batch_the_writer_cannot_write_is_written_and_raises_here(tmp_path: Path) -> None:
    tracker = new_run(tmp_path)
    tracker.client.delete_run(tracker.run_id)  # MLflow refuses metrics for a deleted run
    writer = ready_writer()
    writer.send(tracker, values(3))
    with pytest.raises(MlflowException, match="deleted"):
        writer.settle(tracker.run_id)
    writer.close()


def test_a_resumed_member_writes_its_checkpoints_unwritten_values_once(
        compose_cfg, tmp_path: Path) -> None:
    """What a checkpoint held on its way to the store is in the store after resume, each value
    once, whether the writer had written it before the kill or not; the logger then skips every
    step the store holds."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    overrides = ["model=mlp", "dataset=moons", f"mlflow.tracking_uri={uri}",
                 f"mlflow.artifact_root={tmp_path}/art"]
    member = Member(compose_cfg(overrides), overrides, tmp_path / "m0", {})
    killed = new_run(tmp_path)
    client = MlflowClient(uri)
    written, on_the_way = values(9), values(9, step0=3)
    client.log_batch(killed.run_id, metrics=written)  # in the store before the kill
    client.set_terminated(killed.run_id, "KILLED")
    pack_runner._reopen_run(member, client.get_run(killed.run_id), tmp_path / "pack.ckpt",
                            written[6:] + on_the_way, None)
    assert stored(killed) == as_rows(written + on_the_way)
    assert client.get_run(killed.run_id).info.status == "RUNNING"
    member.logger.log_metrics({"grad_norm/net.0": 7.0}, step=5)  # the store holds step 5
    member.logger.log_metrics({"grad_norm/net.0": 8.0}, step=6)
    member.logger.settle()
    assert [(m.step, m.value) for m in client.get_metric_history(
        killed.run_id, "grad_norm/net.0")][-2:] == [(5, 3.0), (6, 8.0)]
