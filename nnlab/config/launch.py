"""The Hydra callback that checks a launch before Hydra acts on it: the launcher's parameters
(joblib's n_jobs, the packed launcher's max_members), the run or sweep folder, and a single run's
whole config, before Hydra creates any folder or starts a job (conf/config.yaml,
hydra.callbacks). A refused input therefore leaves nothing behind."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict

from nnlab.config.checks import check_launch, validate
from nnlab.errors import ConfigError

# run folder -> the highest of its folders that did not exist before Hydra made them
NEW_FOLDERS: dict[Path, Path] = {}


def note_new_folders(folder: str) -> None:
    """Remember which folders of `folder` Hydra is about to create (see forget_new_folders)."""
    path = top = Path(os.path.abspath(folder))
    while not top.parent.exists():
        top = top.parent
    if not path.exists():
        NEW_FOLDERS[path] = top


def forget_new_folders(folder: str | Path) -> None:
    """A refused run leaves no folder: the run folder and the folders above it that Hydra made
    for it go, when they hold nothing but Hydra's own files (.hydra/, an empty job log)."""
    import shutil

    path = Path(os.path.abspath(folder))
    top = NEW_FOLDERS.pop(path, None)
    if top is None or not path.is_dir():
        return
    if any(p.name != ".hydra" and not (p.suffix == ".log" and p.stat().st_size == 0)
           for p in path.iterdir()):
        return
    shutil.rmtree(path, ignore_errors=True)
    while path != top and not any(path.parent.iterdir()):
        path = path.parent
        path.rmdir()


class LaunchRefused(BaseException):
    """A ConfigError raised out of a Hydra callback. A BaseException, because Hydra turns a
    callback's Exception into a warning and goes on; `python -m nnlab` prints `error` as its
    one paragraph (exit 2), nnlab.train / nnlab.sweep raise it."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


def refusing(check: Callable[[], None]) -> None:
    """Run `check`; a ConfigError stops the launch before Hydra makes anything (LaunchRefused)."""
    try:
        check()
    except ConfigError as err:
        raise LaunchRefused(err) from None


def _validate_task(config: DictConfig) -> None:
    """The run's config as the job will see it (no hydra node), checked as the job checks it."""
    if config.get("resume"):  # a resumed run is checked with its own logged config
        return
    task = copy.deepcopy(config)
    with open_dict(task):
        del task["hydra"]
    try:
        validate(task)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - e.g. a ${hydra:...} value: the job checks it again
        pass


class CheckLaunch(Callback):
    """Refuse (exit 2, one paragraph) a launch whose folder, launcher or config cannot work."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        refusing(lambda: (check_launch(config, multirun=False), _validate_task(config)))
        note_new_folders(str(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        refusing(lambda: check_launch(config, multirun=True))  # each job checks its own values
