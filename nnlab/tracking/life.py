"""The MLflow run's life: one context manager that ends it FINISHED, FAILED or KILLED whatever
happens inside, plus what a run records about itself (tags, the closing line)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

import nnlab
from nnlab.config import GROUPS, config_hash
from nnlab.errors import Diverged
from nnlab.tracking import tags


@contextmanager
def run_life(tracker: Any, on_signal: Callable[[int, Any], None],
             checkpoint: Path) -> Iterator[None]:
    """Inside: SIGINT/SIGTERM call `on_signal` (training stops at the next batch). On the way
    out the run ends FINISHED, KILLED (Ctrl-C, SIGTERM; re-raised as KeyboardInterrupt) or
    FAILED (any error, its text kept; a diverged run tagged so)."""
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except (KeyboardInterrupt, SystemExit) as err:  # Ctrl-C, SIGTERM (Lightning: SystemExit)
        why = str(err) if isinstance(err, KeyboardInterrupt) and str(err) else "interrupted"
        interrupt = err if isinstance(err, KeyboardInterrupt) else KeyboardInterrupt(why)
        tracker.end("KILLED", interrupt)
        kept = (f"checkpoint {checkpoint}; continue with resume={tracker.run_id}"
                if checkpoint.is_file() else "no checkpoint was saved")
        print(f"nnlab: run {tracker.run_id} KILLED ({why}); {kept}", file=sys.stderr, flush=True)
        raise interrupt from None
    except BaseException as err:
        if isinstance(err, Diverged):
            tracker.set_tags({tags.DIVERGED: "true"})
        tracker.end("FAILED", err)
        raise
    else:
        tracker.end("FINISHED")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(nnlab.__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def run_tags(cfg: DictConfig, overrides: Sequence[str], extra: dict[str, str]) -> dict[str, str]:
    found = {f"{tags.GROUP_PREFIX}{group}": str(cfg[group].name) for group in GROUPS}
    found.update({
        tags.CONFIG_HASH: config_hash(cfg),  # what sweep.resume=true looks runs up by
        tags.VERSION: nnlab.__version__,
        tags.OVERRIDES: " ".join(overrides) or "(none)",
        tags.SOURCE: "nnlab",
    })
    commit = git_commit()
    if commit:
        found[tags.GIT_COMMIT] = commit
    found.update(extra)
    return found


def closing_line(tracker: Any, cfg: DictConfig, monitor: str, value: float,
                 metrics: dict) -> str:
    """One line per finished run: what ran, how it scored, where to look."""
    test = {k: float(v) for k, v in metrics.items() if k.startswith("test/")}
    scores = " ".join(f"{k}={v:.4f}" for k, v in sorted(test.items()))
    return (f"nnlab: FINISHED {monitor}={value:.4f} {scores}\n"
            f"       run {tracker.run_id} '{cfg.mlflow.run_name}'\n"
            f"       store {tracker.tracking_uri}")
