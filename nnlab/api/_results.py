"""What nnlab.train and nnlab.sweep return: a run and a sweep read back from MLflow (the same
store the CLI's runs land in), as pandas DataFrames, each rendering itself in Jupyter."""

from __future__ import annotations

import base64
import html
import json
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from nnlab.engine.trained import load_model
from nnlab.figures import learning_curve_bands, learning_curves, png_bytes
from nnlab.jobs.records import read_jobs
from nnlab.tracking import MlflowClient, tags
from nnlab.tracking.parent import PARENT

HEADLINE = ("val/", "test/")  # a run's final metrics worth a table cell
CURVES = ("train/loss_epoch", "val/loss", "train/acc_epoch", "val/acc", "val/r2")


def is_epoch_metric(key: str) -> bool:
    """A value logged once per epoch (the history's columns), per-layer instruments aside."""
    return key.startswith(("val/", "time/")) or (key.startswith("train/")
                                                 and key.endswith("_epoch"))


def headline(metrics: dict[str, float]) -> dict[str, float]:
    return {k: metrics[k] for k in sorted(metrics) if k.startswith(HEADLINE)}


def png_tag(png: bytes, alt: str) -> str:
    """An <img> with the PNG inside it (a data URI): the page needs no other file."""
    return (f'<img alt="{html.escape(alt)}" style="max-width:100%" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}"/>')


@dataclass
class RunResult:
    """One MLflow run of nnlab: what `nnlab.train` returns (and each job of a sweep)."""

    run_id: str
    name: str
    status: str  # FINISHED, FAILED, KILLED (or RUNNING while it trains elsewhere)
    metrics: dict[str, float]  # every metric's final value
    tracking_uri: str
    error: str | None = None  # why it FAILED or was KILLED

    @classmethod
    def of_run(cls, tracking_uri: str, run: Any) -> RunResult:
        return cls(run.info.run_id, run.info.run_name, run.info.status, dict(run.data.metrics),
                   tracking_uri, run.data.tags.get(tags.ERROR))

    @classmethod
    def load(cls, run_id: str, tracking_uri: str) -> RunResult:
        """The run `run_id` of the store at `tracking_uri`, as it is now."""
        return cls.of_run(tracking_uri, MlflowClient(tracking_uri).get_run(run_id))

    @classmethod
    def of_output(cls, cfg: DictConfig, output_dir: str | Path,
                  run_id: str | None = None) -> RunResult:
        """The run that trained into `output_dir` (its checkpoint's folder is its own), or the
        run `run_id` (a resumed one)."""
        uri = str(cfg.mlflow.tracking_uri)
        client = MlflowClient(uri)
        if run_id is not None:
            return cls.of_run(uri, client.get_run(run_id))
        checkpoint = (Path(output_dir) / "checkpoints" / "last.ckpt").resolve()
        experiment = client.get_experiment_by_name(str(cfg.mlflow.experiment_name))
        found = client.search_runs([experiment.experiment_id],
                                   f"tags.`{tags.CHECKPOINT}` = '{checkpoint}'")
        return cls.of_run(uri, found[0])

    @property
    def _client(self) -> Any:
        return MlflowClient(self.tracking_uri)

    @cached_property
    def config(self) -> DictConfig:
        """The run's resolved config, as logged (config.yaml)."""
        with tempfile.TemporaryDirectory() as tmp:
            return OmegaConf.load(self._client.download_artifacts(self.run_id, "config.yaml",
                                                                  tmp))

    def curve(self, key: str) -> pd.Series:
        """Every logged value of one metric (any: per step, per epoch, per layer), by step."""
        points = sorted(self._client.get_metric_history(self.run_id, key),
                        key=lambda m: (m.step, m.timestamp))
        return pd.Series([m.value for m in points], index=pd.Index(
            [m.step for m in points], name="step"), name=key, dtype=float)

    @cached_property
    def history(self) -> pd.DataFrame:
        """The per-epoch metrics (train/*_epoch, val/*, time/*) as a DataFrame, one row per
        epoch (1, 2, ...), with the global step each epoch ended at."""
        columns, steps = {}, None
        for key in sorted(k for k in self.metrics if is_epoch_metric(k)):
            values = self.curve(key)
            columns[key] = pd.Series(values.to_numpy(), index=range(1, len(values) + 1))
            if key.startswith("val/") and steps is None:
                steps = pd.Series(values.index.to_numpy(), index=columns[key].index)
        frame = pd.DataFrame({"step": steps, **columns} if steps is not None else columns)
        frame.index.name = "epoch"
        return frame

    @property
    def model(self) -> torch.nn.Module:
        """The trained nn.Module (eval mode, on the CPU), via nnlab.load_model."""
        return load_model(self.run_id, self.tracking_uri)

    def curves_png(self) -> bytes | None:
        """The learning curves (loss left, accuracy or r2 right) against steps, as a PNG."""
        found = {}
        for key in CURVES:
            if key in self.metrics:
                series = self.curve(key)
                found[key] = list(zip(series.index.tolist(), series.tolist(), strict=True))
        return png_bytes(learning_curves(found)) if found else None

    def __repr__(self) -> str:
        scores = " ".join(f"{k}={v:.4f}" for k, v in headline(self.metrics).items())
        return f"RunResult({self.status} {self.name!r} run {self.run_id} {scores})"

    def _repr_html_(self) -> str:
        parts = [f"<h4>nnlab run {html.escape(self.name)}: {self.status}</h4>",
                 f"<p>run <code>{self.run_id}</code>, store "
                 f"<code>{html.escape(self.tracking_uri)}</code></p>"]
        if self.error:
            parts.append(f"<p><b>error:</b> {html.escape(self.error)}</p>")
        final = headline(self.metrics)
        if final:
            parts.append(pd.DataFrame([final], index=["final"]).to_html(float_format="%.4f"))
        png = self.curves_png()
        if png:
            parts.append(png_tag(png, "learning curves"))
        return "\n".join(parts)


def _option(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


@dataclass
class SweepResult:
    """One sweep (multirun): what `nnlab.sweep` returns. `table` has one row per job."""

    sweep_dir: str
    parent_run_id: str | None
    tracking_uri: str | None
    runs: dict[int, RunResult] = field(default_factory=dict)  # job number -> its run
    records: list[dict[str, Any]] = field(default_factory=list)  # the sweep folder's records

    @property
    def sweep_id(self) -> str:
        return Path(self.sweep_dir).name

    @classmethod
    def of_sweep(cls, sweep_dir: str | Path) -> SweepResult:
        """Read a finished sweep back: its jobs' records and their MLflow runs."""
        records = read_jobs(sweep_dir)
        parent_file = Path(sweep_dir) / PARENT
        if not parent_file.is_file():  # every job refused before its run: nothing in MLflow
            return cls(str(sweep_dir), None, None, {}, records)
        parent = json.loads(parent_file.read_text())
        client = MlflowClient(parent["tracking_uri"])
        experiment_id = client.get_run(parent["run_id"]).info.experiment_id
        found = client.search_runs(
            [experiment_id], f"tags.`{tags.SWEEP_ID}` = '{Path(sweep_dir).name}'",
            max_results=50000)
        runs = {int(r.data.tags[tags.JOB_NUM]): RunResult.of_run(parent["tracking_uri"], r)
                for r in found if tags.JOB_NUM in r.data.tags}
        return cls(str(sweep_dir), parent["run_id"], parent["tracking_uri"], runs, records)

    @cached_property
    def options(self) -> list[str]:
        """The swept keys: those whose value differs between the jobs' overrides."""
        seen: dict[str, set[str]] = {}
        for record in self.records:
            for key, value in map(_option, record["overrides"]):
                seen.setdefault(key, set()).add(value)
        return [k for k, values in seen.items() if len(values) > 1]

    @cached_property
    def table(self) -> pd.DataFrame:
        """One row per job: its swept options, status, final val/* and test/* metrics, run id
        (outcome: skipped or resumed with sweep.resume=true; error: why it failed)."""
        rows = []
        for record in self.records:
            chosen = dict(map(_option, record["overrides"]))
            run = self.runs.get(record["num"])
            row = {"job": record["num"], **{k: chosen.get(k) for k in self.options},
                   "status": run.status if run else ("FAILED" if record["error"] else
                                                     "FINISHED"),
                   **(headline(run.metrics) if run else {}),
                   "run_id": run.run_id if run else None}
            if record.get("outcome", "run") != "run":
                row["outcome"] = record["outcome"]
            if record["error"]:
                row["error"] = record["error"]
            rows.append(row)
        return pd.DataFrame(rows).set_index("job") if rows else pd.DataFrame()

    @property
    def failed(self) -> list[int]:
        return [r["num"] for r in self.records if r["error"]]

    def curves_png(self) -> bytes | None:
        """Learning curves per option (seeds pooled: mean and a band of one sd), as a PNG."""
        shown = [k for k in self.options if k != "seed"]
        curves: dict[str, dict[str, list[list[float]]]] = {}
        for record in self.records:
            run = self.runs.get(record["num"])
            if run is None:
                continue
            chosen = dict(map(_option, record["overrides"]))
            label = " ".join(f"{k}={chosen.get(k)}" for k in shown) or "all jobs"
            for key in CURVES:
                if key in run.metrics:
                    curves.setdefault(key, {}).setdefault(label, []).append(
                        run.curve(key).tolist())
        return png_bytes(learning_curve_bands(curves)) if curves else None

    def __repr__(self) -> str:
        return (f"SweepResult({self.sweep_id}: {len(self.records)} jobs, "
                f"{len(self.failed)} failed)\n{self.table}")

    def _repr_html_(self) -> str:
        parts = [f"<h4>nnlab sweep {self.sweep_id}: {len(self.records)} jobs, "
                 f"{len(self.failed)} failed</h4>"]
        if self.parent_run_id:
            parts.append(f"<p>sweep run <code>{self.parent_run_id}</code>, store "
                         f"<code>{html.escape(str(self.tracking_uri))}</code></p>")
        parts.append(self.table.to_html(float_format="%.4f", na_rep=""))
        png = self.curves_png()
        if png:
            parts.append(png_tag(png, "learning curves"))
        return "\n".join(parts)

