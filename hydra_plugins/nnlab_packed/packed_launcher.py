"""`hydra/launcher=packed`: trains a sweep's same-shape jobs together. A shell: its config and a
Launcher that hands the sweep to nnlab.packed.launch.PackedSweep.

No `from __future__ import annotations` here: Hydra scans plugin modules without registering them
in sys.modules, where dataclasses cannot resolve string annotations.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class PackedLauncherConf:
    _target_: str = "hydra_plugins.nnlab_packed.packed_launcher.PackedLauncher"
    max_members: int = 64  # a larger pack splits (also when it would not fit the memory)
    pack_convs_on_cpu: bool = False  # CNNs are compute-bound on a CPU: solo runs are as fast
    cpu_threads: int = 1  # torch intra-op threads while a pack trains on the CPU (0: unchanged)


ConfigStore.instance().store(group="hydra/launcher", name="packed", node=PackedLauncherConf,
                             provider="nnlab")


class PackedLauncher(Launcher):
    def __init__(self, max_members: int = 64, pack_convs_on_cpu: bool = False,
                 cpu_threads: int = 1) -> None:
        super().__init__()
        self.options = {"max_members": max_members, "pack_convs_on_cpu": pack_convs_on_cpu,
                        "cpu_threads": cpu_threads}
        self.sweep = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        # lazy: Hydra imports every plugin on each start, and nnlab.packed loads torch
        from nnlab.packed.launch import PackedSweep

        self.sweep = PackedSweep(hydra_context, task_function, config, **self.options)

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        return self.sweep.launch(job_overrides, initial_job_idx)
