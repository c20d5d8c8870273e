"""Runs nnlab's real entry point (nnlab.__main__.main) once per argument list, in one process,
and prints each one's exit code and stderr as JSON: one interpreter start for a table of cases."""

import contextlib
import io
import json
import sys

from hydra.core.global_hydra import GlobalHydra

import nnlab.__main__ as entry

results = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["nnlab", *args]
    stderr = io.StringIO()
    code: object = 0
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            entry.main()
        except SystemExit as exit_:
            code = exit_.code
        except BaseException as err:  # noqa: BLE001 - reported to the test as a failure
            code = f"raised {type(err).__name__}: {err}"
    GlobalHydra.instance().clear()
    results.append({"args": args, "code": code, "stderr": stderr.getvalue()})
print(json.dumps(results))
