"""Shared test fixtures: compose configs with Hydra, run the CLI in a scratch folder, read MLflow.

Each helper is a fixture that returns the function (tests take it as an argument; nothing
imports this module)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = str(ROOT / "conf")
SHARED_DATA = ROOT.parent / "shared" / "data"
QUIET = ["trainer.enable_progress_bar=false"]


def _compose_cfg(overrides: Sequence[str] = ()) -> DictConfig:
    """The config `python -m nnlab <overrides>` would run, composed by Hydra."""
    from nnlab.config import register_configs

    if not GlobalHydra.instance().is_initialized():  # initialise once per test session
        register_configs()
        initialize_config_dir(config_dir=CONF_DIR, version_base="1.3")
    return compose(config_name="config", overrides=list(overrides))


def _run_cli(cwd: Path, *args: str, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m nnlab ARGS` in `cwd` (its default store lands in cwd/mlruns)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "nnlab", *args, *QUIET], cwd=cwd, capture_output=True,
        text=True, timeout=timeout, env=full_env,
    )


CLI_DRIVER = Path(__file__).parent / "helpers" / "cli_driver.py"


def _run_cli_cases(cases: Sequence[tuple[Path, Sequence[str]]], timeout: float = 900,
                   env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess]:
    """Run `python -m nnlab ARGS` in each case's folder, all in ONE new process (nnlab's real
    entry point, once per case: tests/helpers/cli_driver.py), for tables of cases whose point
    is what the command does rather than a process of its own. Each result carries `seconds`."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "cases.json", Path(tmp) / "results.json"
        spec.write_text(json.dumps([{"cwd": str(cwd), "args": [*args, *QUIET]}
                                    for cwd, args in cases]))
        driver = subprocess.run([sys.executable, str(CLI_DRIVER), str(spec), str(out)],
                                capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        assert driver.returncode == 0 and out.exists(), driver.stderr[-3000:]
        found = json.loads(out.read_text())
    results = []
    for (cwd, _), one in zip(cases, found, strict=True):
        result = subprocess.CompletedProcess(["nnlab", *one["args"]], one["code"],
                                             one["stdout"], one["stderr"])
        result.seconds, result.cwd = one["seconds"], cwd
        results.append(result)
    return results


def _store_uri(cwd: Path) -> str:
    return f"sqlite:///{cwd}/mlruns/mlflow.db"


def _all_runs(cwd: Path, experiment: str = "nnlab", parents: bool = False) -> list:
    """Every job's run of `experiment` in cwd's default store ([] when there is no store);
    with `parents`, the sweeps' parent runs alone."""
    if not (cwd / "mlruns" / "mlflow.db").exists():
        return []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(_store_uri(cwd))
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id]) if found else []
    return [r for r in runs if (r.data.tags.get("mlflow.source.name") == "nnlab sweep") is parents]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real MNIST / Fashion-MNIST); the test is skipped where it is absent."""
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"real data sets not found in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def compose_cfg():
    """compose_cfg(overrides) -> the config `python -m nnlab <overrides>` would run."""
    return _compose_cfg


@pytest.fixture(scope="session")
def run_cli():
    """run_cli(cwd, *args) -> the finished `python -m nnlab ARGS` subprocess, run in cwd."""
    return _run_cli


@pytest.fixture(scope="session")
def run_cli_cases():
    """run_cli_cases([(cwd, args), ...]) -> each case's finished `python -m nnlab ARGS`, run in
    its cwd, all cases in one process (returncode, stdout, stderr, seconds)."""
    return _run_cli_cases


@pytest.fixture(scope="session")
def store_uri():
    """store_uri(cwd) -> the default sqlite store of runs started in cwd."""
    return _store_uri


@pytest.fixture(scope="session")
def all_runs():
    """all_runs(cwd, experiment="nnlab") -> every run of that experiment in cwd's store."""
    return _all_runs


def _moons_study(folder: Path, experiment: str, grid: dict[str, tuple[str, ...]],
                 model: tuple[str, ...] = ("model=mlp",)) -> str:
    """Train every combination of `grid` (key -> values) as its own run: an MLP on moons, 3
    epochs each, into experiment `experiment` of a store in `folder`; returns the store's URI."""
    from itertools import product

    from nnlab.engine import train_one

    uri = f"sqlite:///{folder}/mlflow.db"
    for values in product(*grid.values()):
        chosen = [f"{key}={value}" for key, value in zip(grid, values, strict=True)]
        train_one(_compose_cfg([
            *model, "dataset=moons", *chosen, "trainer.max_epochs=3", "accelerator=cpu",
            "trainer.enable_progress_bar=false", "instruments.plots=false",
            f"mlflow.tracking_uri={uri}", f"mlflow.artifact_root={folder}/artifacts",
            f"mlflow.experiment_name={experiment}"]), output_dir=folder)
    return uri


@pytest.fixture(scope="session")
def moons_study():
    """moons_study(folder, experiment, {key: values}, model=(...)) -> the store URI of a small
    real study: one MLP-on-moons run per combination of the grid, 3 epochs each."""
    return _moons_study


# `make test` runs the files on every core (pytest-xdist, `-n auto --dist loadfile`: a file is one
# unit of work, so its module fixtures run once) and hands them out in collection order. The
# files that take longest (their tests' summed seconds in a run of 2026-12-02, 30 s and more:
# studies, DDP ranks, a SLURM cluster, packs, a server, a notebook...) go first, longest first,
# so that no worker is left with one of them while the others idle. Order only.
LONGEST_FIRST = ("test_studies.py", "test_ddp.py", "test_cluster.py", "test_packed.py",
                 "test_store.py", "test_cli.py", "test_server.py", "test_resume.py",
                 "test_engine.py", "test_run_life.py", "test_api.py", "test_notebook.py",
                 "test_packed_resume.py", "test_package.py", "test_bad_inputs.py",
                 "test_sweep_resume.py", "test_faults.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files first (see LONGEST_FIRST); tests marked `gpu` run where CUDA is visible
    and are skipped cleanly elsewhere."""
    import torch

    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
