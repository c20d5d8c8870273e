"""nnlab from Python (a notebook, a script): the CLI's commands as functions with the CLI's
semantics, returning results that are DataFrames and render themselves in Jupyter.

    nnlab.train("model=lenet5", "init=kaiming")             # python -m nnlab model=lenet5 ...
    nnlab.sweep("init=xavier,kaiming", "seed=0,1")           # python -m nnlab -m ...
    nnlab.compare("init_study")                              # python -m nnlab.report init_study
"""

from nnlab.quiet import quiet

quiet()  # first: importing MLflow and Lightning warns about what a user cannot act on

from nnlab.api._compare import Report, compare  # noqa: E402
from nnlab.api._hydra import compose, sweep, train  # noqa: E402
from nnlab.api._results import RunResult, SweepResult  # noqa: E402

__all__ = ["Report", "RunResult", "SweepResult", "compare", "compose", "sweep", "train"]
