"""A local sqlite MLflow store that survives an interrupt, and a clear cause when one cannot open.

MLflow creates a new sqlite store by running its schema migrations in place, about two seconds
of DDL that sqlite commits statement by statement: a kill in between leaves a half-migrated file
that every later open fails on ("table datasets already exists"). So nnlab migrates a new store
under a temporary name beside it and moves it into place only when complete (`create`), always
under `nnlab.tracking.store_lock`. `check` reads an existing store first and names what is
wrong with it; a half-created store that holds no runs (left by an older nnlab or another tool)
is rebuilt, and a store with runs is never deleted.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from nnlab.errors import StoreError


def temp_path(db: Path) -> Path:
    """Where a new store is migrated before it is moved to `db` (same folder: rename is atomic)."""
    return db.with_name(f".{db.name}.nnlab-creating")


SIDE_FILES = ("-journal", "-wal", "-shm")  # sqlite's files beside a database


def _remove(path: Path) -> None:
    """`path` and its sqlite side files (a killed attempt's journal, a stale WAL)."""
    for name in (path, *(Path(f"{path}{s}") for s in SIDE_FILES)):
        name.unlink(missing_ok=True)


def create(db: Path) -> None:
    """Migrate a new store at the temporary name, then move it to `db` in one rename.

    Only the holder of the store lock writes the temporary file, so one found here is a killed
    attempt's and is removed first."""
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    tmp = temp_path(db)
    _remove(tmp)
    store = SqlAlchemyStore(f"sqlite:///{tmp}", DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
    store.engine.dispose()  # no connection may outlive the rename
    for suffix in SIDE_FILES:  # a former `db`'s journal or WAL must not meet the new one
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, db)


def open_store(tracking_uri: str, db: Path) -> MlflowClient:
    """A client on the sqlite store at `db`, created atomically when absent (call under the
    store lock). Raises StoreError naming the cause when the store cannot be used."""
    db = db.absolute()  # messages name the file wherever the user ran from
    if not db.exists() or db.stat().st_size == 0:  # an empty file is an empty database
        if not writable(db.parent):
            raise StoreError(read_only_message(db))
        create(db)
    else:
        cause = check(db)
        if cause == REBUILD:
            print(f"nnlab: {db} was a half-created MLflow store holding no runs (an interrupted "
                  "schema migration); rebuilding it.", file=sys.stderr, flush=True)
            create(db)
        elif cause:
            raise StoreError(cause)
    client = MlflowClient(tracking_uri)
    try:
        client.search_experiments(max_results=1)  # MLflow opens the store here
    except Exception as err:
        if not writable(db.parent) or not os.access(db, os.W_OK):
            raise StoreError(read_only_message(db)) from err
        text = str(err).strip().splitlines()
        raise StoreError(f"{db}: MLflow cannot open this store ({type(err).__name__}: "
                         f"{text[0][:300] if text else ''}). {move_aside(db)}") from err
    return client


def existing_store(tracking_uri: str, command: str) -> MlflowClient:
    """A client on a store that must already exist: a read-only command (a report, load_model)
    never creates one. Raises StoreError naming the missing file."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///")).absolute()
        if not db.is_file() or db.stat().st_size == 0:
            raise StoreError(f"there is no MLflow store at {db} (from {tracking_uri}), so "
                             f"{command} has nothing to read; it creates none. Run it where "
                             "your runs were logged, or give their store's URI.")
    return MlflowClient(tracking_uri)


def writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def read_only_message(db: Path) -> str:
    return (f"{db}: the folder {db.parent} or the file is read-only for this user, so the "
            "MLflow store cannot be created or written there. Make it writable, or set "
            "mlflow.tracking_uri (and mlflow.artifact_root) to a writable place, e.g. "
            "sqlite:///$HOME/mlruns/mlflow.db.")


def move_aside(db: Path) -> str:
    return (f"Move it aside (mv {db} {db}.bak) or set mlflow.tracking_uri to another file, "
            "e.g. sqlite:///mlruns/new.db.")


@functools.cache
def _migrations():
    """This MLflow's schema migrations (alembic's script folder, read once per process: a pack
    opens a run per member)."""
    import mlflow
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(Path(mlflow.__file__).parent / "store" / "db_migrations"))


REBUILD = "rebuild"


def check(db: Path) -> str | None:
    """None when the existing store `db` is a complete MLflow store of this MLflow's schema;
    REBUILD for a half-created store holding no runs; else why it cannot be used, as one
    paragraph. Reads the file with sqlite3 only (a few ms; MLflow reads the same on open)."""
    import mlflow

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            revision = (conn.execute("SELECT version_num FROM alembic_version").fetchone()
                        if "alembic_version" in tables else None)
            runs = (conn.execute("SELECT count(*) FROM runs").fetchone()[0]
                    if "runs" in tables else 0)
            named = (conn.execute("SELECT count(*) FROM experiments WHERE experiment_id != 0")
                     .fetchone()[0] if "experiments" in tables else 0)
        conn.close()
    except sqlite3.DatabaseError as bad:
        if "not a database" in str(bad):
            return f"{db} is not an MLflow database (sqlite: {bad}). {move_aside(db)}"
        if not writable(db.parent) or not os.access(db, os.R_OK | os.W_OK):
            return read_only_message(db)
        return f"{db}: sqlite cannot read this store ({bad}). {move_aside(db)}"
    if not tables:
        return REBUILD  # an empty database
    if not tables & {"alembic_version", "experiments", "runs"}:
        found = ", ".join(sorted(tables)[:5])
        return f"{db} is not an MLflow database (it holds other tables: {found}). {move_aside(db)}"
    revision = revision[0] if revision else None
    migrations = _migrations()
    head = migrations.get_current_head()
    if revision == head:
        return None
    if revision is not None and revision not in {r.revision for r in migrations.walk_revisions()}:
        return (f"{db} was made by a newer MLflow than this one ({mlflow.__version__}): its "
                f"schema revision {revision} is unknown here. Upgrade MLflow "
                "(pip install -U mlflow), or set mlflow.tracking_uri to another store.")
    if not writable(db.parent) or not os.access(db, os.W_OK):
        return read_only_message(db)
    if runs == 0 and named == 0:
        return REBUILD
    return (f"{db} holds a half-finished or older MLflow schema migration (revision {revision}; "
            f"MLflow {mlflow.__version__} expects {head}) and {runs} run(s), so nnlab leaves it "
            f"as it is. Back it up (cp {db} {db}.bak), then run "
            f"`mlflow db upgrade sqlite:///{db}`; or set mlflow.tracking_uri to another store.")
