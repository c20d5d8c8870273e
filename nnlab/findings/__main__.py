"""`python -m nnlab.findings`: the command is nnlab.findings.cli's."""

import sys

from nnlab.findings.cli import main

if __name__ == "__main__":
    sys.exit(main())
