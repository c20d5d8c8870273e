"""A pack's end-of-run figures drawn in a second process (nnlab.drawing, nnlab.packed.pictures):
the same pictures as drawn here, in the order a solo run logs them; a figure that fails there is
drawn, and raises, here; a drawing process that dies loses nothing; a pack stopped by Ctrl-C
during its figures ends every run KILLED and leaves no drawing (or metric-writing) process
behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from nnlab.drawing import Drawer
from nnlab.figures import boundary_strip, confusion_matrix, decision_boundary, weight_histograms
from nnlab.packed import Member, run_pack
from nnlab.packed import pictures as pack_pictures
from nnlab.packed import runner as pack_runner
from nnlab.tracking.writer import MetricWriter


def ready_drawer() -> Drawer:
    """A drawing process that has done its imports (so jobs go to it at once)."""
    drawer = Drawer()
    deadline = time.monotonic() + 300
    while not drawer.ready:
        assert not drawer.ended and time.monotonic() < deadline, "no drawing process got ready"
        drawer.results(0.1)
    return drawer


def member_jobs(m: int) -> list:
    """Member m's figures as end_plots lists them: its own data set (so its own overlays)."""
    gen = torch.Generator().manual_seed(m)
    x = torch.randn(60, 2, generator=gen) + m
    y = (x[:, 0] > m).long()
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
    frames = [(e, torch.randint(0, 2, (100, 100), generator=gen, dtype=torch.uint8))
              for e in (0, 3, 6)]
    extent = [x[:, 0].min().item() - 0.5, x[:, 0].max().item() + 0.5,
              x[:, 1].min().item() - 0.5, x[:, 1].max().item() + 0.5]
    return [("confusion_matrix.png", confusion_matrix, (y.flip(0), y, 2)),
            ("decision_boundary.png", decision_boundary, (model, x, y)),
            ("decision_boundary_frames.png", boundary_strip, (frames, extent, x, y))]


def draw_all(drawer: Drawer | None, order: list[int], jobs: dict[int, list]) -> dict:
    got: dict[int, list] = {}

    def done(m: int, pictures: list) -> None:
        assert m not in got, f"member {m} finished twice"
        got[m] = pictures

    pack_pictures.draw_members(order, jobs.__getitem__, drawer, done)
    return got


def test_figures_drawn_away_are_the_ones_drawn_here() -> None:
    jobs = {m: member_jobs(m) for m in range(4)}
    drawer = ready_drawer()
    sent = []
    submit = drawer.submit
    drawer.submit = lambda key, *rest: (sent.append(key), submit(key, *rest))
    try:
        got = draw_all(drawer, list(range(4)), jobs)
    finally:
        drawer.close()
    assert sorted(got) == [0, 1, 2, 3]
    away = {m for m, _ in sent}
    assert away and away != {0, 1, 2, 3}  # both processes drew members
    for m in away:  # all of a member's figures, the confusion matrix (counted here) included
        assert sorted(i for n, i in sent if n == m) == [0, 1, 2]
    for m, pictures in got.items():
        assert [name for name, _ in pictures] == [name for name, *_ in jobs[m]]
        for (_, picture), job in zip(pictures, jobs[m], strict=True):
            assert picture == pack_pictures.draw_here(job), (m, job[0])


def test_figures_drawn_ahead_are_taken_not_drawn_again(monkeypatch) -> None:
    """The weights at init, sent before training (draw_ahead): the drawing process's pictures
    are used for the members it draws (not sent again) and are the ones drawn here."""
    histograms = {m: ("weights_at_init.png", weight_histograms, (
        [("net.0", (8, 2), 0.5 + m, torch.tensor([1.0, 3.0 + m, 2.0]),
          torch.tensor([-1.0, 0.0, 1.0, 2.0]))],)) for m in range(3)}
    jobs = {m: [histograms[m], *member_jobs(m)] for m in range(3)}
    drawer = ready_drawer()
    for m, (name, draw, args) in histograms.items():
        drawer.submit((pack_pictures.AHEAD_KEY, m, name), draw, *args)
    sent, drawn_here = [], []
    submit, draw_here = drawer.submit, pack_pictures.draw_here
    drawer.submit = lambda key, *rest: (sent.append(key), submit(key, *rest))
    monkeypatch.setattr(pack_pictures, "draw_here",
                        lambda job: (drawn_here.append(job[0]), draw_here(job))[1])
    try:
        got = {}
        pack_pictures.draw_members([0, 1, 2], jobs.__getitem__, drawer,
                                   lambda m, pictures: got.setdefault(m, pictures),
                                   {(m, "weights_at_init.png") for m in range(3)})
    finally:
        drawer.close()
    assert sorted(got) == [0, 1, 2]
    assert all(i != 0 for _, i in sent)  # the ahead figures were not sent again
    for m, pictures in got.items():
        assert [name for name, _ in pictures] == [name for name, *_ in jobs[m]]
        for (_, picture), job in zip(pictures, jobs[m], strict=True):
            assert picture == draw_here(job), (m, job[0])
    # drawn here only when this process took the member before its ahead picture came back
    assert drawn_here.count("weights_at_init.png") <= 1


def test_a_figure_that_fails_away_is_drawn_and_raises_here() -> None:
    jobs = {m: member_jobs(m) for m in range(3)}
    jobs[2].append(("weights_at_init.png", weight_histograms, ([],)))  # no layers: it raises
    drawer = ready_drawer()
    try:
        with pytest.raises(ZeroDivisionError):
            draw_all(drawer, [0, 1, 2], jobs)  # member 2 goes away first
    finally:
        drawer.close()


def test_a_dead_drawing_process_loses_no_figure() -> None:
    jobs = {m: member_jobs(m) for m in range(3)}
    drawer = ready_drawer()
    drawer.process.kill()
    drawer.process.wait()
    got = draw_all(drawer, [0, 1, 2], jobs)
    drawer.close()
    assert sorted(got) == [0, 1, 2]
    assert all(len(pictures) == 3 for pictures in got.values())


def test_ctrl_c_during_a_packs_figures_kills_every_run_and_the_drawing_process(
        compose_cfg, tmp_path: Path, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    members = []
    for seed in (0, 1, 2):
        overrides = ["model=mlp", "dataset=moons", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=2", "trainer.enable_progress_bar=false",
                     "checkpoint.every_n_steps=0", f"seed={seed}",
                     f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
                     f"mlflow.artifact_root={tmp_path}/art"]
        members.append(Member(compose_cfg(overrides), overrides, tmp_path / f"m{seed}", {}))
    started: list[Drawer] = []
    monkeypatch.setattr(pack_runner, "start_drawer",
                        lambda members: started.append(ready_drawer()) or started[-1])
    writers: list[MetricWriter] = []
    start_writer = pack_runner.start_writer
    monkeypatch.setattr(pack_runner, "start_writer",
                        lambda members: writers.append(start_writer(members)) or writers[-1])
    draw_here = pack_pictures.draw_here

    def interrupted(job):  # Ctrl-C while this process draws a figure
        os.kill(os.getpid(), signal.SIGINT)
        return draw_here(job)

    monkeypatch.setattr(pack_pictures, "draw_here", interrupted)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run_pack(members, "test-pack")
    assert signal.getsignal(signal.SIGINT) is handler
    assert started and started[0].process.poll() is not None  # no stray drawing process
    assert writers and writers[0].process.process.poll() is not None  # nor metric writer
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert [client.get_run(m.tracker.run_id).info.status for m in members] == ["KILLED"] * 3
