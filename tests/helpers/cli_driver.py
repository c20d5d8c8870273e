"""Runs nnlab's real entry point (nnlab.__main__.main) once per case, in one process: each case in
its own folder, with its own arguments and environment variables; writes each one's exit code,
stdout, stderr and seconds as JSON. One interpreter start (and one import of torch, Lightning and
MLflow) for a table of CLI cases whose point is what the command does, not a new process.

    python cli_driver.py CASES.json RESULTS.json

CASES.json: [{"cwd": folder, "args": [...], "env": {name: value}}, ...]. Output is captured at
the file descriptors, so it holds what a subprocess would print (loggers' lines included)."""

import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra

import nnlab.__main__ as entry


@contextlib.contextmanager
def captured(into: dict):
    """Everything the block prints at fds 1 and 2, into into["stdout"] and into["stderr"]."""
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            for name, file in (("stdout", out), ("stderr", err)):
                file.seek(0)
                into[name] = file.read().decode(errors="replace")


@contextlib.contextmanager
def environment(cwd: str, env: dict[str, str]):
    """The case's folder and environment variables, put back afterwards."""
    before_cwd, before_env = os.getcwd(), {k: os.environ.get(k) for k in env}
    os.chdir(cwd)
    os.environ.update(env)
    try:
        yield
    finally:
        os.chdir(before_cwd)
        for key, value in before_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def fresh_stores() -> None:
    """Forget MLflow's stores: it keeps one store and one database engine per URI string for the
    process, and the default URI (sqlite:///mlruns/mlflow.db) is relative to each case's folder;
    each case opens its own, as a new process would."""
    if "mlflow" not in sys.modules:
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry

    for engine in SqlAlchemyStore._engine_map.values():
        engine.dispose()
    SqlAlchemyStore._engine_map.clear()
    TrackingStoreRegistry._get_store_with_resolved_uri.cache_clear()


def run(case: dict) -> dict:
    fresh_stores()
    result: dict = {"args": case["args"], "code": 0}
    start = time.monotonic()
    with environment(case["cwd"], case.get("env", {})), captured(result):
        sys.argv = ["nnlab", *case["args"]]
        try:
            entry.main()
        except SystemExit as exit_:
            code = exit_.code
            result["code"] = code if isinstance(code, int) else (0 if code is None else 1)
        except BaseException as err:  # noqa: BLE001 - reported to the test as a failure
            traceback.print_exc()  # as the interpreter would print it, into the case's stderr
            result["code"] = f"raised {type(err).__name__}: {err}"
        finally:
            GlobalHydra.instance().clear()
    result["seconds"] = time.monotonic() - start
    return result


if __name__ == "__main__":
    cases = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps([run(case) for case in cases]))
