"""`python -m nnlab` / `nnlab`: compose the config with Hydra, then validate, build and run."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nnlab.config import ConfigError, register_configs

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

register_configs()


def check_experiment(name: str | None) -> None:
    """Hydra skips an `optional` default it cannot find, so a typo would run the plain config."""
    if not name or name == "none":
        return
    from hydra.core.global_hydra import GlobalHydra

    known = sorted(GlobalHydra.instance().config_loader().get_group_options("experiment"))
    if name not in known:
        raise ConfigError(f"experiment={name!r} is invalid: there is no such experiment. "
                          f"Valid: {known}.")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    from nnlab.train import run

    hydra_cfg = HydraConfig.get()
    experiment = hydra_cfg.runtime.choices.get("experiment")
    tags = {"nnlab.experiment": str(experiment or "none")}
    overrides = list(hydra_cfg.overrides.task)
    if hydra_cfg.mode.name != "MULTIRUN":
        try:
            check_experiment(experiment)
            return run(cfg, overrides, hydra_cfg.runtime.output_dir, tags)
        except ConfigError as err:
            print(f"nnlab: error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            sys.exit(130)  # the run is KILLED and its checkpoint kept (see nnlab.train.run)
        except RuntimeError as err:
            if type(err).__name__ == "TrackingError":  # e.g. the tracking server lost mid-run
                print(f"nnlab: error: {err}", file=sys.stderr)
                sys.exit(1)
            if type(err).__name__ != "Diverged":
                raise
            print(f"nnlab: error: the run diverged and ended FAILED: {err}", file=sys.stderr)
            sys.exit(1)

    # One job of a sweep: a failure is recorded (its MLflow run is already FAILED) and the
    # sweep goes on; nnlab.sweep.SweepReport prints the summary and exits 1 after the last job.
    from nnlab.sweep import record_job

    tags["nnlab.sweep_id"] = Path(hydra_cfg.sweep.dir).name
    tags["nnlab.job_num"] = str(hydra_cfg.job.num)
    try:
        check_experiment(experiment)
        value = run(cfg, overrides, hydra_cfg.runtime.output_dir, tags)
    except Exception as err:
        message = f"{type(err).__name__}: {err}"
        print(f"nnlab: job {hydra_cfg.job.num} failed: {message}", file=sys.stderr, flush=True)
        record_job(hydra_cfg.sweep.dir, hydra_cfg.job.num, overrides, message)
        return math.nan
    record_job(hydra_cfg.sweep.dir, hydra_cfg.job.num, overrides, None)
    return value


if __name__ == "__main__":
    main()
