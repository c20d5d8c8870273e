"""A pack's end-of-run figures: each member's, as its solo run draws them (nnlab.engine.
instruments.end_plots), drawn in this process and in a drawing process (nnlab.drawing) side by
side; a member's run is finished only once all its figures are drawn."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from nnlab.drawing import Drawer, boundary_scores, portable
from nnlab.engine.instruments import end_plots, first_conv, param_layers, weight_counts
from nnlab.figures import decision_boundary, png_bytes
from nnlab.packed.members import Member

Job = tuple[str, Callable[..., Any], tuple]  # (file name, figure function, its arguments)
Pictures = list[tuple[str, bytes]]  # (file name, PNG/GIF bytes), in the order they were made
# drawn here: the drawing process would import torchmetrics (~5 CPU s) for 0.05 s a figure
DRAWN_HERE = {"confusion_matrix"}
AHEAD = 2  # members queued in the drawing process (one drawn, one waiting)
WAIT_S = 120.0  # a drawing process silent this long with jobs away is ended; they are drawn here


def start_drawer(members: Sequence[Member]) -> Drawer | None:
    """A drawing process when the members draw figures and a second CPU is there to draw them."""
    plotted = sum(m.cfg.instruments.enabled and m.cfg.instruments.plots for m in members)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if plotted < 2 or (cpus or 1) < 2:
        return None
    try:
        return Drawer()
    except OSError:  # no process to be had: every figure is drawn here
        return None


def member_jobs(member: Member, trained: nn.Module, datamodule: Any, task: str | None,
                frames: list, extent: list[float] | None) -> list[Job]:
    """The figures the Instruments callback draws at the end of a solo run, for one member
    (its inputs read now: the learning curves from its run), not yet drawn."""
    jobs: list[Job] = []
    conv = first_conv(member.model)  # member.model keeps its init draw
    member.logger.flush()  # the learning curves read the run's metric histories
    end_plots(lambda filename, draw, *args: jobs.append((filename, draw, args)), member.tracker,
              trained, trained, datamodule, task, weight_counts(param_layers(member.model)),
              None if conv is None else conv.weight.detach().cpu().clone(), frames, extent)
    return jobs


def draw_here(job: Job) -> bytes:
    return png_bytes(job[1](*job[2]))


def away(job: Job) -> Job | None:
    """The job as the drawing process takes it (tensors on the CPU, a model replaced by its
    scores), or None: drawn here."""
    filename, draw, args = job
    if draw.__name__ in DRAWN_HERE:
        return None
    if draw is decision_boundary:
        args = (boundary_scores(args[0], args[1]), *args[1:])
    try:
        return filename, draw, portable(args)
    except ValueError:
        return None


def draw_members(order: Sequence[int], jobs_of: Callable[[int], list[Job]],
                 drawer: Drawer | None, done: Callable[[int, Pictures], None]) -> None:
    """Every member's figures; `done(m, pictures)` as soon as member m's are all drawn. This
    process draws members from the front of `order`; once the drawing process is ready it takes
    them from the back, AHEAD at a time. What it cannot draw (or a job lost with it) is drawn
    here, so an error in a figure is raised here as in a solo run."""
    todo = deque(order)
    sent: dict[int, tuple[list[Job], dict[int, bytes]]] = {}  # m -> its jobs, pictures back

    def complete(m: int) -> None:
        jobs, pictures = sent[m]
        if len(pictures) == len(jobs):
            del sent[m]
            done(m, [(job[0], pictures[i]) for i, job in enumerate(jobs)])

    while todo or sent:
        while drawer is not None and drawer.ready and todo and len(sent) < AHEAD:
            m = todo.pop()
            jobs, pictures = sent[m] = (jobs_of(m), {})
            here = []
            for i, job in enumerate(jobs):
                if (far := away(job)) is not None:
                    drawer.submit((m, i), far[1], *far[2])
                else:
                    here.append(i)
            pictures.update({i: draw_here(jobs[i]) for i in here})
            complete(m)
        if sent:
            wait = 0 if todo else WAIT_S
            back = drawer.results(wait)
            if not back and wait and drawer.away:
                drawer.close()  # silent too long: its jobs are drawn here
            for (m, i), picture in back:
                jobs, pictures = sent[m]
                pictures[i] = picture if picture is not None else draw_here(jobs[i])
                complete(m)
            if drawer.ended:
                for m in list(sent):
                    jobs, pictures = sent[m]
                    pictures.update({i: draw_here(job) for i, job in enumerate(jobs)
                                     if i not in pictures})
                    complete(m)
        if todo:
            m = todo.popleft()
            done(m, [(job[0], draw_here(job)) for job in jobs_of(m)])
