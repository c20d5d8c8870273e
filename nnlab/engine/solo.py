"""One run: validate -> build -> open the MLflow run -> fit, test -> close the run."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from omegaconf import DictConfig, open_dict

from nnlab.config import plain, validate
from nnlab.engine.build import build, run_record, user_parts
from nnlab.engine.callbacks import Checkpointer, DivergenceGuard, EpochTimer, progress_bar
from nnlab.engine.distributed import (
    ddp_job,
    devices_and_strategy,
    is_child_rank,
    job_command_for_ranks,
)
from nnlab.engine.instruments import instrument_callbacks
from nnlab.engine.logger import MlflowRunLogger
from nnlab.engine.resume import ResumeState, claim_checkpoint, new_run_dir, resume_exact
from nnlab.engine.trained import log_trained_model
from nnlab.errors import ConfigError, DataError, TrackingError
from nnlab.quiet import quiet
from nnlab.tracking import Tracker, open_tracker, resume_target, tags
from nnlab.tracking.life import closing_line, open_run, reopen_run, run_life


def train_one(cfg: DictConfig, overrides: Sequence[str] = (),
              output_dir: str | Path | None = None, extra_tags: dict[str, str] | None = None,
              sweep_dir: str | Path | None = None) -> float:
    """Train and test one configuration (or continue the run `resume=` names); return the
    monitored validation metric. A sweep's job (`sweep_dir`) nests under the sweep's run."""
    tracker = run_info = None
    resume = str(cfg.resume) if cfg.get("resume") else None
    if resume:
        tracker = open_tracker(cfg)
        try:
            run_info, ckpt_path, cfg = resume_target(tracker, resume, list(overrides))
        except TrackingError as err:
            raise ConfigError(str(err)) from None
    validate(cfg)

    quiet()  # again: importing Lightning resets its loggers' levels
    if is_child_rank():  # a DDP rank > 0: train alongside rank 0, which alone tracks the run
        return _child_rank(cfg, None if run_info is None else ckpt_path)
    strategy = devices_and_strategy(cfg)[1]
    with open_dict(cfg):
        cfg.accelerator.strategy = strategy  # logged as used: ddp for several devices

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        datamodule, module = build(cfg)
    except DataError as err:
        raise ConfigError(str(err)) from None
    out_dir = Path(output_dir) if output_dir else new_run_dir()
    if run_info is None:
        ckpt_path = (out_dir / "checkpoints" / "last.ckpt").resolve()
    if tracker is None:  # opened after the data: a bad data set leaves no store behind
        tracker = open_tracker(cfg)
    checkpointer = Checkpointer(ckpt_path, int(cfg.checkpoint.every_n_steps))
    if strategy.startswith("ddp") and sweep_dir is not None:
        job_command_for_ranks(overrides)
    resuming = run_info and (resume if resume == run_info.info.run_id else
                             f"{resume} (run {run_info.info.run_id})")
    with claim_checkpoint(ckpt_path, resuming):
        logged: dict[str, int] = {}
        if run_info is not None:
            logged = reopen_run(tracker, run_info.info.run_id, ckpt_path)
            print(f"nnlab: resuming run {tracker.run_id} from {ckpt_path}", flush=True)
        else:
            open_run(tracker, cfg, overrides, extra_tags or {}, run_record(cfg, datamodule,
                     module.model), ckpt_path, sweep_dir)
        with run_life(tracker, checkpointer.request_stop, ckpt_path), ddp_job():
            monitored, metrics = _fit_and_test(cfg, tracker, datamodule, module, checkpointer,
                                               out_dir, logged, resumed=run_info is not None)
    print(closing_line(tracker, cfg, module.monitor, monitored, metrics), flush=True)
    return monitored


def _fit_and_test(cfg: DictConfig, tracker: Tracker, datamodule: Any, module: Any,
                  checkpointer: Checkpointer, out_dir: Path, logged: dict[str, int],
                  resumed: bool) -> tuple[float, dict[str, Any]]:
    """Inside the open run: fit (or continue), test, log the trained model; the monitored
    value and the run's final metrics."""
    progress = [progress_bar()] if cfg.trainer.get("enable_progress_bar", True) else []
    trainer = make_trainer(
        cfg, logger=[MlflowRunLogger(tracker, logged=logged, keep_curves=bool(
            cfg.instruments.enabled and cfg.instruments.plots)), *user_parts(cfg, "logger")],
        callbacks=[EpochTimer(), *instrument_callbacks(cfg), DivergenceGuard(),
                   ResumeState(), checkpointer, *progress, *user_parts(cfg, "callbacks")],
        default_root_dir=out_dir,
    )
    if resumed:
        tracker.set_tags({tags.RESUME_EXACT: str(resume_exact(trainer)).lower()})
    trainer.fit(module, datamodule=datamodule,
                ckpt_path=str(checkpointer.path) if resumed else None)
    if trainer.interrupted:
        raise KeyboardInterrupt("training interrupted")
    found = trainer.callback_metrics.get(module.monitor)
    if found is None:  # resumed after its last epoch: nothing left to fit, its value is logged
        found = tracker.client.get_run(tracker.run_id).data.metrics.get(module.monitor,
                                                                         float("nan"))
    monitored = float(found)
    trainer.test(module, datamodule=datamodule, verbose=False)
    log_trained_model(tracker, module.model, datamodule)
    checkpointer.raise_if_stopped()  # a Ctrl-C after fit that something swallowed
    for logger in trainer.loggers:
        logger.finalize("success")
    return monitored, dict(trainer.callback_metrics)


def make_trainer(cfg: DictConfig, **parts: Any):
    """Lightning's Trainer on the config's accelerator and flags (`trainer.*`), with nnlab's own
    checkpointing and no model summary; `parts` adds the loggers, callbacks and the rest."""
    devices, strategy = devices_and_strategy(cfg)
    return pl.Trainer(accelerator=cfg.accelerator.accelerator, devices=devices,
                      strategy=strategy, precision=str(cfg.accelerator.precision),
                      enable_checkpointing=False, enable_model_summary=False,
                      **{**plain(cfg.trainer), **parts})


def _child_rank(cfg: DictConfig, ckpt_path: Path | None) -> float:
    """A DDP rank > 0: the same data, model and callbacks as rank 0, no MLflow run."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, module = build(cfg)
    checkpointer = Checkpointer(ckpt_path or Path("unused.ckpt"),
                                int(cfg.checkpoint.every_n_steps))
    trainer = make_trainer(
        cfg, logger=user_parts(cfg, "logger") or False,
        callbacks=[DivergenceGuard(), checkpointer, *user_parts(cfg, "callbacks")],
        enable_progress_bar=False,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop with rank 0, at the same batch
        signal.signal(sig, checkpointer.request_stop)
    trainer.fit(module, datamodule=datamodule,
                ckpt_path=str(ckpt_path) if ckpt_path is not None else None)
    if trainer.interrupted:
        raise KeyboardInterrupt("training interrupted")
    trainer.test(module, datamodule=datamodule, verbose=False)
    return float(trainer.callback_metrics.get(module.monitor, float("nan")))
