"""hydra-submitit-launcher's launchers, except that a job which dies without a result (cancelled,
killed, timed out, node failure) is recorded as failed for the sweep summary (nnlab.jobs) instead
of aborting the whole sweep, so every other job's result is still collected.
conf/hydra/launcher/submitit_{local,slurm}.yaml select them, with nnlab's defaults."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import config as plugin_config
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as plugin
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class _Launch:
    """`launch` of hydra-submitit-launcher 1.2 (BaseSubmititLauncher.launch), collecting each job
    on its own."""

    config: Any
    params: dict[str, Any]
    _EXECUTOR: str

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and len(job_overrides) > 0
        init_keys = {"max_num_timeout"}
        init_params = {f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k in init_keys}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR,
                                         folder=self.params["submitit_folder"], **init_params)
        base = set(OmegaConf.structured(plugin_config.BaseQueueConf).keys())
        executor.update_parameters(**{
            k if k in base else f"{self._EXECUTOR}_{k}": v
            for k, v in self.params.items() if k not in init_keys | {"submitit_folder"}
        })
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                               Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params, strict=True))
        return [self._collect(job, params[0], params[2], sweep_dir)
                for job, params in zip(jobs, job_params, strict=True)]

    def _collect(self, job: Any, overrides: list[str], num: int, sweep_dir: Path) -> JobReturn:
        """The job's own JobReturn (rank 0's), or, for a job that died without one, a
        completed JobReturn worth NaN after recording the failure (as nnlab's task function
        does for a job that raised)."""
        import submitit

        from nnlab.jobs import record_job  # lazy: Hydra imports plugins on every start

        try:
            return job.results()[0]
        except (submitit.core.utils.UncompletedJobError,
                submitit.core.utils.FailedJobError) as err:
            first = str(err).strip().splitlines()
            why = f"{self._EXECUTOR} job {job.job_id} ended {job.state} without a result"
            print(f"nnlab: job {num} failed: {why}", file=sys.stderr, flush=True)
            record_job(sweep_dir, num, filter_overrides(overrides),
                       f"{why} ({first[0] if first else type(err).__name__}); "
                       f"its logs: {job.paths.stderr}")
            return JobReturn(overrides=list(overrides), working_dir=str(sweep_dir / str(num)),
                             status=JobStatus.COMPLETED, _return_value=math.nan)


class LocalLauncher(_Launch, plugin.LocalLauncher):
    """submitit's local executor: each job its own process on this machine."""


class SlurmLauncher(_Launch, plugin.SlurmLauncher):
    """submitit's SLURM executor: the sweep is one job array."""
