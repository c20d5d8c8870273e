"""`python -m nnlab.report <experiment>`: the command is nnlab.report.cli's."""

import gc
import sys

from nnlab.report.cli import main

if __name__ == "__main__":
    code = main()
    gc.freeze()  # no collections at exit over torch's and MLflow's objects (see nnlab.__main__)
    sys.exit(code)
