"""One sweep job, solo: with `sweep.resume=true` a job first looks in the target experiment for a
run of the same config (`nnlab.config_hash`): FINISHED -> skipped; killed or interrupted with a
checkpoint -> resumed into the same run; otherwise run as usual. hydra/launcher=packed makes the
same decision for a killed pack (previous_runs and earlier_unfinished are shared with it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnlab.config import config_hash, validate
from nnlab.engine import train_one
from nnlab.tracking import open_tracker
from nnlab.tracking.tags import CHECKPOINT, CONFIG_HASH, PACK, PARENT, SWEEP_ID


def previous_runs(tracker: Any, cfg: DictConfig) -> list[Any]:
    """The target experiment's runs of this (validated) config, newest first."""
    return tracker.client.search_runs([tracker.experiment_id],
                                      f"tags.`{CONFIG_HASH}` = '{config_hash(cfg)}'",
                                      order_by=["attributes.start_time DESC"])


def earlier_unfinished(client: Any, found: list[Any], sweep_id: str | None) -> list[Any]:
    """`found` less the runs of this very sweep (they may still be running: another rank of this
    job, a twin job): only an earlier sweep's unfinished runs are resumed or superseded. Ends
    KILLED the parent run of an earlier sweep that was killed with one of them unfinished."""
    found = [r for r in found if sweep_id is None or r.data.tags.get(SWEEP_ID) != sweep_id]
    for prev in found:
        parent = prev.data.tags.get(PARENT)
        if prev.info.status != "FINISHED" and parent and \
                client.get_run(parent).info.status == "RUNNING":
            client.set_terminated(parent, "KILLED")
    return found


def supersede(client: Any, found: Sequence[Any]) -> None:
    """An earlier sweep's runs left RUNNING (killed outright before a checkpoint they can resume
    from) end KILLED: a new run of the same config replaces them."""
    for prev in found:
        if prev.info.status == "RUNNING":
            client.set_terminated(prev.info.run_id, "KILLED")


def run_job(cfg: DictConfig, overrides: Sequence[str], output_dir: str,
            tags: dict[str, str], sweep_dir: str) -> tuple[float, str]:
    """One sweep job: (the monitored value, how: run, skipped or resumed)."""
    if not cfg.get("sweep", {}).get("resume") or cfg.get("resume"):
        return train_one(cfg, overrides, output_dir, tags, sweep_dir), "run"
    validate(cfg)  # the hash is of the config as it runs, defaults filled in
    tracker = open_tracker(cfg)
    client = tracker.client
    found = previous_runs(tracker, cfg)
    for prev in found:
        if prev.info.status == "FINISHED":
            value = monitored_value(prev)
            print(f"nnlab: skipped: run {prev.info.run_id} of this config already FINISHED",
                  flush=True)
            return value, "skipped"
    found = earlier_unfinished(client, found, tags.get(SWEEP_ID))
    for prev in found:  # KILLED, or RUNNING when its process was killed outright
        ckpt = prev.data.tags.get(CHECKPOINT)
        if prev.info.status in ("KILLED", "RUNNING") and ckpt and Path(ckpt).is_file() \
                and PACK not in prev.data.tags:  # a pack's checkpoint: hydra/launcher=packed
            resumed = OmegaConf.merge(cfg, {"resume": prev.info.run_id})
            return train_one(resumed, [f"resume={prev.info.run_id}"], output_dir), "resumed"
    supersede(client, found)
    return train_one(cfg, overrides, output_dir, tags, sweep_dir), "run"


def monitored_value(run: Any) -> float:
    """What the finished run returned to the sweeper: val/acc, or val/r2 for regression."""
    metrics = run.data.metrics
    return float(metrics.get("val/acc", metrics.get("val/r2", float("nan"))))
