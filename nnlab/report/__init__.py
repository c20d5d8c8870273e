"""`python -m nnlab.report`: a study's runs from MLflow, compared over seeds (the command: cli).

grouping: the FINISHED runs and the groups of options that vary; stats: summaries, t tests,
Holm, TOST, power; ranking: each metric's verdict; tables: markdown and terminal tables; output:
report.md, its figures, report.html and the report's MLflow run.
"""

from nnlab.report.cli import folder_name, main
from nnlab.report.grouping import (
    MONITORED,
    NOT_OPTIONS,
    Group,
    failed_runs,
    group_runs,
    load_runs,
    nothing_to_compare,
    report_metrics,
    shown_metrics,
    varying_options,
)
from nnlab.report.output import (
    CURVES,
    layer_gradients,
    log_report,
    plot_gradients,
    plot_learning_curves,
    report_experiment,
    seed_curves,
    write_report,
)
from nnlab.report.ranking import (
    LOWER_IS_BETTER,
    WEAK_N,
    WIDTH,
    Comparison,
    Verdict,
    describe,
    fit,
    higher_is_better,
    verdicts,
)
from nnlab.report.stats import (
    ALPHA,
    POWER,
    Summary,
    detectable_difference,
    holm,
    seeds_needed,
    spread,
    summarize,
    t_test,
    tost,
)
from nnlab.report.tables import (
    HEADER,
    TERMINAL,
    add_seeds_command,
    markdown_table,
    power_cells,
    print_tables,
    rows,
    terminal_rows,
    wrapped,
)

__all__ = [
    "ALPHA", "CURVES", "HEADER", "LOWER_IS_BETTER", "MONITORED", "NOT_OPTIONS", "POWER",
    "TERMINAL", "WEAK_N", "WIDTH", "Comparison", "Group", "Summary", "Verdict",
    "add_seeds_command", "describe", "detectable_difference", "failed_runs", "fit", "folder_name",
    "group_runs", "higher_is_better", "holm", "layer_gradients", "load_runs", "log_report", "main",
    "markdown_table", "nothing_to_compare", "plot_gradients", "plot_learning_curves",
    "power_cells", "print_tables", "report_experiment", "report_metrics", "rows", "seed_curves",
    "seeds_needed", "shown_metrics", "spread", "summarize", "t_test", "terminal_rows", "tost",
    "varying_options", "verdicts", "wrapped", "write_report",
]
