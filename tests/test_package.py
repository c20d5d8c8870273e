"""nnlab as a library: the wheel carries every config and experiment, runs from any folder, and
takes a user's own model, data set and activation from the user's own config folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (found,) = out.glob("nnlab-*.whl")
    return found


def test_the_wheel_carries_every_package_config_and_experiment(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for yaml in (ROOT / "conf").rglob("*.yaml"):
        assert f"nnlab/conf/{yaml.relative_to(ROOT / 'conf')}" in names, yaml
    for study in (ROOT / "experiments").glob("*.yaml"):
        assert f"nnlab/conf/experiment/{study.name}" in names, study
    for module in (ROOT / "nnlab").rglob("*.py"):
        assert f"nnlab/{module.relative_to(ROOT / 'nnlab')}" in names, module


def test_installed_wheel_trains_the_users_own_model_and_data_in_another_folder(
    wheel: Path, tmp_path: Path, all_runs,
) -> None:
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                                "--target", str(target), str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    work = tmp_path / "my-lab"  # the user's own folder: their package and their configs
    shutil.copytree(EXAMPLES, work, ignore=shutil.ignore_patterns("mlruns", "__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONUNBUFFERED": "1"}
    where = subprocess.run([sys.executable, "-c", "import nnlab; print(nnlab.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert Path(where.stdout.strip()).is_relative_to(target), "nnlab must come from the wheel"

    result = subprocess.run(
        [sys.executable, "-m", "nnlab", "--config-dir", "myconf", "model=twolayer",
         "dataset=flat_digits", "activation=swish", "init=kaiming", "model.hidden=24",
         "trainer.max_epochs=3", "trainer.enable_progress_bar=false"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = all_runs(work)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model._target_"] == "mypkg.nets.TwoLayer" and params["model.hidden"] == "24"
    assert params["dataset.n_train"] == "1200" and params["activation.beta"] == "1.0"
    assert params["model.num_params"] == str(64 * 24 + 24 + 24 * 10 + 10)
    assert run.data.metrics["val/acc"] > 0.6, run.data.metrics


def test_the_users_experiment_sweeps_their_parts(run_cli, all_runs, tmp_path: Path) -> None:
    work = tmp_path / "my-lab"
    shutil.copytree(EXAMPLES, work, ignore=shutil.ignore_patterns("mlruns", "__pycache__"))
    result = run_cli(work, "--config-dir", "myconf", "-m", "experiment=my_study",
                     "trainer.max_epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = all_runs(work, "my_study")
    assert sorted(r.data.tags["nnlab.init"] for r in runs) == ["kaiming", "xavier"]
    assert {r.data.tags["nnlab.model"] for r in runs} == {"twolayer"}
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_the_packages_listed_in_pyproject_are_all_of_nnlab() -> None:
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "nnlab").rglob(
        "__init__.py")}
    assert found | {"nnlab.conf"} <= listed
