"""The sqlite MLflow store: created atomically (a kill -9 at any moment of its creation leaves no
half-made store, and the next run finishes), and a store that cannot be used is refused with its
real cause: not an MLflow database, a half-finished or older migration, a newer MLflow's schema,
a read-only folder."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = ["model=tiny", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "instruments.enabled=false"]

QUIET = ["trainer.enable_progress_bar=false"]


def head_revision() -> str:
    from nnlab.tracking.store import _migrations

    return _migrations().get_current_head()


def revision(db: Path) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def make_store(store_uri, cwd: Path, runs: int = 0) -> Path:
    """A complete store at cwd's default path, holding `runs` runs."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking import MlflowClient

    (cwd / "mlruns").mkdir(exist_ok=True)
    client = MlflowClient(store_uri(cwd))
    client.search_experiments()
    if runs:
        experiment = client.create_experiment("nnlab")
        for _ in range(runs):
            client.create_run(experiment)
    # MLflow keeps this engine per URI in the test process: close its connections, so that
    # reads after a run replaced the file open the new one.
    SqlAlchemyStore(store_uri(cwd), "./mlruns").engine.dispose()
    return cwd / "mlruns" / "mlflow.db"


def set_revision(db: Path, value: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (value,))


def refused(result: subprocess.CompletedProcess) -> str:
    """The one-paragraph message of a run refused with exit 2, before any training."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("nnlab: error:")]
    return line


@pytest.mark.parametrize("delay", [0.0, pytest.param(0.3, marks=pytest.mark.slow), 0.8,
                                   pytest.param(1.5, marks=pytest.mark.slow)])
def test_kill_during_store_creation_then_the_next_run_finishes(all_runs, run_cli, tmp_path: Path,
                                                               delay: float) -> None:
    db = tmp_path / "mlruns" / "mlflow.db"
    creating = db.with_name(f".{db.name}.nnlab-creating")
    proc = subprocess.Popen([sys.executable, "-m", "nnlab", *TINY, *QUIET], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (creating.exists() or db.exists()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.005)
    time.sleep(delay)
    during = creating.exists()
    proc.kill()
    proc.communicate()
    assert during or delay > 0, "the first kill lands while the new store is being migrated"
    # Atomic: the store is absent or complete, never half-made.
    assert not db.exists() or revision(db) == head_revision()

    result = run_cli(tmp_path, *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    # a late kill may land after the store was made and the first run opened: that run stays
    # as kill -9 left it (resume= takes it on); the next run on the same path finishes
    (run,) = [r for r in all_runs(tmp_path) if r.info.run_id in result.stdout]
    assert run.info.status == "FINISHED"
    assert not creating.exists(), "the killed attempt's temporary store is cleaned up"


@pytest.fixture(scope="module")
def stores(run_cli_cases, store_uri, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """name -> (folder, what it held before, the command run on it): each damaged store made in
    its own folder, then every command in one process through nnlab's real entry point."""
    from nnlab.tracking.store import _migrations

    made: dict[str, tuple[Path, dict]] = {}
    folder = tmp_path_factory.mktemp("half-created")  # stopped 10 migrations short of head
    db = make_store(store_uri, folder)
    set_revision(db, list(_migrations().walk_revisions())[10].revision)
    made["half-created"] = folder, {"copy": shutil.copy(db, folder / "copy.db")}

    folder = tmp_path_factory.mktemp("half-migrated")  # an early MLflow 1.x schema revision
    db = make_store(store_uri, folder, runs=2)
    set_revision(db, "0a8213491aaa")
    made["half-migrated"] = folder, {"bytes": db.read_bytes()}

    folder = tmp_path_factory.mktemp("notes")
    db = folder / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(b"my notes, not a database\n" * 200)
    made["notes"] = folder, {}
    other = folder / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE birds (name TEXT)")
    made["birds"] = folder, {"args": [f"mlflow.tracking_uri=sqlite:///{other}"], "db": other}

    folder = tmp_path_factory.mktemp("newer")
    set_revision(make_store(store_uri, folder), "fedcba987654")  # a revision MLflow does not know
    made["newer"] = folder, {}

    results = run_cli_cases([(cwd, [*TINY, *held.get("args", [])]) for cwd, held in made.values()])
    return {name: (cwd, held, result)
            for (name, (cwd, held)), result in zip(made.items(), results, strict=True)}


def test_half_created_store_without_runs_is_rebuilt(all_runs, stores) -> None:
    """What MLflow's in-place creation leaves after a kill (an older nnlab did that): the schema
    stopped part way; plain MLflow cannot open it."""
    from mlflow.tracking import MlflowClient

    cwd, held, result = stores["half-created"]
    with pytest.raises(Exception, match="out-of-date database schema"):
        MlflowClient(f"sqlite:///{held['copy']}").search_experiments()

    assert result.returncode == 0, result.stderr[-3000:]
    assert "half-created MLflow store holding no runs" in result.stderr
    assert revision(cwd / "mlruns" / "mlflow.db") == head_revision()
    assert [r.info.status for r in all_runs(cwd)] == ["FINISHED"]


def test_half_migrated_store_with_runs_is_kept_and_explained(stores) -> None:
    cwd, held, result = stores["half-migrated"]
    db = cwd / "mlruns" / "mlflow.db"
    line = refused(result)
    assert f"{db} holds a half-finished or older MLflow schema migration" in line
    assert "0a8213491aaa" in line and "2 run(s)" in line and "mlflow db upgrade" in line
    assert "permission" not in line.lower() and "writable" not in line
    assert db.read_bytes() == held["bytes"], "a store with runs is never touched"


def test_not_an_mlflow_database_says_so_and_where(stores) -> None:
    cwd, _, result = stores["notes"]
    db = cwd / "mlruns" / "mlflow.db"
    line = refused(result)
    assert f"{db} is not an MLflow database" in line and "Move it aside" in line
    assert "permission" not in line.lower() and "writable" not in line
    assert db.read_bytes() == b"my notes, not a database\n" * 200

    _, held, result = stores["birds"]
    line = refused(result)
    assert f"{held['db']} is not an MLflow database (it holds other tables: birds)" in line


def test_store_of_a_newer_mlflow_says_upgrade_mlflow(stores) -> None:
    cwd, _, result = stores["newer"]
    line = refused(result)
    assert f"{cwd / 'mlruns' / 'mlflow.db'} was made by a newer MLflow" in line
    assert "fedcba987654" in line
    assert "pip install -U mlflow" in line
    assert "permission" not in line.lower() and "writable" not in line


def test_read_only_folder_is_about_permissions(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    uri = f"mlflow.tracking_uri=sqlite:///{store}/mlflow.db"
    command = [sys.executable, "-m", "nnlab", *TINY, *QUIET, uri]
    if os.geteuid() == 0:  # root writes through file modes: mount the folder read-only instead
        if not shutil.which("unshare"):
            pytest.skip("running as root without unshare: cannot make a read-only folder")
        script = f'mount --bind -o ro "{store}" "{store}" && exec "$@"'
        command = ["unshare", "-m", "sh", "-c", script, "sh", *command]
    else:
        store.chmod(0o555)
    try:
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
    finally:
        store.chmod(0o755)
    if "mount" in result.stderr and result.returncode != 2:
        pytest.skip(f"cannot mount a read-only folder here: {result.stderr[-300:]}")
    line = refused(result)
    assert f"the folder {store} or the file is read-only" in line
    assert not (store / "mlflow.db").exists()
