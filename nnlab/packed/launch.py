"""The packed launcher's work (hydra_plugins/nnlab_packed is its shell): trains a sweep's
same-shape jobs together.

Each job's config is composed as the basic launcher composes it. Jobs that differ only in packable
keys (seed, init, optimiser lr / momentum / weight decay, dropout rate) train as one pack, each
member into its own MLflow run; every other job runs the normal way, one after another. The
launcher prints which jobs packed and why the others did not.

A pack keeps a checkpoint (every `checkpoint.every_n_steps` steps and when SIGTERM / Ctrl-C stops
it); with `sweep.resume=true` the same sweep command skips the jobs whose config already has a
FINISHED run, continues a killed pack in its members' own runs when all of them are in the sweep,
and runs the rest (a killed pack that cannot continue trains afresh).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict, read_write

from nnlab.config import validate
from nnlab.errors import ConfigError
from nnlab.jobs import look_up, record_job
from nnlab.packed.checkpoint import PackResume, pack_run_ids
from nnlab.packed.members import Member, build_members
from nnlab.packed.plan import members_that_fit, model_unpackable, pack_key, unpackable
from nnlab.packed.runner import run_pack
from nnlab.quiet import quiet
from nnlab.tracking import open_tracker, tags
from nnlab.tracking.life import job_tags, monitored_value

log = logging.getLogger(__name__)
PLAN_FILE = "packs.json"  # in the sweep folder: which jobs packed, which ran solo and why


@dataclass
class Job:
    num: int
    overrides: list[str]
    config: DictConfig  # with its hydra node
    task_cfg: DictConfig | None = None
    reason: str | None = None  # why it runs solo


def task_config(config: DictConfig) -> DictConfig:
    """The job's config without its hydra node, as run_job hands it to the task."""
    task_cfg = copy.deepcopy(config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    return task_cfg


def group_jobs(jobs: Sequence[Job]) -> list[list[Job]]:
    """Groups of jobs that can pack (2 or more each); the others get a `reason`."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        previous = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(job.config)
        try:
            job.task_cfg = task_config(job.config)
            validate(job.task_cfg)
            job.reason = unpackable(job.task_cfg)
            if job.reason is None:
                groups.setdefault(pack_key(job.task_cfg), []).append(job)
        except ConfigError:
            job.reason = "its config is invalid (the job reports why)"
        finally:
            HydraConfig.instance().cfg = previous
    packs = []
    for group in groups.values():
        if len(group) == 1:
            group[0].reason = "no other job of the sweep differs from it only in packable keys"
        else:
            packs.append(group)
    return packs


class PackedSweep:
    """One sweep through hydra/launcher=packed: what the plugin's launcher hands over."""

    def __init__(self, hydra_context: HydraContext, task_function: TaskFunction,
                 config: DictConfig, max_members: int = 64, pack_convs_on_cpu: bool = False,
                 cpu_threads: int = 1) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config
        self.cpu_threads = cpu_threads or None
        self.max_members = max_members
        self.pack_convs_on_cpu = pack_convs_on_cpu

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        quiet()  # importing this module loaded Lightning, which resets its loggers' levels
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        jobs = []
        for i, overrides in enumerate(job_overrides):
            config = self.hydra_context.config_loader.load_sweep_config(self.config,
                                                                        list(overrides))
            with open_dict(config):
                config.hydra.job.id = config.hydra.job.num = initial_job_idx + i
            jobs.append(Job(initial_job_idx + i, list(overrides), config))
        packs = group_jobs(jobs)
        returns: dict[int, JobReturn] = {}
        packed: list[dict[str, Any]] = []
        for k, group in enumerate(packs):
            packed += self._run_group(group, f"{sweep_dir.name}/pack{k}", returns)
        solo = [job for job in jobs if job.num not in returns]
        report_plan(sweep_dir, packed, solo, final=bool(solo))
        for job in solo:
            log.info(f"\t#{job.num} : {' '.join(filter_overrides(job.overrides))}")
            returns[job.num] = self._run_solo(job)
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        report_plan(sweep_dir, packed, solo, final=True)
        return [returns[job.num] for job in jobs]

    def _run_solo(self, job: Job) -> JobReturn:
        return run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                       config=job.config, job_dir_key="hydra.sweep.dir",
                       job_subdir_key="hydra.sweep.subdir")

    def _prepare(self, job: Job) -> tuple[JobReturn, dict[str, Any]]:
        """Hydra's own job set-up (output folder, .hydra/ files, job callbacks) with a task that
        only notes what the member's run needs; the pack trains afterwards."""
        seen: dict[str, Any] = {}

        def note(task_cfg: DictConfig) -> None:
            validate(task_cfg)  # defaults filled in, as a solo run's (its config hash too)
            hydra_cfg = HydraConfig.get()
            seen.update(cfg=task_cfg, output_dir=Path(hydra_cfg.runtime.output_dir),
                        sweep_dir=Path(hydra_cfg.sweep.dir),
                        overrides=list(hydra_cfg.overrides.task), tags=job_tags(hydra_cfg))

        ret = run_job(hydra_context=self.hydra_context, task_function=note, config=job.config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        return ret, seen

    def _run_group(self, group: list[Job], pack_id: str,
                   returns: dict[int, JobReturn]) -> list[dict[str, Any]]:
        """Train one group as one or more packs; sets `reason` on jobs that fall back to solo."""
        prepared = [self._prepare(job) for job in group]
        members = [Member(seen["cfg"], seen["overrides"], seen["output_dir"], seen["tags"],
                          sweep_dir=seen["sweep_dir"]) for _, seen in prepared]
        try:
            built = build_members(members)
        except Exception as err:  # e.g. a data set that cannot load: each solo job says why
            for job in group:
                job.reason = f"building the pack failed ({type(err).__name__})"
            return []
        cfg = members[0].cfg
        gpu = torch.cuda.is_available() and str(cfg.accelerator.accelerator) != "cpu"
        device = torch.device("cuda" if gpu else "cpu")
        reason = model_unpackable(built[1][0].model, device, self.pack_convs_on_cpu)
        if reason is not None:
            for job in group:
                job.reason = reason
            return []
        fits = members_that_fit(built, device)
        size = min(self.max_members, fits)
        left, parts = list(range(len(group))), []
        if members[0].cfg.get("sweep", {}).get("resume"):
            left, parts = previous_packs(group, prepared, members, returns)
        for start in range(0, len(left), size):
            name = pack_id if size >= len(left) else f"{pack_id}.{start // size}"
            parts.append((name, left[start:start + size], None))
        done = []
        for name, part, resume in parts:
            try:
                run_pack([members[i] for i in part], name, tuple([b[i] for i in part]
                                                                 for b in built),
                         self.cpu_threads, resume)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # the members' runs are FAILED; the sweep goes on
                print(f"nnlab: pack {name} failed: {type(err).__name__}: {err}",
                      file=sys.stderr, flush=True)
                for i in part:
                    members[i].error = members[i].error or f"{type(err).__name__}: {err}"
            for i in part:
                job, (ret, _), member = group[i], prepared[i], members[i]
                ret.return_value = member.result if member.error is None else math.nan
                ret.status = JobStatus.COMPLETED
                record_job(job.config.hydra.sweep.dir, job.num, job.overrides, member.error,
                           "run" if resume is None else "resumed")
                returns[job.num] = ret
            done.append({"pack": name, "jobs": [group[i].num for i in part],
                         "members": len(part), "fit_in_memory": fits,
                         "device": device.type})
        return done


def previous_packs(group: list[Job], prepared: list[tuple[JobReturn, dict[str, Any]]],
                   members: list[Member], returns: dict[int, JobReturn]
                   ) -> tuple[list[int], list]:
    """`sweep.resume=true` (the decision nnlab.jobs.look_up makes for a solo job): jobs
    whose config has a FINISHED run are recorded skipped; a killed pack (an earlier sweep's)
    whose members are all in this group continues from its checkpoint. Returns the jobs left
    to train (indices into `group`) and the packs to resume as (pack name, indices in the
    pack's order, PackResume); the left jobs' runs an earlier sweep left RUNNING end KILLED
    (superseded)."""
    tracker = open_tracker(members[0].cfg)
    left, previous, by_ckpt = [], {}, {}
    for i, member in enumerate(members):
        previous[i] = found = look_up(tracker, member.cfg, member.tags[tags.SWEEP_ID])
        if found.finished is not None:
            print(f"nnlab: skipped: run {found.finished.info.run_id} of job {group[i].num}'s "
                  "config already FINISHED", flush=True)
            ret = prepared[i][0]
            ret.return_value = monitored_value(found.finished.data.metrics)
            ret.status = JobStatus.COMPLETED
            record_job(group[i].config.hydra.sweep.dir, group[i].num, group[i].overrides,
                       None, "skipped")
            returns[group[i].num] = ret
            continue
        left.append(i)
        prev = found.resumable(packed=True)
        if prev is not None:
            by_ckpt.setdefault(prev.data.tags[tags.CHECKPOINT], {})[prev.info.run_id] = (i,
                                                                                      prev)
    parts = []
    for ckpt, here in by_ckpt.items():
        run_ids = pack_run_ids(Path(ckpt))
        if sorted(run_ids, key=str) != sorted(here):  # some members are not in this sweep
            continue
        order = [here[run_id] for run_id in run_ids]
        parts.append((order[0][1].data.tags[tags.PACK], [i for i, _ in order],
                      PackResume(Path(ckpt), [run for _, run in order])))
        left = [i for i in left if i not in {j for j, _ in order}]
    for i in left:  # killed outright before a checkpoint, or not resumable together
        previous[i].supersede(tracker.client)
    return left, parts


def report_plan(sweep_dir: Path, packed: list[dict[str, Any]], solo: list[Job],
                final: bool = False) -> None:
    """Which jobs packed and why the others did not (printed, and kept in packs.json)."""
    lines = [f"nnlab: packed launcher: {sum(p['members'] for p in packed)} job(s) in "
             f"{len(packed)} pack(s), {len(solo)} run solo"
             + (":" if packed or solo else ".")]
    for p in packed:
        lines.append(f"  pack {p['pack']}: jobs {p['jobs']} (on the {p['device']}, "
                     f"{p['fit_in_memory']} such members would fit half its free memory)")
    for job in solo:
        lines.append(f"  solo job {job.num} ({' '.join(job.overrides) or 'no overrides'}): "
                     f"{job.reason}")
    if final:  # printed before the solo runs start and again after them
        print("\n".join(lines), flush=True)
    (sweep_dir / PLAN_FILE).write_text(json.dumps({
        "packs": packed, "solo": [{"job": j.num, "overrides": j.overrides,
                                   "reason": j.reason} for j in solo]}, indent=1))
