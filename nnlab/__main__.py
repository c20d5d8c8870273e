"""`python -m nnlab` / `nnlab`: compose the config with Hydra, then hand it to nnlab.engine.solo."""

from __future__ import annotations

import gc
import math
import os
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nnlab.config import register_configs
from nnlab.config.launch import LaunchRefused, forget_new_folders
from nnlab.config.messages import config_error_message
from nnlab.errors import ConfigError, Diverged, NnlabError
from nnlab.quiet import quiet

register_configs()
# conf/hydra/launcher/submitit_*.yaml share their names with the plugin's own nodes, so Hydra also
# checks them against those (deprecated, harmless): no warning for it on every sweep.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_\w+' is validated")


def config_dir() -> str:
    """The packaged configs of an installed wheel, else the checkout's top-level conf/."""
    packaged = Path(__file__).resolve().parent / "conf"
    return str(packaged if packaged.is_dir() else packaged.parent.parent / "conf")


def job(cfg: DictConfig) -> float:
    """One job, as Hydra launches it: a single run (a config error raises ConfigError), or one
    job of a multirun (a failure is recorded and the sweep goes on). nnlab.train and nnlab.sweep
    run this very function."""
    # lazy: the engine loads torch and Lightning, which --help and config errors never need
    from nnlab.engine import train_one
    from nnlab.tracking.life import job_tags

    hydra_cfg = HydraConfig.get()
    tags = job_tags(hydra_cfg)
    overrides = list(hydra_cfg.overrides.task)
    if hydra_cfg.mode.name != "MULTIRUN":
        return train_one(cfg, overrides, hydra_cfg.runtime.output_dir, tags)

    # One job of a sweep: a failure is recorded (its MLflow run is already FAILED) and the
    # sweep goes on; nnlab.jobs.SweepReport prints the summary and exits 1 after the last job.
    from nnlab.jobs import record_job, run_job  # lazy, as the engine above

    try:
        value, outcome = run_job(cfg, overrides, hydra_cfg.runtime.output_dir, tags,
                                 hydra_cfg.sweep.dir)
    except Exception as err:
        message = config_error_message(err) if isinstance(err, ConfigError) else \
            f"{type(err).__name__}: {err}"
        print(f"nnlab: job {hydra_cfg.job.num} failed: {message}", file=sys.stderr, flush=True)
        record_job(hydra_cfg.sweep.dir, hydra_cfg.job.num, overrides, message)
        return math.nan
    record_job(hydra_cfg.sweep.dir, hydra_cfg.job.num, overrides, None, outcome)
    return value


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def task(cfg: DictConfig) -> float:
    """`python -m nnlab`'s job; a single run's config error ends in one paragraph and exit 2."""
    try:
        return job(cfg)
    except ConfigError as err:  # leave here, before Hydra adds its own lines
        if HydraConfig.get().mode.name != "MULTIRUN":  # a refused run leaves no folder behind
            forget_new_folders(HydraConfig.get().runtime.output_dir)
        print(f"nnlab: error: {config_error_message(err)}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """Run Hydra; any config error, Hydra's or nnlab's, ends in one paragraph and exit 2; any
    other nnlab error in one paragraph and its exit code (NnlabError.exit_code)."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra's errors reach us whole; we word them
    quiet()
    try:
        task()
    except LaunchRefused as refused:  # a Hydra callback's check, before anything was made
        print(f"nnlab: error: {config_error_message(refused.error)}", file=sys.stderr)
        sys.exit(refused.error.exit_code)
    except KeyboardInterrupt:
        if "nnlab.tracking.parent" in sys.modules:  # a sweep: its own run ends KILLED too
            sys.modules["nnlab.tracking.parent"].kill_open_parent_runs()
        sys.exit(130)  # the run is KILLED and its checkpoint kept (see nnlab.engine.train_one)
    except Diverged as err:
        print(f"nnlab: error: the run diverged and ended FAILED: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except NnlabError as err:  # ConfigError and DataError: 2; TrackingError (server lost): 1
        print(f"nnlab: error: {config_error_message(err) or err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except Exception as err:
        message = config_error_message(err)  # Hydra's and OmegaConf's own config errors
        if message is None:
            raise
        print(f"nnlab: error: {message}", file=sys.stderr)
        sys.exit(2)


def cli() -> None:
    """The `nnlab` command: main, then an exit without Python's last garbage collections, which
    took 1.2-3 s over the objects of torch, Lightning and MLflow after the work was done
    (bench/results.md); the OS frees the memory at once, and exit handlers (log files, ...)
    still run. Not for main's callers in a process that goes on."""
    try:
        main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    cli()
