"""nnlab.train and nnlab.sweep: the CLI's own job, composed and launched by Hydra in this process.

Hydra's run and multirun (the sweeper, the launcher named by `hydra/launcher`, the callbacks)
are driven as `python -m nnlab` drives them, with three differences a notebook needs: Hydra is
initialised for the call only (the caller's own Hydra state is put back), it configures no
logging (no log files, the notebook's loggers untouched), and errors come back as exceptions.
The working directory never changes (nnlab's `hydra.job.chdir` is false).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking._tracking_service import utils as mlflow_stores  # its store cache
from omegaconf import DictConfig, open_dict, read_write

# The CLI's own job function and config folder: the API runs exactly what `python -m nnlab`
# runs. Importing it also registers nnlab's schema with Hydra and its warning filter.
from nnlab.__main__ import config_dir, job
from nnlab.api._results import RunResult, SweepResult
from nnlab.config.launch import LaunchRefused
from nnlab.config.messages import config_error_message
from nnlab.errors import ConfigError
from nnlab.jobs.records import read_jobs, summary
from nnlab.quiet import quiet
from nnlab.tracking import open_tracker
from nnlab.tracking.parent import kill_open_parent_runs
from nnlab.tracking.tracker import find_run

CONFIG_NAME = "config"
TASK_NAME = "__main__"  # hydra.job.name as `python -m nnlab` has it (SLURM job names use it)
NO_LOGGING = ("hydra/job_logging=none", "hydra/hydra_logging=none")  # no log files, no handlers
WATCH = "hydra.callbacks.nnlab_api"  # the callback that tells the API its sweep's folder


@contextmanager
def hydra_app(user_config_dir: str | Path | None = None) -> Iterator[Hydra]:
    """Hydra on nnlab's configs, with `user_config_dir` first on the search path as
    `--config-dir` puts it; whatever Hydra state the caller had is restored afterwards."""
    search_path = create_config_search_path(config_dir())
    if user_config_dir is not None:
        folder = Path(user_config_dir).resolve()
        if not folder.is_dir():
            raise ConfigError(f"config_dir={user_config_dir!r} is invalid: no such folder "
                              f"({folder}). Valid: a folder of your own config groups, as "
                              "for --config-dir.")
        search_path.prepend("command-line", f"file://{folder}")
    global_hydra = GlobalHydra.instance()
    callers = global_hydra.hydra if global_hydra.is_initialized() else None
    global_hydra.clear()
    try:
        yield Hydra.create_main_hydra2(TASK_NAME, search_path)
    finally:
        global_hydra.clear()
        if callers is not None:
            global_hydra.initialize(callers)


def compose(*overrides: str, config_dir: str | Path | None = None) -> DictConfig:
    """The config `python -m nnlab OVERRIDES` would run, composed and nothing run (no hydra
    node), whatever Hydra state the caller has."""
    with hydra_app(config_dir) as app:
        cfg = app.compose_config(CONFIG_NAME, [*NO_LOGGING, *overrides], run_mode=RunMode.RUN)
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


_LAST_CWD: list[Path] = []


def follow_working_directory() -> None:
    """A relative store (the default `sqlite:///mlruns/mlflow.db`) means the folder the call is
    made from, as for the CLI. MLflow caches its stores and their database engines by URI text,
    so after a `%cd` it would go on writing to the first folder's store: on a change of folder,
    the cached relative sqlite stores are dropped (MLflow's own caches; guarded, as they are
    not public)."""
    here = Path.cwd()
    if _LAST_CWD and _LAST_CWD[-1] != here:
        registry = mlflow_stores._tracking_store_registry
        cached = getattr(registry, "_get_store_with_resolved_uri", None)
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()
        engines = getattr(SqlAlchemyStore, "_engine_map", {})
        for uri in [u for u in engines if u.startswith("sqlite:///")
                    and not u.startswith("sqlite:////")]:
            engines.pop(uri).dispose()
    _LAST_CWD[:] = [here]


def _overrides(given: Sequence[str], mode: str, *extra: str) -> list[str]:
    """The user's overrides after nnlab's quiet defaults (a user's own hydra/*_logging wins),
    then the run mode as Hydra's command line appends it (`hydra.mode=RUN|MULTIRUN`)."""
    given = [str(o) for o in given]
    own = {o.split("=", 1)[0].lstrip("+~") for o in given}
    quiet_logs = [o for o in NO_LOGGING if o.split("=", 1)[0] not in own]
    return [*quiet_logs, *given, *extra, f"hydra.mode={mode}"]


def _resumed_run(cfg: DictConfig) -> str | None:
    """The run `resume=` continues (None: a new run); resume=last found as train_one finds it."""
    spec = str(cfg.get("resume") or "")
    if spec != "last":
        return spec or None
    try:
        return find_run(open_tracker(cfg), "last").info.run_id
    except Exception:  # no such run: train_one says so in its own words
        return None


def train(*overrides: str, config_dir: str | Path | None = None) -> RunResult:
    """Train one run, as `python -m nnlab OVERRIDES` does: the same config, validation, MLflow
    run, tags and artifacts. `overrides` are the CLI's strings ("model=lenet5", "init=kaiming",
    "trainer.max_epochs=3"); `config_dir` is `--config-dir` (a folder of your own config groups).

    Returns the finished run (status, final metrics, config, per-epoch history, `.model`). A bad
    value raises nnlab.errors.ConfigError with the CLI's paragraph before anything runs; a loss
    that turns NaN raises nnlab.errors.Diverged (the run ends FAILED); Ctrl-C (the kernel's
    interrupt) stops training at the next batch, ends the run KILLED with its checkpoint and
    raises KeyboardInterrupt.

        nnlab.train("model=lenet5", "init=kaiming_normal", "activation=relu")
    """
    quiet()
    follow_working_directory()
    seen: dict[str, Any] = {}

    def one_run(cfg: DictConfig) -> float:
        seen.update(cfg=cfg, output_dir=HydraConfig.get().runtime.output_dir,
                    resumed=_resumed_run(cfg))
        try:
            return job(cfg)
        except Exception as err:  # raised after Hydra's run, without its "Error executing" line
            seen["error"] = err
            return float("nan")

    try:
        with hydra_app(config_dir) as app:
            app.run(CONFIG_NAME, one_run, _overrides(overrides, "RUN"),
                    with_log_configuration=False)
    except LaunchRefused as refused:  # checked before Hydra made anything
        raise ConfigError(config_error_message(refused.error)) from None
    except Exception as err:  # composition: a bad override, option or value
        message = config_error_message(err)
        if message is None:
            raise
        raise ConfigError(message) from None
    error = seen.get("error")
    if error is not None:
        message = config_error_message(error) if isinstance(error, ConfigError) else None
        if message is not None:
            raise ConfigError(message) from None
        raise error
    return RunResult.of_output(seen["cfg"], seen["output_dir"], seen["resumed"])


class _SweepWatch(Callback):
    """Notes the sweep's folder at its start (where its jobs' records and parent run live)."""

    started: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _SweepWatch.started.append(str(config.hydra.sweep.dir))


def sweep(*overrides: str, launcher: str | None = None,
          config_dir: str | Path | None = None) -> SweepResult:
    """Run a sweep, as `python -m nnlab -m OVERRIDES` does: the same sweep syntax
    ("init=xavier,kaiming", "seed=range(0,3)", "experiment=init_study"), one MLflow run per job
    under one parent run. `launcher` names a Hydra launcher ("basic", "packed", "joblib",
    "submitit_local", ...); None keeps the CLI's default (basic, or the experiment's own).

    Returns every job in one DataFrame (`.table`: one row per job, the options that vary as
    columns, status and final metrics). A failed job does not stop the sweep: its row says
    FAILED and why. A bad value raises ConfigError with the CLI's paragraph; Ctrl-C ends the
    running job and the sweep's run KILLED and raises KeyboardInterrupt.

        nnlab.sweep("model=lenet5", "init=xavier_normal,kaiming_normal", "activation=sigmoid,relu")
    """
    quiet()
    follow_working_directory()
    chosen = [f"hydra/launcher={launcher}"] if launcher else []
    watch = f"+{WATCH}._target_={__name__}._SweepWatch"
    _SweepWatch.started.clear()
    try:
        with hydra_app(config_dir) as app:
            app.multirun(CONFIG_NAME, job, _overrides(overrides, "MULTIRUN", *chosen, watch),
                         with_log_configuration=False)
    except LaunchRefused as refused:
        raise ConfigError(config_error_message(refused.error)) from None
    except KeyboardInterrupt:
        kill_open_parent_runs()  # the jobs' own runs are already KILLED, as the CLI's
        raise
    except SystemExit:  # nnlab's SweepReport: some job failed (its row says so)
        if not _SweepWatch.started:
            raise
    except Exception as err:
        message = config_error_message(err)
        if message is None:
            raise
        raise ConfigError(message) from None
    sweep_dir = _SweepWatch.started[-1]
    if not read_jobs(sweep_dir):  # e.g. seed='range(0,0)': the CLI prints this paragraph
        raise ConfigError(summary([])[0].removeprefix("nnlab: error: "))
    return SweepResult.of_sweep(sweep_dir)

