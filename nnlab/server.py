"""`python -m nnlab.server`: a team's tracking server, in the foreground.

A real PostgreSQL (Debian's `postgresql` package; its data in `--root`/postgres) and MLflow's
tracking server on it: runs in the database `mlflow`, logins in the database `mlflow_auth`
(MLflow's basic-auth app), artifacts proxied through the server into `--root`/artifacts. Both
start together and stop together on Ctrl-C / SIGTERM; a second start on the same root reuses the
data. PostgreSQL listens on no TCP port: only on a Unix socket that its own user can open.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from nnlab.errors import ServerError

ADMIN = "admin"
PASSWORD_ENV = "NNLAB_ADMIN_PASSWORD"
MLFLOW_DEFAULT_PASSWORD = "password1234"  # the well-known one older MLflow versions shipped
DB_USER = "nnlab"
PG_USER_ENV = "NNLAB_PG_USER"  # the unprivileged account PostgreSQL runs as when we are root
START_TIMEOUT_S = 180
AUTH_CACHE_S = int(os.environ.get("NNLAB_AUTH_CACHE_S", "60"))


def admin_password() -> str:
    """NNLAB_ADMIN_PASSWORD, checked: set, >= 12 characters (MLflow's rule), not the default."""
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise ServerError(
            f"{PASSWORD_ENV} is not set: the server's admin user '{ADMIN}' takes its password "
            f"from it, and nnlab never starts a server with a default one. Set it, e.g. "
            f"`export {PASSWORD_ENV}=$(openssl rand -base64 18)`, and start again.")
    if len(password) < 12 or password == MLFLOW_DEFAULT_PASSWORD:
        raise ServerError(
            f"{PASSWORD_ENV} is too weak: it must have at least 12 characters and must not be "
            f"MLflow's well-known default. Choose another and start again.")
    return password


def pg_bindir() -> Path:
    """The folder of initdb/pg_ctl: the newest /usr/lib/postgresql/<version>/bin, else PATH."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                    key=lambda p: float(p.parent.parent.name) if p.parent.parent.name.replace(
                        ".", "", 1).isdigit() else 0.0)
    if debian:
        return debian[-1].parent
    import shutil

    found = shutil.which("pg_ctl")
    if found and (Path(found).parent / "initdb").exists():
        return Path(found).parent
    raise ServerError(
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed. Install Debian's "
        "package (`apt-get install postgresql`; `make server` does it for you) or put the bin "
        "folder of a PostgreSQL installation on PATH.")


def pg_account() -> pwd.struct_passwd | None:
    """The unprivileged account PostgreSQL runs as when we are root (initdb refuses root):
    $NNLAB_PG_USER, else Debian's `postgres`; None when we are not root (it runs as us)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get(PG_USER_ENV, "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ServerError(
            f"running as root, PostgreSQL must run as an unprivileged account, but user '{name}' "
            f"does not exist. Install Debian's postgresql package (it creates 'postgres'), create "
            f"one (`useradd --system nnlab`) and set {PG_USER_ENV}=nnlab, or start the server "
            "as an ordinary user.") from None


class Postgres:
    """A PostgreSQL cluster in `root`/postgres, controlled with pg_ctl, reachable only through a
    Unix socket in a private folder (trust authentication: only its owner can open it)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.data = self.root / "postgres"
        self.log = self.root / "logs" / "postgresql.log"
        self.bin = pg_bindir()
        self.account = pg_account()
        self.socket_dir: Path | None = None

    # -- running the PostgreSQL programs as the right user ---------------------------------------
    def _as_owner(self) -> dict[str, Any]:
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": [],
                "env": {**os.environ, "HOME": self.account.pw_dir, "USER": self.account.pw_name}}

    def _chown(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def pg(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(self.bin / program), *args], capture_output=True, text=True,
                              cwd="/", start_new_session=True, **self._as_owner())
        if check and done.returncode != 0:
            raise ServerError(f"PostgreSQL's {program} failed (exit {done.returncode}): "
                              f"{(done.stderr or done.stdout).strip()[-600:]} (log: {self.log})")
        return done

    # -- life cycle -------------------------------------------------------------------------------
    def prepare(self) -> bool:
        """Create the cluster on first use; True when it was created now."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        self._chown(self.log)
        if (self.data / "PG_VERSION").exists():
            return False
        self.data.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._chown(self.data)
        if self.account is not None:
            reach = subprocess.run(["test", "-w", str(self.data)], **self._as_owner())
            if reach.returncode != 0:
                raise ServerError(
                    f"--root {self.root}: the unprivileged user '{self.account.pw_name}' that runs "
                    f"PostgreSQL cannot reach {self.data} (a parent folder is closed to other "
                    "users, e.g. mode 0700). Choose a root whose parents others may enter (e.g. "
                    "/srv/nnlab or /tmp/nnlab-server), or open them (chmod o+x <parent>).")
        self.pg("initdb", "-D", str(self.data), "-U", DB_USER, "--auth-local=trust",
                "--auth-host=reject", "-E", "UTF8", "--no-locale", "--no-instructions")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n# nnlab.server: no TCP at all; a Unix socket only its owner may open\n"
                       "listen_addresses = ''\nunix_socket_permissions = 0700\n")
        return True

    def is_running(self) -> bool:
        return self.pg("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def start(self) -> None:
        if self.is_running():  # left over by a server that was killed: ours (we hold the lock)
            self.stop()
        self.socket_dir = Path(tempfile.mkdtemp(prefix="nnlab-pg-"))
        self._chown(self.socket_dir)
        self.pg("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120",
                "-o", f"-k {self.socket_dir}")

    def restart(self) -> None:
        """Stop and start again with the same options (what an admin's restart does)."""
        self.pg("pg_ctl", "restart", "-D", str(self.data), "-l", str(self.log), "-m", "fast",
                "-w", "-t", "120")

    def stop(self) -> None:
        self.pg("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "120",
                check=False)
        if self.socket_dir is not None:
            for leftover in self.socket_dir.glob("*"):
                leftover.unlink(missing_ok=True)
            self.socket_dir.rmdir()
            self.socket_dir = None

    def url(self, database: str) -> str:
        """SQLAlchemy URL of a database, through the socket."""
        return f"postgresql+psycopg2://{DB_USER}@/{database}?host={self.socket_dir}"

    def create_databases(self, *names: str) -> None:
        import psycopg2

        conn = psycopg2.connect(host=str(self.socket_dir), user=DB_USER, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in names:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()


def set_admin(database_url: str, password: str) -> str:
    """Create the admin user, or reset its password to `password`: NNLAB_ADMIN_PASSWORD is the
    admin's password on every start. Returns what was done (no secret in it)."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(database_url)  # MLflow's own schema migrations for its user database
    if not store.has_user(ADMIN):
        store.create_user(ADMIN, password, is_admin=True)
        return f"created admin user '{ADMIN}'"
    if not store.authenticate_user(ADMIN, password):
        store.update_user(ADMIN, password=password)
        return f"reset the password of '{ADMIN}' to {PASSWORD_ENV}"
    return f"admin user '{ADMIN}'"


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def die_with_parent() -> None:
    """In the child: SIGTERM when the server process dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class TeamServer:
    """PostgreSQL + MLflow's tracking server (basic-auth app), started and stopped together."""

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 5000,
                 workers: int = 2) -> None:
        self.root = Path(root).resolve()
        self.host, self.port, self.workers = host, port, workers
        self.postgres: Postgres | None = None
        self.mlflow: subprocess.Popen | None = None
        self._lock: Any = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def _take_lock(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.root / "server.lock", "a+")  # noqa: SIM115 (held while we run)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            holder = self._lock.read().strip() or "?"
            self._lock.close()
            self._lock = None  # not ours: stop() must leave that server's files alone
            raise ServerError(
                f"--root {self.root} is in use by another nnlab.server (pid {holder}). Stop "
                "that one, or choose another --root.") from None
        self._lock.truncate(0)
        self._lock.write(str(os.getpid()))
        self._lock.flush()

    def _secret_key(self) -> str:
        """The Flask secret (CSRF) of this root, kept across restarts, readable by us only."""
        path = self.root / "secret_key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
        return path.read_text().strip()

    def _auth_config(self, database_url: str) -> Path:
        """basic_auth.ini: MLflow's user database in our PostgreSQL. No password in it: the admin
        exists before MLflow starts (see set_admin)."""
        path = self.root / "basic_auth.ini"
        path.write_text(
            "# written by nnlab.server on every start\n[mlflow]\ndefault_permission = READ\n"
            f"database_uri = {database_url}\nadmin_username = {ADMIN}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "# A login is a PBKDF2 hash (~0.5 s of CPU here) on every request unless cached: keep\n"
            "# checked credentials 60 s per worker (a password change reaches the other worker\n"
            "# within that time).\n"
            f"auth_cache_ttl_seconds = {AUTH_CACHE_S}\n")
        return path

    def start(self) -> None:
        password = admin_password()
        if not port_free(self.host, self.port):
            raise ServerError(f"--port {self.port} on {self.host} is in use (another server?). "
                              "Stop it, or choose another --port.")
        self._take_lock()
        self.postgres = Postgres(self.root)
        created = self.postgres.prepare()
        self.postgres.start()
        self.postgres.create_databases("mlflow", "mlflow_auth")
        admin = set_admin(self.postgres.url("mlflow_auth"), password)
        (self.root / "artifacts").mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
        # MLflow's GenAI job runner (8 more Python processes) serves nothing nnlab logs.
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        env.update(MLFLOW_AUTH_CONFIG_PATH=str(self._auth_config(self.postgres.url("mlflow_auth"))),
                   MLFLOW_FLASK_SERVER_SECRET_KEY=self._secret_key())
        command = [sys.executable, "-m", "mlflow", "server",
                   "--backend-store-uri", self.postgres.url("mlflow"),
                   "--artifacts-destination", (self.root / "artifacts").as_uri(),
                   "--host", self.host, "--port", str(self.port),
                   "--workers", str(self.workers), "--app-name", "basic-auth"]
        self.mlflow = subprocess.Popen(command, env=env, start_new_session=True,
                                       preexec_fn=die_with_parent)
        self._wait_ready()
        (self.root / "server.json").write_text(json.dumps({
            "pid": os.getpid(), "mlflow_pid": self.mlflow.pid, "url": self.url,
            "postgres_data": str(self.postgres.data), "socket_dir": str(self.postgres.socket_dir),
        }, indent=1) + "\n")
        version = (self.postgres.data / "PG_VERSION").read_text().strip()
        print(f"nnlab.server: MLflow at {self.url} on PostgreSQL {version} "
              f"({'new' if created else 'existing'} data in {self.root}); {admin}, password from "
              f"{PASSWORD_ENV}; artifacts in {self.root / 'artifacts'}. Ctrl-C stops both.",
              flush=True)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.mlflow.poll() is not None:
                raise ServerError(f"mlflow server exited with code {self.mlflow.returncode} "
                                  "while starting; its output is above.")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise ServerError(f"mlflow server did not answer on {self.url} within "
                          f"{START_TIMEOUT_S} s.")

    def wait(self) -> int:
        """Block until MLflow exits by itself (returns its code) or a signal stops us."""
        while self.mlflow.poll() is None:
            time.sleep(0.5)
        print(f"nnlab.server: mlflow server exited (code {self.mlflow.returncode}); stopping "
              "PostgreSQL.", file=sys.stderr, flush=True)
        return 1

    def stop(self) -> None:
        """MLflow first (no request may find the database gone), then PostgreSQL."""
        if self.mlflow is not None and self.mlflow.poll() is None:
            try:
                os.killpg(self.mlflow.pid, signal.SIGTERM)
                self.mlflow.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.mlflow.pid, signal.SIGKILL)
                self.mlflow.wait()
            except ProcessLookupError:
                pass
        if self.postgres is not None:
            self.postgres.stop()
        if self._lock is not None:  # only the server holding the root's lock owns its files
            (self.root / "server.json").unlink(missing_ok=True)
            self._lock.close()
            self._lock = None


def _stop_on_signal(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nnlab.server", description=__doc__.split("\n\n")[1],
        epilog=f"The admin user '{ADMIN}' takes its password from ${PASSWORD_ENV} (required). "
               "Clients set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.")
    parser.add_argument("--root", default="mlruns/server",
                        help="folder of the server's data: PostgreSQL, artifacts, logs "
                             "(default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default: %(default)s; 0.0.0.0 for the LAN)")
    parser.add_argument("--port", type=int, default=5000, help="(default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2,
                        help="MLflow server worker processes (default: %(default)s)")
    args = parser.parse_args(argv)
    server = TeamServer(args.root, args.host, args.port, args.workers)
    for sig in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored (&)
        signal.signal(sig, _stop_on_signal)
    code = 0
    try:
        server.start()
        code = server.wait()
    except ServerError as err:
        print(f"nnlab.server: error: {err}", file=sys.stderr, flush=True)
        code = 2
    except KeyboardInterrupt:
        print("nnlab.server: stopping MLflow and PostgreSQL", file=sys.stderr, flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the stop
            signal.signal(sig, signal.SIG_IGN)
        server.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
