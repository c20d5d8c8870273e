"""No side effects where none belong, no secret in a run: read-only commands create no store, names
never become paths unescaped, a report says why it has nothing to compare, a refused server start
leaves the running one's files alone, and the Tracker logs no credential."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from nnlab import report
from nnlab.tracking import Tracker

DRIVER = Path(__file__).parent / "helpers" / "bad_input_driver.py"


def finished_run(client: MlflowClient, experiment_id: str, params: dict[str, str],
                 metrics: dict[str, float]) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                     metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
    client.set_terminated(run_id, "FINISHED")


def test_read_only_commands_create_no_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    import nnlab
    from nnlab.tracking import TrackingError

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert report.main(["my_study"]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    with pytest.raises(TrackingError, match="no MLflow store at"):
        nnlab.load_model("0" * 32)
    cases = [["--help"], ["--cfg", "job"], ["model=mlp", "--cfg", "job"]]
    done = subprocess.run([sys.executable, str(DRIVER), json.dumps(cases)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["code"] for r in json.loads(done.stdout.splitlines()[-1])] == [0, 0, 0]
    assert list(tmp_path.iterdir()) == [], "nothing created"


@pytest.mark.parametrize(("name", "folder"), [("../../escape", "_.._escape"),
                                              ("/tmp/anywhere", "_tmp_anywhere")])
def test_report_folder_stays_under_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           name: str, folder: str) -> None:
    work = tmp_path / "a" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    uri = f"sqlite:///{work}/mlruns/mlflow.db"
    tracker = Tracker(uri, name, str(work / "mlruns" / "artifacts"))
    for init, acc in (("zeros", 0.5), ("xavier", 0.9)):
        finished_run(tracker.client, tracker.experiment_id, {"init.name": init, "seed": "0"},
                     {"val/acc": acc, "test/acc": acc})
    assert report.main([name, "--tracking-uri", uri, "--no-log"]) == 0
    assert (work / "reports" / folder / "report.md").is_file()
    assert sorted(p.name for p in tmp_path.rglob("*") if "work" not in p.parts) == ["a"]
    assert not Path("/tmp/anywhere").exists()


def test_report_says_why_it_has_nothing_to_compare(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "mixed", str(tmp_path / "artifacts"))
    finished_run(tracker.client, tracker.experiment_id, {"loss.name": "cross_entropy"},
                 {"val/acc": 0.9, "test/acc": 0.9, "test/loss": 0.3})
    finished_run(tracker.client, tracker.experiment_id, {"loss.name": "mse"},
                 {"val/r2": 0.8, "test/r2": 0.8, "test/loss": 0.1})
    assert report.main(["mixed", "--tracking-uri", uri, "--out", str(tmp_path / "out"),
                        "--no-log"]) == 2
    said = capsys.readouterr().err
    assert "nothing to compare" in said and "val/acc in 1 run(s), val/r2 in 1 run(s)" in said
    assert "the loss varies" in said
    assert not (tmp_path / "out").exists()


def test_a_refused_server_leaves_the_running_ones_files(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    from nnlab.server import main

    monkeypatch.setenv("NNLAB_ADMIN_PASSWORD", "not-used-here")
    root = tmp_path / "root"
    root.mkdir()
    info = root / "server.json"
    info.write_text('{"pid": 1}\n')
    with open(root / "server.lock", "a+") as running:  # what the running server holds
        fcntl.flock(running, fcntl.LOCK_EX | fcntl.LOCK_NB)
        running.write("4242")
        running.flush()
        assert main(["--root", str(root), "--port", "0"]) == 2
        assert "in use by another nnlab.server (pid 4242)" in capsys.readouterr().err
        assert info.read_text() == '{"pid": 1}\n'
        assert (root / "server.lock").read_text() == "4242"
    assert sorted(p.name for p in root.iterdir()) == ["server.json", "server.lock"]


def test_the_tracker_logs_no_credential(tmp_path: Path) -> None:
    """Params, tags, the run name, text artifacts and the error text, read back from the store:
    a URI's userinfo and a secret-looking key's value are gone, everything else is kept."""
    secret = "pa55-" + os.urandom(4).hex()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "secrets", str(tmp_path / "artifacts"))
    remote = f"https://bob:{secret}@example.org/mlflow"
    config = {"mlflow": {"tracking_uri": remote}, "logger": {"x": {"api_key": secret}},
              "model": {"hidden": [8, 8]}}
    tracker.start(f"run-{remote}", {"mlflow.tracking_uri": remote,
                                    "logger.x.api_key": secret, "model.hidden": [8, 8]},
                  {"nnlab.overrides": f"mlflow.tracking_uri={remote} +logger.x.api_key={secret}"})
    tracker.log_text(yaml.safe_dump(config), "config.yaml")
    tracker.log_text(f"mlflow.tracking_uri={remote}\n+logger.x.api_key={secret}\n",
                     "overrides.txt")
    tracker.end("FAILED", RuntimeError(f"cannot reach {remote}"))

    run = tracker.client.get_run(tracker.run_id)
    assert run.data.params["mlflow.tracking_uri"] == "https://***@example.org/mlflow"
    assert run.data.params["logger.x.api_key"] == "***"
    assert run.data.params["model.hidden"] == "[8, 8]"
    logged = yaml.safe_load(Path(tracker.client.download_artifacts(
        tracker.run_id, "config.yaml", str(tmp_path))).read_text())
    assert logged == {"mlflow": {"tracking_uri": "https://***@example.org/mlflow"},
                      "logger": {"x": {"api_key": "***"}}, "model": {"hidden": [8, 8]}}
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert secret.encode() not in stored and b"bob:" not in stored


def test_a_read_only_working_folder_is_refused_in_one_paragraph(tmp_path: Path) -> None:
    """`python -m nnlab` started in a folder mounted read-only (a private mount namespace, so
    root cannot write there either): one paragraph naming the run folder, exit 2, nothing made."""
    if not shutil.which("unshare"):
        pytest.skip("unshare is not installed")
    folder = tmp_path / "read-only"
    folder.mkdir()
    script = (f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} || exit 99; "
              f"cd {folder} && exec {sys.executable} -m nnlab")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          timeout=300)
    if done.returncode == 99 or done.stderr.startswith("unshare:"):
        pytest.skip(f"no private mount namespace here (needs root): {done.stderr.strip()}")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("nnlab: error: hydra.run.dir=mlruns/hydra/")
    assert "Read-only file system" in lines[0] and "Run from a writable folder" in lines[0]
    assert list(folder.iterdir()) == []
