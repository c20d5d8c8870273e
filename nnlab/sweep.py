"""Multirun bookkeeping: each job records how it ended in the sweep folder; after the sweep a Hydra
callback prints which jobs failed and exits non-zero when any did (or when there were none).

Jobs may run in other processes or on other hosts (hydra/launcher=joblib, submitit_local,
submitit_slurm): each writes its own record file, atomically, into the sweep folder, which must be
shared with the host that launched the sweep (Hydra's sweep dir, submitit's folder beside it).

With `sweep.resume=true` a job first looks in the target experiment for a run of the same config
(`nnlab.config_hash`): FINISHED -> skipped; killed or interrupted with a checkpoint -> resumed into
the same run; otherwise run as usual. hydra/launcher=packed does the same for a killed pack,
from the pack's checkpoint (previous_runs and earlier_unfinished are shared with it)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

RECORDS = ".nnlab-jobs"
# Keys that say where a run goes or how it is shown, not what it trains: left out of the hash.
VOLATILE_KEYS = ("resume", "sweep", "mlflow", "trainer.enable_progress_bar")
OUTCOMES = ("run", "skipped", "resumed")
PARENT = ".nnlab-parent"  # the sweep's own MLflow run: tracking URI and run id
OPENED_HERE: set[Path] = set()  # sweep folders whose parent run this process made or joined


def parent_run_id(tracker: Any, sweep_dir: str | Path) -> str:
    """The sweep's parent run, made by its first job that passes validation (so a sweep whose
    every job is refused leaves nothing behind); the jobs nest under it in the MLflow UI."""
    import fcntl

    from nnlab import tags

    folder = Path(sweep_dir)
    folder.mkdir(parents=True, exist_ok=True)
    OPENED_HERE.add(folder)
    with open(folder / ".nnlab-parent.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = folder / PARENT
        if path.is_file():
            return json.loads(path.read_text())["run_id"]
        run = tracker.client.create_run(
            tracker.experiment_id, run_name=f"sweep {folder.name}",
            tags={tags.SWEEP_ID: folder.name, tags.SOURCE: "nnlab sweep"})
        path.write_text(json.dumps({"tracking_uri": tracker.tracking_uri,
                                    "run_id": run.info.run_id}))
        return run.info.run_id


def end_parent_run(sweep_dir: str | Path, status: str) -> None:
    """Close the sweep's parent run with `status` (FINISHED, FAILED or KILLED)."""
    path = Path(sweep_dir) / PARENT
    if not path.is_file():
        return
    from mlflow.tracking import MlflowClient

    found = json.loads(path.read_text())
    MlflowClient(found["tracking_uri"]).set_terminated(found["run_id"], status)


def kill_open_parent_runs() -> None:
    """Ctrl-C / SIGTERM ended the sweep: the parent runs this process opened end KILLED (the
    jobs' own runs are already KILLED with their checkpoints; sweep.resume=true goes on)."""
    for folder in sorted(OPENED_HERE):
        try:
            end_parent_run(folder, "KILLED")
        except Exception as err:  # never hide the interrupt behind a store error
            print(f"nnlab: could not close the sweep's run in {folder}: {err}", file=sys.stderr)
    OPENED_HERE.clear()




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


def config_hash(cfg: DictConfig) -> str:
    """What a job trains, as a short hash: the resolved config minus VOLATILE_KEYS."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in VOLATILE_KEYS:
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    text = json.dumps(tree, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def previous_runs(tracker: Any, cfg: DictConfig) -> list[Any]:
    """The target experiment's runs of this (validated) config, newest first."""
    from nnlab.tags import CONFIG_HASH

    return tracker.client.search_runs([tracker.experiment_id],
                                      f"tags.`{CONFIG_HASH}` = '{config_hash(cfg)}'",
                                      order_by=["attributes.start_time DESC"])


def earlier_unfinished(client: Any, found: list[Any], sweep_id: str | None) -> list[Any]:
    """`found` less the runs of this very sweep (they may still be running: another rank of this
    job, a twin job): only an earlier sweep's unfinished runs are resumed or superseded. Ends
    KILLED the parent run of an earlier sweep that was killed with one of them unfinished."""
    from nnlab.tags import PARENT, SWEEP_ID

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
    from nnlab.config import validate
    from nnlab.tags import CHECKPOINT as CHECKPOINT_TAG
    from nnlab.tags import PACK, SWEEP_ID
    from nnlab.train import open_tracker, run

    if not cfg.get("sweep", {}).get("resume") or cfg.get("resume"):
        return run(cfg, overrides, output_dir, tags, sweep_dir), "run"
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
        ckpt = prev.data.tags.get(CHECKPOINT_TAG)
        if prev.info.status in ("KILLED", "RUNNING") and ckpt and Path(ckpt).is_file() \
                and PACK not in prev.data.tags:  # a pack's checkpoint: hydra/launcher=packed
            resumed = OmegaConf.merge(cfg, {"resume": prev.info.run_id})
            return run(resumed, [f"resume={prev.info.run_id}"], output_dir), "resumed"
    supersede(client, found)
    return run(cfg, overrides, output_dir, tags, sweep_dir), "run"


def monitored_value(run: Any) -> float:
    """What the finished run returned to the sweeper: val/acc, or val/r2 for regression."""
    metrics = run.data.metrics
    return float(metrics.get("val/acc", metrics.get("val/r2", float("nan"))))
