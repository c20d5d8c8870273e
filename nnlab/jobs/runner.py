"""One sweep job, and the skip/resume decision every launcher makes for it.

With `sweep.resume=true` a job first looks in the target experiment for runs of the same config
(`nnlab.config_hash`): one FINISHED -> the job is skipped; an earlier sweep's run killed with a
checkpoint on disk -> it is resumed into the same run (a solo run by `run_job`, a pack's members
together by hydra/launcher=packed); otherwise the earlier runs left RUNNING end KILLED
(superseded) and the job runs as usual."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnlab.config import config_hash, validate
from nnlab.engine import train_one
from nnlab.tracking import Tracker, open_tracker
from nnlab.tracking.life import monitored_value
from nnlab.tracking.tags import CHECKPOINT, CONFIG_HASH, PACK, PARENT, SWEEP_ID


@dataclass
class Previous:
    """What the store already holds of a job's config."""

    finished: Any | None  # a FINISHED run: the job is skipped, with this run's value
    unfinished: list[Any]  # an earlier sweep's KILLED or RUNNING runs of it, newest first

    def resumable(self, packed: bool) -> Any | None:
        """The newest unfinished run whose checkpoint is on disk, trained in a pack or solo. A
        solo run that FAILED starts afresh; a pack member that FAILED (it diverged alone) goes
        with its pack, and stays FAILED."""
        for run in self.unfinished:
            ckpt = run.data.tags.get(CHECKPOINT)
            if (PACK in run.data.tags) != packed or (run.info.status == "FAILED" and not packed):
                continue
            if ckpt and Path(ckpt).is_file():
                return run
        return None

    def supersede(self, client: Any) -> None:
        """The unfinished runs left RUNNING (killed outright before a checkpoint they can
        resume from) end KILLED: the job's new run replaces them."""
        for run in self.unfinished:
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")


def look_up(tracker: Tracker, cfg: DictConfig, sweep_id: str | None) -> Previous:
    """The runs of this (validated) config in the target experiment. This very sweep's runs
    are left out of `unfinished` (another rank of this job, a twin job may still run them).
    Ends KILLED the parent run of an earlier sweep killed with one of them unfinished."""
    client = tracker.client
    found = client.search_runs([tracker.experiment_id],
                               f"tags.`{CONFIG_HASH}` = '{config_hash(cfg)}'",
                               order_by=["attributes.start_time DESC"])
    finished = next((r for r in found if r.info.status == "FINISHED"), None)
    unfinished = [r for r in found if r.info.status != "FINISHED"
                  and (sweep_id is None or r.data.tags.get(SWEEP_ID) != sweep_id)]
    for run in unfinished:
        parent = run.data.tags.get(PARENT)
        if parent and client.get_run(parent).info.status == "RUNNING":
            client.set_terminated(parent, "KILLED")
    return Previous(finished, unfinished)


def run_job(cfg: DictConfig, overrides: Sequence[str], output_dir: str,
            tags: dict[str, str], sweep_dir: str) -> tuple[float, str]:
    """One sweep job run solo: (the monitored value, how: run, skipped or resumed)."""
    if not cfg.get("sweep", {}).get("resume") or cfg.get("resume"):
        return train_one(cfg, overrides, output_dir, tags, sweep_dir), "run"
    validate(cfg)  # the hash is of the config as it runs, defaults filled in
    tracker = open_tracker(cfg)
    previous = look_up(tracker, cfg, tags.get(SWEEP_ID))
    if previous.finished is not None:
        print(f"nnlab: skipped: run {previous.finished.info.run_id} of this config already "
              "FINISHED", flush=True)
        return monitored_value(previous.finished.data.metrics), "skipped"
    resumable = previous.resumable(packed=False)  # a pack's: hydra/launcher=packed resumes it
    if resumable is not None:
        resumed = OmegaConf.merge(cfg, {"resume": resumable.info.run_id})
        return train_one(resumed, [f"resume={resumable.info.run_id}"], output_dir), "resumed"
    previous.supersede(tracker.client)
    return train_one(cfg, overrides, output_dir, tags, sweep_dir), "run"
