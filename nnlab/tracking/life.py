"""The run ceremony every path shares (a solo run, DDP rank 0, each member of a pack): open a
run with what every run records first, reopen a stopped one, map how its block ended to a final
status, a job's tags, the metric a task's sweepers optimise, and the closing line."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnlab import __version__
from nnlab.config import GROUPS, config_hash
from nnlab.errors import Diverged, TrackingError
from nnlab.tracking import tags
from nnlab.tracking.parent import parent_run_id
from nnlab.tracking.secrets import redact_text
from nnlab.tracking.tracker import Tracker, flatten

# What a task's sweepers optimise and a run returns, per data set task.
MONITORED = {"classification": "val/acc", "regression": "val/r2"}


def monitored_value(metrics: Mapping[str, float]) -> float:
    """A run's monitored metric from its metrics (whichever of MONITORED it logged), else nan."""
    found = [float(metrics[name]) for name in MONITORED.values() if name in metrics]
    return found[0] if found else float("nan")


@dataclass
class RunRecord:
    """What a run records about its model and data before training: built by the engine."""

    summary: str  # torchinfo's model summary
    num_params: int
    dataset: str  # the data set's config name
    source: str  # its class (the `_target_`)
    digest: str
    profile: Mapping[str, Any]


def open_run(tracker: Tracker, cfg: DictConfig, overrides: Sequence[str],
             extra_tags: Mapping[str, str], record: RunRecord, checkpoint: Path,
             sweep_dir: str | Path | None = None) -> None:
    """Start the run (every config leaf as a param, the job's tags, nested under its sweep's
    run) and log what every run logs first; a failure while logging ends it FAILED."""
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    params["model.num_params"] = record.num_params
    found = {**run_tags(cfg, overrides, extra_tags), tags.CHECKPOINT: str(checkpoint)}
    if sweep_dir is not None:
        found[tags.PARENT] = parent_run_id(tracker, sweep_dir)
    tracker.start(cfg.mlflow.run_name, params, found)
    try:
        tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        tracker.log_text("\n".join(overrides) + "\n", "overrides.txt")
        tracker.log_text(record.summary, "model_summary.txt")
        tracker.log_metrics({"model/params": record.num_params})
        tracker.log_dataset(record.dataset, record.digest, record.source, record.profile)
    except BaseException as err:
        tracker.end(*end_status(err))
        if not isinstance(err, Exception) or isinstance(err, TrackingError):
            raise
        raise TrackingError(
            f"run {tracker.run_id} ended FAILED: its first artifacts could not be stored "
            f"({type(err).__name__}: {err}). Check that mlflow.artifact_root="
            f"{cfg.mlflow.get('artifact_root')} is a folder this process can write (a "
            "tracking server keeps its own).") from err


def reopen_run(tracker: Tracker, run_id: str, checkpoint: Path) -> dict[str, int]:
    """A stopped run RUNNING again, to continue from `checkpoint`; each metric's last step."""
    logged = tracker.reopen(run_id)
    tracker.set_tags({tags.RESUMED_FROM: checkpoint.name})
    return logged


def end_status(err: BaseException | None) -> tuple[str, BaseException | None]:
    """How a run's block ended, as (final status, the error to keep): FINISHED, KILLED for
    Ctrl-C or SIGTERM (Lightning raises SystemExit), FAILED for anything else."""
    if err is None:
        return "FINISHED", None
    if isinstance(err, KeyboardInterrupt | SystemExit):
        why = str(err) if isinstance(err, KeyboardInterrupt) and str(err) else "interrupted"
        return "KILLED", err if isinstance(err, KeyboardInterrupt) else KeyboardInterrupt(why)
    return "FAILED", err


@contextmanager
def run_life(tracker: Tracker, on_signal: Callable[[int, Any], None],
             checkpoint: Path) -> Iterator[None]:
    """Inside: SIGINT/SIGTERM call `on_signal` (training stops at the next batch). On the way
    out the run ends as `end_status` says (an interrupt re-raised as KeyboardInterrupt; a
    diverged run tagged so)."""
    main = threading.current_thread() is threading.main_thread()  # signals reach it alone
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
                } if main else {}
    try:
        yield
    except BaseException as err:
        status, error = end_status(err)
        if isinstance(err, Diverged):
            tracker.set_tags({tags.DIVERGED: "true"})
        tracker.end(status, error)
        if status != "KILLED":
            raise
        kept = (f"checkpoint {checkpoint}; continue with resume={tracker.run_id}"
                if checkpoint.is_file() else "no checkpoint was saved")
        print(f"nnlab: run {tracker.run_id} KILLED ({error}); {kept}", file=sys.stderr,
              flush=True)
        raise error from None
    else:
        tracker.end("FINISHED")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def job_tags(hydra_cfg: Any) -> dict[str, str]:
    """A Hydra job's own tags: the experiment it came from and, in a sweep, its sweep and
    number (`hydra_cfg`: HydraConfig.get() of the job)."""
    found = {tags.EXPERIMENT: str(hydra_cfg.runtime.choices.get("experiment") or "none")}
    if hydra_cfg.mode.name == "MULTIRUN":
        found[tags.SWEEP_ID] = Path(hydra_cfg.sweep.dir).name
        found[tags.JOB_NUM] = str(hydra_cfg.job.num)
    return found


def run_tags(cfg: DictConfig, overrides: Sequence[str], extra: Mapping[str, str]
             ) -> dict[str, str]:
    """Every tag a run starts with: the chosen option of each group, the config hash, the
    version, the overrides and the commit, plus `extra` (the job's tags)."""
    found = {f"{tags.GROUP_PREFIX}{group}": str(cfg[group].name) for group in GROUPS}
    found.update({
        tags.CONFIG_HASH: config_hash(cfg),  # what sweep.resume=true looks runs up by
        tags.VERSION: __version__,
        tags.OVERRIDES: " ".join(overrides) or "(none)",
        tags.SOURCE: "nnlab",
    })
    commit = git_commit()
    if commit:
        found[tags.GIT_COMMIT] = commit
    found.update(extra)
    return found


def closing_line(tracker: Tracker, cfg: DictConfig, monitor: str, value: float,
                 metrics: Mapping[str, Any]) -> str:
    """One line per finished run: what ran, how it scored, where to look."""
    test = {k: float(v) for k, v in metrics.items() if k.startswith("test/")}
    scores = " ".join(f"{k}={v:.4f}" for k, v in sorted(test.items()))
    return (f"nnlab: FINISHED {monitor}={value:.4f} {scores}\n"
            f"       run {tracker.run_id} '{cfg.mlflow.run_name}'\n"
            f"       store {redact_text(tracker.tracking_uri)}")
