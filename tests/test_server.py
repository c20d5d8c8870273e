"""The team's tracking server for real: `python -m nnlab.server` (PostgreSQL + MLflow with logins)
on 127.0.0.1, started once per session on a free port and a fresh root, and nnlab logging to it:
a joblib sweep, a teammate loading its model, parallel writers, logins, PostgreSQL restarted and
the server killed mid-run."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

PASSWORD = "admin-" + secrets.token_hex(12)  # NNLAB_ADMIN_PASSWORD of the test servers
TINY = ["dataset=moons", "model=mlp", "trainer.max_epochs=2", "instruments.plots=false"]

pytestmark = pytest.mark.skipif(
    not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) and not shutil.which("initdb"),
    reason="PostgreSQL is not installed (`make test` installs Debian's postgresql)")

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`python -m nnlab.server` in a subprocess, its output kept in a file."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.url = f"http://127.0.0.1:{port}"
        self.output = root.parent / f"{root.name}-output.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "NNLAB_ADMIN_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"}
        with open(self.output, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nnlab.server", "--root", str(self.root),
                 "--port", str(self.port)], cwd=ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not (self.root / "server.json").exists():
            assert self.proc.poll() is None, f"server exited:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"server not ready:\n{self.log()[-3000:]}"
            time.sleep(0.5)

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(120)

    def info(self) -> dict:
        return json.loads((self.root / "server.json").read_text())

    def log(self) -> str:
        return self.output.read_text(errors="replace")


def new_root() -> Path:
    """A fresh root the unprivileged PostgreSQL account can reach (pytest's tmp is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="nnlab-server-test-"))
    folder.chmod(0o755)
    return folder / "root"


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    running = Server(new_root(), free_port())
    running.start()
    yield running
    if running.proc.poll() is None:
        running.stop()
    shutil.rmtree(running.root.parent, ignore_errors=True)


def creds(user: str = "admin", password: str = PASSWORD) -> dict[str, str]:
    return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}


def rest(server: Server, method: str, path: str, auth: tuple[str, str] | None = ("admin",
         PASSWORD), **kwargs) -> requests.Response:
    return requests.request(method, f"{server.url}/api/2.0/mlflow/{path}", auth=auth, timeout=30,
                            **kwargs)


def runs_of(server: Server, experiment: str) -> list[dict]:
    found = rest(server, "GET", "experiments/get-by-name", params={"experiment_name": experiment})
    if found.status_code == 404:
        return []
    exp_id = found.json()["experiment"]["experiment_id"]
    answer = rest(server, "POST", "runs/search", json={"experiment_ids": [exp_id]})
    return [run for run in answer.json().get("runs", [])  # a sweep's parent run left out
            if {"key": "mlflow.source.name", "value": "nnlab sweep"} not in run["data"].get(
                "tags", [])]


def artifact_paths(server: Server, run_id: str, path: str = "") -> set[str]:
    answer = rest(server, "GET", "artifacts/list", params={"run_id": run_id, "path": path})
    return {f["path"] for f in answer.json().get("files", [])}


# -- a sweep and a teammate's model ---------------------------------------------------------------
def test_joblib_sweep_logs_four_runs_and_a_teammate_loads_the_model(compose_cfg, run_cli,
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_cli(tmp_path, "-m", "seed=0,1,2,3", "hydra/launcher=joblib",
                     "hydra.launcher.n_jobs=2", *TINY, f"mlflow.tracking_uri={server.url}",
                     "mlflow.experiment_name=sweep", env=creds(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(server, "sweep")
    assert sorted(r["info"]["status"] for r in runs) == ["FINISHED"] * 4
    seeds = sorted(p["value"] for r in runs for p in r["data"]["params"] if p["key"] == "seed")
    assert seeds == ["0", "1", "2", "3"]
    for run in runs:
        info = run["info"]
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert {"val/acc", "test/acc", "train/loss_epoch"} <= set(metrics)
        assert info["artifact_uri"].startswith("mlflow-artifacts:")  # proxied: no shared disk
        assert {"config.yaml", "overrides.txt", "model_summary.txt", "model"} <= \
            artifact_paths(server, info["run_id"])
        assert artifact_paths(server, info["run_id"], "model") == {
            "model/state_dict.pt", "model/info.json"}
        on_server = list((server.root / "artifacts").rglob(f"{info['run_id']}/**/state_dict.pt"))
        assert len(on_server) == 1, "artifacts land in the server's root"
        history = rest(server, "GET", "metrics/get-history",
                       params={"run_id": info["run_id"], "metric_key": "val/acc"}).json()
        assert len(history["metrics"]) == 2  # one value per epoch

    # A teammate, in another folder (no run folder, no checkpoint): the model and its accuracy.
    import torch

    import nnlab
    from nnlab.engine.build import build_datamodule

    elsewhere = tmp_path / "teammate"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for key, value in creds().items():
        monkeypatch.setenv(key, value)
    run = runs[0]
    model = nnlab.load_model(run["info"]["run_id"], tracking_uri=server.url)
    assert not model.training
    seed = next(p["value"] for p in run["data"]["params"] if p["key"] == "seed")
    data = build_datamodule(compose_cfg([*TINY, f"seed={seed}"])).splits["test"]
    with torch.no_grad():
        accuracy = (model(data.x).argmax(-1) == data.y).float().mean().item()
    logged = next(m["value"] for m in run["data"]["metrics"] if m["key"] == "test/acc")
    assert accuracy == pytest.approx(logged, abs=1e-6)
    assert not list(elsewhere.iterdir()), "load_model leaves nothing behind"


# -- load -----------------------------------------------------------------------------------------
WRITER = """
import sys, time
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
url, experiment_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = MlflowClient(url)
run_id = client.create_run(experiment_id, run_name=f"writer-{n}").info.run_id
now = int(time.time() * 1000)
for start in range(0, 2000, 100):
    client.log_batch(run_id, metrics=[Metric("x", float(n * 10000 + i), now, i)
                                      for i in range(start, start + 100)])
client.set_terminated(run_id)
print("RUN", run_id)
"""


def test_four_writers_and_a_reader_lose_no_value(server: Server,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    for key, value in creds().items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(server.url)
    experiment_id = client.create_experiment(f"load-{secrets.token_hex(4)}")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, server.url, experiment_id, str(n)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **creds()}) for n in range(4)]
    searches, errors = [0], []

    def read() -> None:
        while any(w.poll() is None for w in writers):
            try:
                client.search_runs([experiment_id], max_results=100)
                searches[0] += 1
            except Exception as err:  # noqa: BLE001 (counted, then asserted empty)
                errors.append(err)
            time.sleep(0.05)

    reader = threading.Thread(target=read)
    reader.start()
    outputs = [w.communicate(timeout=300) for w in writers]
    reader.join(60)
    for writer, (_, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err[-3000:]
    assert not errors and searches[0] > 0
    for n, (out, _) in enumerate(outputs):
        history = client.get_metric_history(out.split("RUN ")[-1].strip(), "x")
        assert sorted((m.step, m.value) for m in history) == \
            [(i, float(n * 10000 + i)) for i in range(2000)]
    assert {r.info.status for r in client.search_runs([experiment_id])} == {"FINISHED"}


# -- security -------------------------------------------------------------------------------------
def test_no_or_wrong_credentials_get_401_and_a_one_paragraph_error(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from nnlab.tracking import Tracker, TrackingError

    assert rest(server, "GET", "experiments/search", auth=None,
                params={"max_results": 1}).status_code == 401
    assert rest(server, "GET", "experiments/search", auth=("admin", "wrong-password-1"),
                params={"max_results": 1}).status_code == 401
    assert rest(server, "GET", "experiments/search", params={"max_results": 1}).status_code == 200
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with pytest.raises(TrackingError, match="MLFLOW_TRACKING_USERNAME is not set.*HTTP 401"):
        Tracker(server.url, "nnlab")
    for key, value in creds("admin", "wrong-password-1").items():
        monkeypatch.setenv(key, value)
    with pytest.raises(TrackingError, match="refused user 'admin'.*HTTP 401.*"
                                            "MLFLOW_TRACKING_PASSWORD") as refused:
        Tracker(server.url, "nnlab")
    assert "\n" not in str(refused.value)


def test_a_read_only_user_cannot_write_and_is_told_why(run_cli,
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.server import get_app_client
    from mlflow.tracking import MlflowClient

    from nnlab.tracking import Tracker, TrackingError

    for key, value in creds().items():
        monkeypatch.setenv(key, value)
    experiment_id = MlflowClient(server.url).create_experiment("shared")
    auth = get_app_client("basic-auth", tracking_uri=server.url)
    auth.create_user("reader", "reader-password-1")
    auth.grant_user_permission("reader", "experiment", experiment_id, "READ")

    reader = ("reader", "reader-password-1")
    assert rest(server, "POST", "runs/search", auth=reader,
                json={"experiment_ids": [experiment_id]}).status_code == 200
    assert rest(server, "POST", "runs/create", auth=reader,
                json={"experiment_id": experiment_id}).status_code == 403
    for key, value in creds(*reader).items():
        monkeypatch.setenv(key, value)
    tracker = Tracker(server.url, "shared")  # reading is allowed
    with pytest.raises(TrackingError, match="user 'reader' may not write to experiment 'shared' "
                                            r"\(HTTP 403.*mlflow.experiment_name="):
        tracker.start("denied", {}, {})
    # The CLI: the same paragraph before any training, no run left behind.
    result = run_cli(tmp_path, *TINY, f"mlflow.tracking_uri={server.url}",
                     "mlflow.experiment_name=shared", env=creds(*reader), timeout=300)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("nnlab: error:")]
    assert len(errors) == 1 and "HTTP 403" in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert runs_of(server, "shared") == []


def test_the_admin_password_is_never_written_and_the_server_binds_127_0_0_1(
        server: Server) -> None:
    assert PASSWORD not in server.log()
    for path in server.root.rglob("*"):  # logs, basic_auth.ini, PostgreSQL's files
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    for pid in (server.proc.pid, server.info()["mlflow_pid"]):  # not in any command line
        assert PASSWORD.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == server.port:
                listening.append(local.rsplit(":", 1)[0])
    assert listening == ["0100007F"]  # 127.0.0.1 only


def store_text(server: Server) -> str:
    """Every row of every table of the server's databases (tracking and logins), as text."""
    import psycopg2

    rows = []
    for database in ("mlflow", "mlflow_auth"):
        conn = psycopg2.connect(host=server.info()["socket_dir"], user="nnlab", dbname=database)
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            for (table,) in cur.fetchall():
                cur.execute(f'SELECT t::text FROM "{table}" t')
                rows += [row[0] for row in cur.fetchall()]
        conn.close()
    return "\n".join(rows)


def test_credentials_in_the_uri_never_reach_the_run(run_cli, server: Server,
                                                     tmp_path: Path) -> None:
    """Logging through the team server with the password in mlflow.tracking_uri (no
    MLFLOW_TRACKING_* variables): the run is logged, and neither the store's tables nor the
    artifacts hold the password anywhere."""
    with_password = f"http://admin:{PASSWORD}@127.0.0.1:{server.port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    result = run_cli(tmp_path, *TINY, f"mlflow.tracking_uri={with_password}",
                     "mlflow.experiment_name=secret-uri", env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(server, "secret-uri")
    assert [r["info"]["status"] for r in runs] == ["FINISHED"]
    params = {p["key"]: p["value"] for p in runs[0]["data"]["params"]}
    assert params["mlflow.tracking_uri"] == f"http://***@127.0.0.1:{server.port}"
    store = store_text(server)
    assert runs[0]["info"]["run_id"] in store and "mlflow.tracking_uri" in store  # it is there
    assert PASSWORD not in store
    artifacts = [p for p in (server.root / "artifacts").rglob("*") if p.is_file()
                 and runs[0]["info"]["run_id"] in p.parts]
    assert {"config.yaml", "overrides.txt"} <= {p.name for p in artifacts}
    for path in artifacts:
        assert PASSWORD.encode() not in path.read_bytes(), path


def test_the_server_refuses_to_start_without_a_proper_admin_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NNLAB_ADMIN_PASSWORD"}
    for password in (None, "password1234", "short"):
        if password:
            env["NNLAB_ADMIN_PASSWORD"] = password
        done = subprocess.run([sys.executable, "-m", "nnlab.server", "--root",
                               str(tmp_path / "root"), "--port", str(free_port())],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert done.stderr.startswith("nnlab.server: error: NNLAB_ADMIN_PASSWORD is")
        assert not (tmp_path / "root" / "postgres").exists()


# -- faults ---------------------------------------------------------------------------------------
def test_postgres_restarted_between_two_jobs_the_next_job_logs_fine(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from nnlab.server import Postgres
    from nnlab.tracking import Tracker

    for key, value in creds().items():
        monkeypatch.setenv(key, value)

    def job(n: int) -> str:
        tracker = Tracker(server.url, "restart")
        tracker.start(f"job-{n}", {"n": n}, {})
        for step in range(5):
            tracker.log_metrics({"x": float(step)}, step)
        tracker.log_text("done\n", "note.txt")
        tracker.end("FINISHED")
        return tracker.run_id

    first = job(1)
    Postgres(server.root).restart()
    second = job(2)
    for run_id in (first, second):
        run = rest(server, "GET", "runs/get", params={"run_id": run_id}).json()["run"]
        assert run["info"]["status"] == "FINISHED"
        assert artifact_paths(server, run_id) == {"note.txt"}


@pytest.mark.slow
def test_server_killed_mid_run_fails_the_job_clearly_and_the_run_is_closed_when_back(run_cli,
        tmp_path: Path) -> None:
    from nnlab.server import Postgres

    own = Server(new_root(), free_port())
    own.start()
    try:
        env = {**creds(), "NNLAB_TRACKING_RETRY_S": "10"}
        long_job = subprocess.Popen(
            [sys.executable, "-m", "nnlab", "dataset=moons", "model=mlp",
             "trainer.max_epochs=100000", "trainer.log_every_n_steps=1",
             "instruments.plots=false", "trainer.enable_progress_bar=false",
             f"mlflow.tracking_uri={own.url}", "mlflow.experiment_name=faults"],
            cwd=tmp_path, env={**os.environ, **env}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while not [r for r in runs_of(own, "faults") if r["data"].get("metrics")]:
            assert long_job.poll() is None, long_job.communicate()[1][-3000:]
            assert time.monotonic() < deadline
            time.sleep(1)
        run_id = runs_of(own, "faults")[0]["info"]["run_id"]

        os.killpg(own.info()["mlflow_pid"], signal.SIGKILL)  # the tracking server dies
        out, err = long_job.communicate(timeout=300)  # nothing hangs
        assert long_job.returncode == 1, err[-3000:]
        errors = [line for line in err.splitlines() if line.startswith("nnlab: error:")]
        assert len(errors) == 1, err[-3000:]
        assert f"lost the MLflow tracking server while logging run {run_id}" in errors[0]
        assert "Connection refused" in errors[0] and "retried for 10 s" in errors[0]
        assert own.proc.wait(120) != 0, "the server notices MLflow is gone"
        assert not Postgres(own.root).is_running(), "and stops PostgreSQL with it"

        own.start()  # the same root: the data is still there
        assert runs_of(own, "faults")[0]["info"]["status"] == "RUNNING"
        next_job = run_cli(tmp_path, *TINY, f"mlflow.tracking_uri={own.url}",
                           "mlflow.experiment_name=faults", env=creds(), timeout=300)
        assert next_job.returncode == 0, next_job.stderr[-3000:]
        assert f"run {run_id} marked FAILED" in next_job.stderr
        statuses = {r["info"]["run_id"]: r["info"]["status"] for r in runs_of(own, "faults")}
        assert statuses.pop(run_id) == "FAILED" and list(statuses.values()) == ["FINISHED"]
        tags = {t["key"]: t["value"] for t in
                rest(own, "GET", "runs/get", params={"run_id": run_id}).json()["run"]["data"]
                ["tags"]}
        assert "lost the MLflow tracking server" in tags["nnlab.error"]

        assert own.stop(signal.SIGINT) == 0  # Ctrl-C: both stop cleanly
        assert not Postgres(own.root).is_running()
        assert not (own.root / "server.json").exists()
    finally:
        if own.proc.poll() is None:
            own.stop(signal.SIGKILL)
            Postgres(own.root).stop()
        shutil.rmtree(own.root.parent, ignore_errors=True)
