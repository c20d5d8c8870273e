"""nnlab from Python (a notebook, a script): the CLI's commands as functions with the CLI's
semantics, returning results that are DataFrames and render themselves in Jupyter.

    nnlab.train("model=lenet5", "init=kaiming")             # python -m nnlab model=lenet5 ...
    nnlab.sweep("init=xavier,kaiming", "seed=0,1")           # python -m nnlab -m ...
    nnlab.compare("init_study")                              # python -m nnlab.report init_study
"""

from nnlab.api._compare import Report, compare
from nnlab.api._launch import sweep, train
from nnlab.api._results import RunResult, SweepResult

__all__ = ["Report", "RunResult", "SweepResult", "compare", "sweep", "train"]
