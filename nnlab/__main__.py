"""`python -m nnlab` / `nnlab`: compose the config with Hydra, then validate, build and run."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nnlab.config import ConfigError, register_configs

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

register_configs()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    from nnlab.train import run

    hydra_cfg = HydraConfig.get()
    tags = {"nnlab.experiment": str(hydra_cfg.runtime.choices.get("experiment") or "none")}
    if hydra_cfg.mode.name == "MULTIRUN":
        tags["nnlab.sweep_id"] = Path(hydra_cfg.sweep.dir).name
        tags["nnlab.job_num"] = str(hydra_cfg.job.num)
    try:
        return run(cfg, hydra_cfg.overrides.task, hydra_cfg.runtime.output_dir, tags)
    except ConfigError as err:
        print(f"nnlab: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
