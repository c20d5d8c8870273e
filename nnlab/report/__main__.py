"""`python -m nnlab.report <experiment>`: the command is nnlab.report.cli's."""

import sys

from nnlab.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
