"""The MLflow UI for real: `mlflow server` over a store made by a small real study, checked
through its REST API and loaded in headless Chromium (Debian's `chromium`), with a screenshot."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

STUDY = ["-m", "experiment=optimizer_study", "study.mode=quick", "optimizer=sgd_plain,adam",
         "seed=0,1", "trainer.max_epochs=1", "model=lenet5", "~model.hidden",
         "dataset=digits"]  # as before: LeNet-5 on the offline digits (optimizer_study itself
# trains an MLP, model.hidden, on MNIST)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture
def server(run_cli, tmp_path):
    """A store made by a 4-run quick study, served by `mlflow server` on a free local port."""
    done = run_cli(tmp_path, *STUDY, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path}/mlruns/mlflow.db",
         "--default-artifact-root", str(tmp_path / "mlruns" / "artifacts")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # a busy machine needs a while to start uvicorn
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=5)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "mlflow server did not answer /health"
                time.sleep(1)
        yield base, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ui_shows_every_run(run_cli, server) -> None:
    base, tmp = server
    experiment = api(base, "experiments/get-by-name?experiment_name=optimizer_study")
    experiment_id = experiment["experiment"]["experiment_id"]
    found = api(base, "runs/search", {"experiment_ids": [experiment_id]})["runs"]
    parents = [r for r in found if {"key": "mlflow.source.name", "value": "nnlab sweep"}
               in r["data"].get("tags", [])]
    runs = [r for r in found if r not in parents]
    assert len(runs) == 4 and len(parents) == 1, "four jobs, nested under their sweep's run"
    seen = set()
    for run in runs:
        assert run["info"]["status"] == "FINISHED"
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        seen.add((params["optimizer.name"], params["seed"]))
        assert 0 <= metrics["test/acc"] <= 1 and metrics["train/loss_epoch"] > 0
        assert metrics["grad_norm/features.0"] > 0
    assert seen == {("sgd_plain", "0"), ("sgd_plain", "1"), ("adam", "0"), ("adam", "1")}

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (make test-slow installs it: apt-get install chromium)")
    page = f"{base}/#/experiments/{experiment_id}/runs"  # the runs table
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={tmp / 'chromium'}", "--window-size=1600,1000",
             "--virtual-time-budget=20000"]
    dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True,
                         timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the table folds the sweep into its parent's row (its jobs nest under it, expandable)
    assert parents[0]["info"]["run_name"] in dom.stdout, "the runs table lacks the sweep"
    nested_under = {next(t["value"] for t in r["data"]["tags"] if t["key"] == "mlflow.parentRunId")
                    for r in runs}
    assert nested_under == {parents[0]["info"]["run_id"]}
    # nnlab's experiment says it is model training; MLflow 3.17's UI takes the view from its
    # own switch, which this URL sets: the experiment's page is then its runs table
    tags = {t["key"]: t["value"] for t in experiment["experiment"].get("tags", [])}
    assert tags.get("mlflow.experimentKind") == "custom_model_development"
    training_view = f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"
    training = subprocess.run([*flags, "--dump-dom", training_view], capture_output=True,
                              text=True, timeout=180)
    assert parents[0]["info"]["run_name"] in training.stdout, "no runs table in model training"
    screenshot = tmp / "optimizer_study.png"  # look at it: pytest keeps the last tmp folders
    shot = subprocess.run([*flags, f"--screenshot={screenshot}", page], capture_output=True,
                          text=True, timeout=180)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 30000
