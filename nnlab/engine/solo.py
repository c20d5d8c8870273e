"""One run: validate -> build -> open the MLflow run -> fit, test -> close the run."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from nnlab.config import ConfigError, plain, validate
from nnlab.tracking import open_tracker


def train_one(cfg: DictConfig, overrides: Sequence[str] = (), output_dir: str | Path | None = None,
        extra_tags: dict[str, str] | None = None, sweep_dir: str | Path | None = None) -> float:
    """Train and test one configuration (or continue the run `resume=` names); return the
    monitored validation metric. A sweep's job (`sweep_dir`) nests under the sweep's run."""
    tracker = run_info = None
    if cfg.get("resume"):
        from nnlab.errors import TrackingError
        from nnlab.tracking import resume_target

        tracker = open_tracker(cfg)
        try:
            run_info, ckpt_path, cfg = resume_target(tracker, str(cfg.resume), list(overrides))
        except TrackingError as err:
            raise ConfigError(str(err)) from None
    validate(cfg)

    import lightning.pytorch as pl

    from nnlab.engine.distributed import (
        ddp_job,
        devices_and_strategy,
        is_child_rank,
        job_command_for_ranks,
    )
    from nnlab.quiet import quiet

    quiet()  # again: importing Lightning resets its loggers' levels
    if is_child_rank():  # a DDP rank > 0: train alongside rank 0, which alone tracks the run
        return _child_rank(cfg, None if run_info is None else ckpt_path)
    strategy = devices_and_strategy(cfg)[1]
    with open_dict(cfg):
        cfg.accelerator.strategy = strategy  # logged as used: ddp for several devices

    from nnlab.data import DataError
    from nnlab.engine.build import build, data_info, data_profile, model_summary, user_parts
    from nnlab.engine.callbacks import Checkpointer, DivergenceGuard, EpochTimer, progress_bar
    from nnlab.engine.instruments import instrument_callbacks
    from nnlab.engine.logger import MlflowRunLogger
    from nnlab.engine.resume import ResumeState, resume_exact
    from nnlab.engine.trained import log_trained_model
    from nnlab.tracking import flatten, tags
    from nnlab.tracking.life import closing_line, run_life, run_tags

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        datamodule, module = build(cfg)
    except DataError as err:
        raise ConfigError(str(err)) from None
    out_dir = Path(output_dir or "mlruns/hydra/last")
    if tracker is None:  # opened after the data: a bad data set leaves no store behind
        tracker = open_tracker(cfg)
    logged: dict[str, int] = {}
    if run_info is not None:
        logged = tracker.reopen(run_info.info.run_id)
        tracker.set_tags({tags.RESUMED_FROM: ckpt_path.name})
        print(f"nnlab: resuming run {tracker.run_id} from {ckpt_path}", flush=True)
    else:
        info = data_info(datamodule)
        summary = model_summary(module.model, info.input_shape)
        num_params = sum(p.numel() for p in module.model.parameters())
        ckpt_path = (out_dir / "checkpoints" / "last.ckpt").resolve()
        params = flatten(OmegaConf.to_container(cfg, resolve=True))
        params["model.num_params"] = num_params
        run_tagged = {**run_tags(cfg, overrides, extra_tags or {}),
                      tags.CHECKPOINT: str(ckpt_path)}
        if sweep_dir is not None:
            from nnlab.tracking.parent import parent_run_id

            run_tagged[tags.PARENT] = parent_run_id(tracker, sweep_dir)
        tracker.start(cfg.mlflow.run_name, params, run_tagged)
    checkpointer = Checkpointer(ckpt_path, int(cfg.checkpoint.every_n_steps))
    if strategy.startswith("ddp") and sweep_dir is not None:
        job_command_for_ranks(overrides)
    with run_life(tracker, checkpointer.request_stop, ckpt_path), ddp_job():
        if run_info is None:
            tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
            tracker.log_text("\n".join(overrides) + "\n", "overrides.txt")
            tracker.log_text(summary, "model_summary.txt")
            tracker.log_metrics({"model/params": num_params})
            digest, profile = data_profile(datamodule, info)
            tracker.log_dataset(cfg.dataset.name, digest, cfg.dataset._target_, profile)
        progress = [progress_bar()] if cfg.trainer.get("enable_progress_bar", True) else []
        trainer = make_trainer(
            cfg, logger=[MlflowRunLogger(tracker, logged=logged), *user_parts(cfg, "logger")],
            callbacks=[EpochTimer(), *instrument_callbacks(cfg), DivergenceGuard(),
                       ResumeState(), checkpointer, *progress, *user_parts(cfg, "callbacks")],
            default_root_dir=out_dir,
        )
        if run_info is not None:
            tracker.set_tags({tags.RESUME_EXACT: str(resume_exact(trainer)).lower()})
        trainer.fit(module, datamodule=datamodule,
                    ckpt_path=str(ckpt_path) if run_info is not None else None)
        if trainer.interrupted:
            raise KeyboardInterrupt("training interrupted")
        monitored = float(trainer.callback_metrics[module.monitor])
        trainer.test(module, datamodule=datamodule, verbose=False)
        log_trained_model(tracker, module.model, datamodule)
        for logger in trainer.loggers:
            logger.finalize("success")
    print(closing_line(tracker, cfg, module.monitor, monitored, trainer.callback_metrics),
          flush=True)
    return monitored


def make_trainer(cfg: DictConfig, **parts: Any):
    """Lightning's Trainer on the config's accelerator and flags (`trainer.*`), with nnlab's own
    checkpointing and no model summary; `parts` adds the loggers, callbacks and the rest."""
    import lightning.pytorch as pl

    from nnlab.engine.distributed import devices_and_strategy

    devices, strategy = devices_and_strategy(cfg)
    return pl.Trainer(accelerator=cfg.accelerator.accelerator, devices=devices,
                      strategy=strategy, precision=str(cfg.accelerator.precision),
                      enable_checkpointing=False, enable_model_summary=False,
                      **{**plain(cfg.trainer), **parts})


def _child_rank(cfg: DictConfig, ckpt_path: Path | None) -> float:
    """A DDP rank > 0: the same data, model and callbacks as rank 0, no MLflow run."""
    import lightning.pytorch as pl

    from nnlab.engine.build import build, user_parts
    from nnlab.engine.callbacks import Checkpointer, DivergenceGuard

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
