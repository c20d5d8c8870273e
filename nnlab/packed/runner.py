"""Training a pack: each member's MLflow run opened (or reopened) with the shared run ceremony,
one Lightning fit of the packed module, then each member's figures, trained model and final
status, as its solo run would leave them."""

from __future__ import annotations

import copy
import math
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from mlflow.entities import Metric
from omegaconf import DictConfig
from torch import nn

from nnlab.away import spare_cpu
from nnlab.config import plain
from nnlab.drawing import Drawer
from nnlab.engine.instruments import INIT_FIGURE, log_figure, log_picture, param_layers
from nnlab.engine.logger import MlflowRunLogger
from nnlab.engine.solo import make_trainer
from nnlab.engine.trained import log_trained_model
from nnlab.errors import Diverged
from nnlab.figures import weight_histograms
from nnlab.packed.batches import PackedBatches
from nnlab.packed.checkpoint import (
    PackCheckpointer,
    PackResume,
    pack_checkpoint,
    pack_unwritten,
)
from nnlab.packed.members import Member, build_members
from nnlab.packed.module import MemberHooks, PackedModule
from nnlab.packed.pictures import (
    Job,
    Pictures,
    draw_ahead,
    draw_members,
    draws_figures,
    init_counts,
    member_jobs,
    start_drawer,
)
from nnlab.quiet import quiet
from nnlab.tracking import open_tracker, tags
from nnlab.tracking.life import end_status, open_run, reopen_run
from nnlab.tracking.writer import MetricWriter

# A member's epoch values reach the store at most this often (and at every checkpoint save and
# at the end): written at once, 16 members' per-epoch writes were 40% of a small pack's time.
PACK_FLUSH_S = 2.0


def make_pack(members: Sequence[Member], datamodules: Sequence[Any], modules: Sequence[Any],
              generators: Sequence[torch.Generator], hooks: MemberHooks | None = None,
              ) -> tuple[PackedModule, PackedBatches, PackedBatches, PackedBatches]:
    """The packed module and its train, val and test batches."""
    cfgs = [m.cfg for m in members]
    batch_size = cfgs[0].batch_size
    splits = {s: [dm.splits[s] for dm in datamodules] for s in ("train", "val", "test")}
    shuffles = [dm.train_dataloader().generator for dm in datamodules]
    train = PackedBatches([s.x for s in splits["train"]], [s.y for s in splits["train"]],
                          batch_size, shuffles)
    val = PackedBatches([s.x for s in splits["val"]], [s.y for s in splits["val"]], batch_size)
    test = PackedBatches([s.x for s in splits["test"]], [s.y for s in splits["test"]], batch_size)
    module = PackedModule(
        [m.model for m in modules], modules[0].objective, [plain(c.optimizer) for c in cfgs],
        [float(c.model.get("dropout", 0.0)) for c in cfgs], generators,
        datamodules[0].info.input_shape, hooks, int(cfgs[0].trainer.log_every_n_steps),
        plain(cfgs[0].instruments))
    return module, train, val, test


def pack_trainer(cfg: DictConfig, root: Path, **overrides: Any) -> pl.Trainer:
    """The solo runs' Trainer recipe (nnlab.engine.solo.make_trainer: the members' accelerator and
    trainer flags) for a pack: no logger of its own (each member logs into its run) and no
    sanity validation. One device: DDP and gradient-clipping jobs do not pack."""
    return make_trainer(cfg, logger=False, default_root_dir=root, num_sanity_val_steps=0,
                        **{"callbacks": [], **overrides})


def start_writer(members: Sequence[Member]) -> MetricWriter | None:
    """A metric-writing process when there are members to write for and a second CPU to write
    on (the pack trains on one)."""
    if len(members) < 2 or not spare_cpu():
        return None
    try:
        return MetricWriter()
    except OSError:  # no process to be had: every batch is written here
        return None


def _start_run(member: Member, pack_id: str, pack_size: int, checkpoint: Path,
               writer: MetricWriter | None) -> None:
    """Open the member's MLflow run with the params, tags and artifacts a solo run logs first."""
    member.tracker = open_tracker(member.cfg)
    found = {**member.tags, tags.PACK: pack_id, "nnlab.pack_size": str(pack_size)}
    if member.cfg.instruments.enabled:  # as the Instruments callback tags a solo run
        found[tags.LAYERS] = ",".join(name for name, _ in param_layers(member.model))
    open_run(member.tracker, member.cfg, member.overrides, found, member.record, checkpoint,
             member.sweep_dir)
    member.open = True
    member.logger = MlflowRunLogger(member.tracker, epoch_flush_s=PACK_FLUSH_S, writer=writer,
                                    keep_curves=draws_figures(member))


def _reopen_run(member: Member, run: Any, checkpoint: Path, unwritten: Sequence[Metric],
                writer: MetricWriter | None) -> None:
    """Open a killed pack member's run again (RUNNING) to continue it from `checkpoint` (first
    writing the values the checkpoint holds that were on their way to the store); its logger
    skips what the run logged already."""
    member.tracker = open_tracker(member.cfg)
    member.tracker.run_id = run.info.run_id
    for start in range(0, len(unwritten), 1000):
        member.tracker.log_batch(metrics=list(unwritten[start:start + 1000]))
    logged = reopen_run(member.tracker, run.info.run_id, checkpoint)
    member.open = True
    member.logger = MlflowRunLogger(member.tracker, logged=logged, epoch_flush_s=PACK_FLUSH_S,
                                    writer=writer, keep_curves=draws_figures(member))


def _end_run(member: Member, err: BaseException | None = None) -> None:
    """Close the member's run as `end_status` says for how its pack (or it alone) ended."""
    status, error = end_status(err)
    member.open = False
    if member.logger is not None:
        member.logger.settle()
    if error is not None:
        member.error = f"{type(error).__name__}: {error}"
    member.tracker.end(status, error)


def init_plot(member: Member) -> None:
    """The member's weight histograms at init (member.model keeps its init draw)."""
    log_figure(member.tracker, member.output_dir, INIT_FIGURE, weight_histograms,
               init_counts(member))


def finish_members(members: Sequence[Member], module: PackedModule, datamodules: Sequence[Any],
                   drawer: Drawer | None, stopped: Callable[[], None], pack_id: str,
                   ahead: set[tuple[int, str]] | None = None) -> None:
    """Each open member's end-of-run figures (drawn here and by `drawer`; `ahead`: those it drew
    while the pack trained), trained model and FINISHED status, as its solo run ends;
    `stopped()` raises for a Ctrl-C the figures swallowed."""
    trained: dict[int, nn.Module] = {}

    def model_of(m: int) -> nn.Module:
        if m not in trained:
            trained[m] = copy.deepcopy(members[m].model)  # member.model keeps its init draw
            trained[m].load_state_dict(module.member_state_dict(m), strict=False)
        return trained[m]

    def jobs_of(m: int) -> list[Job]:
        frames = module.boundary.frames[m] if module.boundary.grid is not None else []
        return member_jobs(members[m], model_of(m), datamodules[m], module.task, frames,
                           module.boundary.grid[0] if frames else None)

    def done(m: int, pictures: Pictures) -> None:
        member = members[m]
        for filename, picture in pictures:
            log_picture(member.tracker, member.output_dir, filename, picture)
        log_trained_model(member.tracker, model_of(m), datamodules[m])
        del trained[m]
        stopped()
        _end_run(member)
        member.result = float(module.ledger.last[m].get(module.monitor, math.nan))
        scores = " ".join(f"{k}={v:.4f}" for k, v in sorted(module.ledger.last[m].items())
                          if k.startswith("test/"))
        print(f"nnlab: run '{member.cfg.mlflow.run_name}' FINISHED ({member.tracker.run_id}) "
              f"in pack {pack_id}: {module.monitor}={member.result:.4f} {scores}", flush=True)

    finishing = [m for m, member in enumerate(members) if member.open]
    plotted = [m for m in finishing if draws_figures(members[m])]
    draw_members(plotted, jobs_of, drawer, done, ahead)
    for m in finishing:
        if m not in plotted:
            done(m, [])


def run_pack(members: Sequence[Member], pack_id: str,
             built: tuple[list[Any], list[Any], list[torch.Generator]] | None = None,
             cpu_threads: int | None = 1, resume: PackResume | None = None) -> PackedModule:
    """Train the members as one pack, each into its own MLflow run; sets each member's `result`
    (the monitored metric) or `error`; returns the trained pack. `built`: build_members' result
    when the caller built the members already. Every run it opened ends FINISHED, FAILED
    (diverged alone, or the pack failed) or KILLED (Ctrl-C / SIGTERM).

    The pack keeps a checkpoint (`pack_checkpoint`, each run's `nnlab.checkpoint` tag), saved
    every `checkpoint.every_n_steps` optimiser steps, at an epoch's start once PACK_SAVE_S have
    passed since the last save, and when SIGTERM or Ctrl-C stops it at a batch boundary.
    `resume`: continue a killed pack from its checkpoint in its members' own runs (members in the
    checkpoint's order); a member whose run ended FAILED (diverged) stays so.

    `cpu_threads`: torch's intra-op threads while a pack trains on the CPU (None: unchanged). A
    pack's tensors are M times a job's, large enough for torch to split each op across threads
    yet too small to gain from it; on a shared CPU every such op then waits for a descheduled
    thread (measured: 16 MLP members on moons, 2 threads 5.5x slower than 1 at load 5)."""
    quiet()  # again: importing Lightning resets its loggers' levels
    datamodules, modules, generators = built or build_members(members)

    def log(m: int, values: dict[str, float], step: int) -> None:
        if members[m].open:
            members[m].logger.log_metrics(values, step)

    def diverged(m: int, message: str) -> None:
        if not members[m].open:
            return
        members[m].tracker.set_tags({tags.DIVERGED: "true"})
        if draws_figures(members[m]):
            init_plot(members[m])  # as a solo run's: often it explains the divergence
        _end_run(members[m], Diverged(message))
        print(f"nnlab: pack {pack_id}: run {members[m].tracker.run_id} diverged and ended FAILED "
              f"(the others go on): {message}", file=sys.stderr, flush=True)

    ckpt_path = resume.checkpoint if resume else pack_checkpoint(members, pack_id)
    dead = [m for m, run in enumerate(resume.runs if resume else [])
            if run.info.status == "FAILED"]
    checkpointer = PackCheckpointer(ckpt_path, int(members[0].cfg.checkpoint.every_n_steps),
                                    members, dead)
    # SIGINT/SIGTERM: stop at the next batch boundary, where the checkpoint is consistent
    previous = {sig: signal.signal(sig, checkpointer.request_stop)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    drawer = writer = None
    try:
        drawer = start_drawer(members)  # its imports overlap the training
        writer = start_writer(members)
        unwritten = pack_unwritten(ckpt_path) if resume else {}
        for m, member in enumerate(members):
            member.model = modules[m].model
            if resume is None:
                _start_run(member, pack_id, len(members), ckpt_path, writer)
            elif m in dead:
                member.error = resume.runs[m].data.tags.get(tags.ERROR, "FAILED before the kill")
            else:
                run = resume.runs[m]
                _reopen_run(member, run, ckpt_path, unwritten.get(run.info.run_id, []), writer)
        ahead = draw_ahead(drawer, members)  # drawn while the pack trains
        if resume is not None:
            print(f"nnlab: resuming pack {pack_id} from {ckpt_path}", flush=True)
        module, train, val, test = make_pack(members, datamodules, modules, generators,
                                             MemberHooks(log, diverged))
        checkpointer.train = train
        module.boundary.threads = threads  # the process's own count, for the frames' grids
        trainer = pack_trainer(members[0].cfg, members[0].output_dir.parent,
                               callbacks=[checkpointer])
        if cpu_threads and trainer.strategy.root_device.type == "cpu":
            torch.set_num_threads(cpu_threads)
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val,
                    ckpt_path=str(ckpt_path) if resume else None)
        if trainer.interrupted:
            raise KeyboardInterrupt("training interrupted")
        trainer.test(module, dataloaders=test, verbose=False)
        finish_members(members, module, datamodules, drawer, checkpointer.raise_if_stopped,
                       pack_id, ahead)
        return module
    except BaseException as raised:
        status, err = end_status(raised)
        for member in members:
            if member.open:
                _end_run(member, err)
            elif member.tracker is None:
                member.error = member.error or f"{type(err).__name__}: {err}"
        if status == "KILLED":
            kept = (f"checkpoint {ckpt_path}; continue with the same command and "
                    "sweep.resume=true" if ckpt_path.is_file() else "no checkpoint was saved")
            print(f"nnlab: pack {pack_id} KILLED ({err}); {kept}", file=sys.stderr, flush=True)
            raise err from None
        raise
    finally:
        if drawer is not None:
            drawer.close()
        if writer is not None:
            writer.close()
        torch.set_num_threads(threads)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
