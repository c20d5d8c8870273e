"""Figures as pure functions: numbers in, a matplotlib Figure (a study's) or PNG/GIF bytes (a
run's instruments) out.

No function here reads MLflow, a trainer or a config; callers (nnlab.engine.instruments,
nnlab.report) collect the numbers and save or log what comes back. matplotlib is imported on
first use. canvas: headless matplotlib, PNG encoding, the cache of built figures; per_run and
boundary: a run's instruments figures; study: a study's and the papers' figures.
"""

from nnlab.figures.boundary import (
    BOUNDARY_ALPHA,
    BoundaryFrame,
    boundary_gif,
    boundary_strip,
    decision_boundary,
)
from nnlab.figures.canvas import DPI, KEEP, png_bytes, pyplot
from nnlab.figures.per_run import (
    confusion_matrix,
    feature_maps,
    kernel_grid,
    learning_curves,
    mosaic,
    weight_histograms,
)
from nnlab.figures.study import (
    activation_panels,
    activations_over_training,
    gradient_profiles,
    layer_histograms,
    learning_curve_bands,
    training_error_panels,
)

__all__ = ["BOUNDARY_ALPHA", "DPI", "KEEP", "BoundaryFrame", "activation_panels",
           "activations_over_training", "boundary_gif", "boundary_strip", "confusion_matrix",
           "decision_boundary", "feature_maps", "gradient_profiles", "kernel_grid",
           "layer_histograms", "learning_curve_bands", "learning_curves", "mosaic", "png_bytes",
           "pyplot", "training_error_panels", "weight_histograms"]
