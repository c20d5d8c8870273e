"""A pack's end-of-run figures: each member's, as its solo run draws them (nnlab.engine.
instruments.end_plots), drawn in this process and in a drawing process (nnlab.drawing) side by
side; a member's run is finished only once all its figures are drawn."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from nnlab.away import spare_cpu
from nnlab.drawing import Drawer, boundary_scores, portable
from nnlab.engine.instruments import (
    INIT_FIGURE,
    end_plots,
    first_conv,
    param_layers,
    weight_counts,
)
from nnlab.figures import confusion_matrix, decision_boundary, png_bytes, weight_histograms
from nnlab.figures.per_run import confusion_counts, confusion_figure
from nnlab.packed.members import Member

Job = tuple[str, Callable[..., Any], tuple]  # (file name, figure function, its arguments)
Pictures = list[tuple[str, bytes]]  # (file name, PNG/GIF bytes), in the order they were made
AHEAD = 2  # members queued in the drawing process (one drawn, one waiting)
AHEAD_KEY = "ahead"  # the key's first part of a figure sent before training (draw_ahead)
WAIT_S = 120.0  # a drawing process silent this long with jobs away is ended; they are drawn here


def draws_figures(member: Member) -> bool:
    """Whether the member's config asks for the instruments' figures."""
    return bool(member.cfg.instruments.enabled and member.cfg.instruments.plots)


def start_drawer(members: Sequence[Member]) -> Drawer | None:
    """A drawing process when the members draw figures and a second CPU is there to draw them."""
    plotted = sum(draws_figures(m) for m in members)
    if plotted < 2 or not spare_cpu():
        return None
    try:
        return Drawer()
    except OSError:  # no process to be had: every figure is drawn here
        return None


def member_jobs(member: Member, trained: nn.Module, datamodule: Any, task: str | None,
                frames: list, extent: list[float] | None) -> list[Job]:
    """The figures the Instruments callback draws at the end of a solo run, for one member
    (its inputs taken now: the learning curves as its logger kept them, or from its run), not
    yet drawn."""
    jobs: list[Job] = []
    conv = first_conv(member.model)  # member.model keeps its init draw
    curves = member.logger.curves()
    if curves is None:  # a resumed run: its learning curves are read back from the store
        member.logger.settle()
    end_plots(lambda filename, draw, *args: jobs.append((filename, draw, args)), member.tracker,
              trained, trained, datamodule, task, init_counts(member),
              None if conv is None else conv.weight.detach().cpu().clone(), frames, extent,
              curves)
    return jobs


def init_counts(member: Member) -> list:
    """The member's weight histograms as initialised (member.model keeps its init draw), counted
    once for the figure drawn ahead, at the end, or when the member diverges."""
    if member.init_histograms is None:
        member.init_histograms = weight_counts(param_layers(member.model))
    return member.init_histograms


def draw_here(job: Job) -> bytes:
    return png_bytes(job[1](*job[2]))


def away(job: Job) -> Job | None:
    """The job as the drawing process takes it (tensors on the CPU, a model replaced by its
    scores), or None: drawn here."""
    filename, draw, args = job
    if draw is decision_boundary:
        args = (boundary_scores(args[0], args[1]), *args[1:])
    if draw is confusion_matrix:  # counted here: the drawing process imports no torchmetrics
        draw, args = confusion_figure, (confusion_counts(*args),)
    try:
        return filename, draw, portable(args)
    except ValueError:
        return None


def draw_ahead(drawer: Drawer | None, members: Sequence[Member]) -> set[tuple[int, str]]:
    """Send the drawing process, before the pack trains, the figures whose inputs are known now
    (each member's weights at init, as end_plots draws them): it draws them while the pack trains
    on the other core. The (member, file name) pairs sent, for draw_members."""
    if drawer is None:
        return set()
    sent = set()
    for m, member in enumerate(members):
        if member.open and draws_figures(member):
            drawer.submit((AHEAD_KEY, m, INIT_FIGURE), weight_histograms,
                          portable(init_counts(member)))
            sent.add((m, INIT_FIGURE))
    return sent


def draw_members(order: Sequence[int], jobs_of: Callable[[int], list[Job]],
                 drawer: Drawer | None, done: Callable[[int, Pictures], None],
                 ahead: set[tuple[int, str]] | None = None) -> None:
    """Every member's figures; `done(m, pictures)` as soon as member m's are all drawn. This
    process draws members from the front of `order`; once the drawing process is ready it takes
    them from the back, AHEAD at a time. `ahead`: (member, file name) figures sent to it before
    training (draw_ahead), taken from it. What it cannot draw (or a job lost with it) is drawn
    here, so an error in a figure is raised here as in a solo run."""
    todo = deque(order)
    sent: dict[int, tuple[list[Job], dict[int, bytes]]] = {}  # m -> its jobs, pictures back
    early: dict[tuple[int, str], bytes | None] = {}  # drawn ahead and back
    awaited: dict[tuple[int, str], int] = {}  # drawn ahead, not back: its job's index
    ahead = set(ahead or ())

    def complete(m: int) -> None:
        jobs, pictures = sent[m]
        if len(pictures) == len(jobs):
            del sent[m]
            done(m, [(job[0], pictures[i]) for i, job in enumerate(jobs)])

    def take_back(back: list) -> None:
        for key, picture in back:
            if key[0] == AHEAD_KEY:
                _, m, filename = key
                ahead.discard((m, filename))
                early[m, filename] = picture
                if (m, filename) in awaited:
                    i = awaited.pop((m, filename))
                    jobs, pictures = sent[m]
                    pictures[i] = picture if picture is not None else draw_here(jobs[i])
                    complete(m)
                continue
            m, i = key
            jobs, pictures = sent[m]
            pictures[i] = picture if picture is not None else draw_here(jobs[i])
            complete(m)

    def drawn_early(m: int, job: Job) -> bytes | None:
        return early.pop((m, job[0]), None)

    while todo or sent:
        while drawer is not None and drawer.ready and todo and len(sent) < AHEAD:
            m = todo.pop()
            jobs, pictures = sent[m] = (jobs_of(m), {})
            here = []
            for i, job in enumerate(jobs):
                if (picture := drawn_early(m, job)) is not None:
                    pictures[i] = picture
                elif (m, job[0]) in ahead:
                    awaited[m, job[0]] = i
                elif (far := away(job)) is not None:
                    drawer.submit((m, i), far[1], *far[2])
                else:
                    here.append(i)
            pictures.update({i: draw_here(jobs[i]) for i in here})
            complete(m)
        if drawer is not None and (sent or ahead):
            wait = 0 if todo else WAIT_S
            back = drawer.results(wait)
            if not back and wait and drawer.away:
                drawer.close()  # silent too long: its jobs are drawn here
            take_back(back)
            if drawer.ended:
                ahead.clear()
                for m in list(sent):
                    jobs, pictures = sent[m]
                    for key in [k for k in awaited if k[0] == m]:
                        del awaited[key]
                    pictures.update({i: draw_here(job) for i, job in enumerate(jobs)
                                     if i not in pictures})
                    complete(m)
        if todo:
            m = todo.popleft()
            done(m, [(job[0], drawn_early(m, job) or draw_here(job)) for job in jobs_of(m)])
