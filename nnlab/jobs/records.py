"""Multirun bookkeeping: each job records how it ended in the sweep folder; after the sweep a Hydra
callback prints which jobs failed and exits non-zero when any did (or when there were none).

Jobs may run in other processes or on other hosts (hydra/launcher=joblib, submitit_local,
submitit_slurm): each writes its own record file, atomically, into the sweep folder, which must be
shared with the host that launched the sweep (Hydra's sweep dir, submitit's folder beside it)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from nnlab.tracking.parent import end_parent_run

RECORDS = ".nnlab-jobs"
OUTCOMES = ("run", "skipped", "resumed")


def record_job(sweep_dir: str | Path, num: int, overrides: list[str], error: str | None,
               outcome: str = "run") -> None:
    """Write one job's outcome (error None: it finished; outcome: run, skipped or resumed) where
    the sweep's callback finds it; written whole (write, then rename) for a reader on any host."""
    folder = Path(sweep_dir) / RECORDS
    folder.mkdir(parents=True, exist_ok=True)
    record = {"num": num, "overrides": list(overrides), "error": error, "outcome": outcome}
    tmp = folder / f".{num}.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, folder / f"{num}.json")


def read_jobs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    folder = Path(sweep_dir) / RECORDS
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted(records, key=lambda r: r["num"])


def summary(records: list[dict[str, Any]]) -> tuple[str, bool]:
    """(the text to print, whether the sweep failed)."""
    if not records:
        return ("nnlab: error: the sweep launched no jobs: a swept value list is empty (e.g. "
                "seed='range(0,0)' or an experiment whose sweeper params list nothing). Give "
                "each swept key at least one value, e.g. seed=0,1,2.", True)
    failed = [r for r in records if r["error"] is not None]
    counts = {o: sum(r.get("outcome", "run") == o for r in records if r["error"] is None)
              for o in OUTCOMES}
    how = ""
    if counts["skipped"] or counts["resumed"]:
        how = (f" ({counts['skipped']} skipped as already FINISHED, {counts['resumed']} resumed, "
               f"{counts['run']} run)")
    lines = [f"nnlab: sweep done: {len(records) - len(failed)} of {len(records)} jobs finished"
             + how + (f", {len(failed)} failed:" if failed else ".")]
    for r in failed:
        lines.append(f"  job {r['num']} ({' '.join(r['overrides']) or 'no overrides'}): "
                     f"{r['error'].splitlines()[0][:300]}")
    return "\n".join(lines), bool(failed)


class SweepReport(Callback):
    """Prints the sweep's summary; a failed job makes the command exit 1."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        text, failed = summary(read_jobs(config.hydra.sweep.dir))
        end_parent_run(config.hydra.sweep.dir, "FAILED" if failed else "FINISHED")
        print(text, file=sys.stderr if failed else sys.stdout, flush=True)
        if failed:
            raise SystemExit(1)
