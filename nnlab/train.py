"""validate -> build data, model, module -> open the MLflow run -> fit, test -> close the run."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import nnlab
from nnlab.config import GROUPS, ConfigError, group_params, plain, validate


def build_datamodule(cfg: DictConfig):
    """The data module with its arrays loaded, so its shapes are known."""
    from hydra.utils import instantiate

    params = group_params(cfg.dataset)
    datamodule = instantiate({"_target_": cfg.dataset._target_, **params},
                             batch_size=cfg.batch_size, seed=cfg.seed)
    datamodule.prepare()
    return datamodule


def build_model(cfg: DictConfig, input_shape: Sequence[int], num_outputs: int):
    """The network with the chosen activation in every hidden layer and the chosen init."""
    from hydra.utils import get_class

    from nnlab.activations import activation_factory
    from nnlab.inits import apply_init

    act_params = group_params(cfg.activation)
    activation = activation_factory(cfg.activation.name, **act_params)
    model_cls = get_class(cfg.model._target_)
    model = model_cls(tuple(input_shape), num_outputs, activation, **group_params(cfg.model))
    init_params = group_params(cfg.init)
    if cfg.activation.name == "leaky_relu":
        init_params.setdefault("negative_slope", act_params.get("negative_slope", 0.01))
    return apply_init(model, cfg.init.name, activation=cfg.activation.name, **init_params)


def build_module(cfg: DictConfig, model, task: str, num_classes: int):
    from hydra.utils import instantiate

    from nnlab.losses import Objective
    from nnlab.module import LabModule

    objective = Objective(cfg.loss.name, task, num_classes, **group_params(cfg.loss))
    optimizer = instantiate({k: v for k, v in plain(cfg.optimizer).items() if k != "name"})
    scheduler = None
    if cfg.scheduler.get("_target_"):
        scheduler = instantiate({k: v for k, v in plain(cfg.scheduler).items() if k != "name"})
    return LabModule(model, objective, optimizer, scheduler)


def build(cfg: DictConfig):
    """Everything but the tracker and trainer: (datamodule, module)."""
    datamodule = build_datamodule(cfg)
    info = datamodule.info
    model = build_model(cfg, info.input_shape, info.num_outputs)
    return datamodule, build_module(cfg, model, info.task, datamodule.num_classes)


def model_summary(model, input_shape: Sequence[int]) -> str:
    from torchinfo import summary

    stats = summary(model, input_size=(1, *input_shape), verbose=0, device="cpu",
                    col_names=("output_size", "num_params"), row_settings=("var_names",))
    return str(stats)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(nnlab.__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def run_tags(cfg: DictConfig, overrides: Sequence[str], extra: dict[str, str]) -> dict[str, str]:
    tags = {f"nnlab.{group}": str(cfg[group].name) for group in GROUPS}
    tags.update({
        "nnlab.version": nnlab.__version__,
        "nnlab.overrides": " ".join(overrides) or "(none)",
        "mlflow.source.name": "nnlab",
    })
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    tags.update(extra)
    return tags


def report(tracker, cfg: DictConfig, monitor: str, value: float, metrics: dict) -> None:
    """One line per finished run: what ran, how it scored, where to look."""
    test = {k: float(v) for k, v in metrics.items() if k.startswith("test/")}
    scores = " ".join(f"{k}={v:.4f}" for k, v in sorted(test.items()))
    print(f"nnlab: run '{cfg.mlflow.run_name}' FINISHED ({tracker.run_id}): "
          f"{monitor}={value:.4f} {scores} | store {cfg.mlflow.tracking_uri}", flush=True)


def open_tracker(cfg: DictConfig):
    """The MLflow store and experiment, before any data is loaded: a bad store fails fast."""
    from nnlab.tracking import Tracker, TrackingError

    try:
        return Tracker(cfg.mlflow.tracking_uri, cfg.mlflow.experiment_name,
                       cfg.mlflow.artifact_root)
    except TrackingError as err:
        raise ConfigError(str(err)) from None


def run(cfg: DictConfig, overrides: Sequence[str] = (), output_dir: str | Path | None = None,
        extra_tags: dict[str, str] | None = None) -> float:
    """Train and test one configuration (or continue the run `resume=` names); return the
    monitored validation metric."""
    resume, run_info, ckpt_path = cfg.get("resume"), None, None
    if resume:
        from nnlab.lifecycle import resume_target
        from nnlab.tracking import TrackingError

        tracker = open_tracker(cfg)
        try:
            run_info, ckpt_path, cfg = resume_target(tracker, str(resume), list(overrides))
        except TrackingError as err:
            raise ConfigError(str(err)) from None
    validate(cfg)

    import logging

    import lightning.pytorch as pl

    logging.getLogger("lightning.pytorch").propagate = False  # Lightning prints its own lines

    from nnlab.data import DataError
    from nnlab.instruments import EpochTimer, instrument_callbacks
    from nnlab.lifecycle import Checkpointer, Diverged, DivergenceGuard, MlflowRunLogger
    from nnlab.tracking import CHECKPOINT_TAG, flatten
    from nnlab.trained import log_trained_model

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        datamodule, module = build(cfg)
    except DataError as err:
        raise ConfigError(str(err)) from None
    if not resume:  # after the data: a bad data set leaves no store behind
        tracker = open_tracker(cfg)
    info = datamodule.info
    num_params = sum(p.numel() for p in module.model.parameters())

    logged: dict[str, int] = {}
    if run_info is not None:
        logged = tracker.reopen(run_info.info.run_id)
        tracker.set_tags({"nnlab.resumed_from": ckpt_path.name})
        print(f"nnlab: resuming run {tracker.run_id} from {ckpt_path}", flush=True)
    else:
        summary = model_summary(module.model, info.input_shape)
        out_dir = Path(output_dir or "mlruns/hydra/last")
        ckpt_path = (out_dir / "checkpoints" / "last.ckpt").resolve()
        params = flatten(OmegaConf.to_container(cfg, resolve=True))
        params["model.num_params"] = num_params
        tags = {**run_tags(cfg, overrides, extra_tags or {}), CHECKPOINT_TAG: str(ckpt_path)}
        tracker.start(cfg.mlflow.run_name, params, tags)
    every = int(cfg.get("checkpoint", {}).get("every_n_steps", 100))
    checkpointer = Checkpointer(ckpt_path, every)
    previous = {sig: signal.signal(sig, checkpointer.request_stop)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if run_info is None:
            tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
            tracker.log_text("\n".join(overrides) + "\n", "overrides.txt")
            tracker.log_text(summary, "model_summary.txt")
            tracker.log_metrics({"model/params": num_params})
        out = Path(output_dir or "mlruns/hydra/last")
        trainer = pl.Trainer(
            accelerator=cfg.accelerator.accelerator,
            devices=cfg.accelerator.devices,
            precision=str(cfg.accelerator.precision),
            logger=MlflowRunLogger(tracker, logged=logged),
            callbacks=[EpochTimer(), *instrument_callbacks(cfg), DivergenceGuard(),
                       checkpointer],
            default_root_dir=out,
            enable_checkpointing=False,
            enable_model_summary=False,
            **plain(cfg.trainer),
        )
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if resume else None)
        if trainer.interrupted:
            raise KeyboardInterrupt("training interrupted")
        monitored = float(trainer.callback_metrics[module.monitor])
        trainer.test(module, datamodule=datamodule, verbose=False)
        log_trained_model(tracker, module.model, datamodule)
        trainer.logger.finalize("success")
        tracker.end("FINISHED")
        report(tracker, cfg, module.monitor, monitored, trainer.callback_metrics)
        return monitored
    except (KeyboardInterrupt, SystemExit) as err:  # Ctrl-C, SIGTERM (Lightning: SystemExit)
        why = f"signal {checkpointer.stop_signal}" if checkpointer.stop_signal else "interrupted"
        interrupt = err if isinstance(err, KeyboardInterrupt) else KeyboardInterrupt(why)
        tracker.end("KILLED", interrupt)
        kept = f"checkpoint {ckpt_path}; continue with resume={tracker.run_id}" \
            if ckpt_path.is_file() else "no checkpoint was saved"
        print(f"nnlab: run {tracker.run_id} KILLED ({why}); {kept}", file=sys.stderr, flush=True)
        raise interrupt from None
    except BaseException as err:
        if isinstance(err, Diverged):
            tracker.set_tags({"diverged": "true"})
        tracker.end("FAILED", err)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
