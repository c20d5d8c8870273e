"""`python -m nnlab.findings`: the command is nnlab.findings.cli's."""

import gc
import sys

from nnlab.findings.cli import main

if __name__ == "__main__":
    code = main()
    gc.freeze()  # no collections at exit over torch's and MLflow's objects (see nnlab.__main__)
    sys.exit(code)
