"""`python -m nnlab.findings` (`make findings`): run the studies, write docs/findings.md (the
command: cli).

studies: the studies with their claims and targets; claims: the tests of those on a study's runs;
papers: the papers' figures from the runs; document: the findings document.
"""

from nnlab.findings.claims import (
    ClaimResult,
    TargetResult,
    check_claims,
    check_targets,
    holm_family,
    matching,
    run_value,
    seed_values,
)
from nnlab.findings.cli import main, run_study, shown, study_seeds, sweep_command
from nnlab.findings.document import machine, span_seconds, study_section, write_findings
from nnlab.findings.papers import (
    PAPER_FIGURES,
    glorot_figures,
    he_figures,
    histories,
    layer_values_at_init,
)
from nnlab.findings.studies import (
    BY_NAME,
    CE,
    D14,
    D30,
    DEFAULT_SEEDS,
    DEFAULT_SGD,
    DEFAULT_STUDIES,
    KAIMING,
    MSE,
    MSE_LOGITS,
    RELU,
    SIGMOID,
    STUDIES,
    TANH,
    XAVIER,
    Claim,
    Study,
    Target,
)

__all__ = [
    "BY_NAME", "CE", "DEFAULT_SEEDS", "DEFAULT_STUDIES", "D14", "D30", "DEFAULT_SGD", "KAIMING",
    "MSE", "MSE_LOGITS", "PAPER_FIGURES",
    "RELU", "SIGMOID", "STUDIES", "TANH", "XAVIER", "Claim", "ClaimResult", "Study", "Target",
    "TargetResult", "check_claims", "check_targets", "glorot_figures", "he_figures", "histories",
    "holm_family", "layer_values_at_init", "machine", "main", "matching", "run_study", "run_value",
    "seed_values", "shown", "span_seconds", "study_section", "study_seeds", "sweep_command",
    "write_findings",
]
