"""A study's figures and the gallery's (matplotlib Figures): seed bands, gradient profiles,
activation curves, and the papers' figures drawn from a study's runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nnlab.figures.canvas import pyplot

# -- learning curves of a study -----------------------------------------------------------------


def learning_curve_bands(curves: Mapping[str, Mapping[str, Sequence[Sequence[float]]]]) -> Any:
    """One panel per metric: per option, the mean over seeds per epoch and a band of one sample
    sd either side (no band where an option has one seed).

    `curves`: metric -> option label -> one per-epoch curve per seed (cut to the shortest).
    """
    plt = pyplot()
    keys = [k for k, by_option in curves.items() if any(by_option.values())]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4.6 * max(1, len(keys)), 3.8),
                             squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        for label, seeds in curves[key].items():
            seeds = [list(c) for c in seeds if len(c)]
            if not seeds:
                continue
            length = min(map(len, seeds))
            values = torch.tensor([c[:length] for c in seeds], dtype=torch.float64)
            epochs = range(1, length + 1)
            mean = values.mean(0)
            (line,) = ax.plot(epochs, mean.numpy(), marker="." if length < 30 else None,
                              label=f"{label} (n={len(seeds)})")
            if len(seeds) > 1:
                sd = values.std(0, correction=1)
                ax.fill_between(epochs, (mean - sd).numpy(), (mean + sd).numpy(),
                                color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set(title=f"{key}: mean ± sd over seeds", xlabel="epoch")
        if "loss" in key and all(v > 0 for s in curves[key].values() for c in s for v in c):
            ax.set_yscale("log")
    if keys:
        axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


# -- studies and the gallery ------------------------------------------------------------------


def gradient_profiles(panels: Mapping[tuple[str, ...], Sequence[tuple[str, Sequence[float]]]]
                      ) -> Any:
    """One panel per architecture (its layer names): each option's gradient norm per layer."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (names, lines) in zip(axes[0], panels.items(), strict=True):
        for label, norms in lines:
            ax.plot(range(len(names)), [max(v, 1e-12) for v in norms], marker="o", label=label)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
        ax.set(title="gradient norm per layer, last epoch (input -> output)",
               ylabel="||grad||")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def activation_panels(curves: Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                      ) -> Any:
    """One panel per activation: f(x) and its derivative."""
    plt = pyplot()
    cols = 4
    rows = -(-len(curves) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, (name, (x, y, grad)) in zip(axes.flat, curves.items(), strict=False):
        ax.plot(x, y, label="f(x)")
        ax.plot(x, grad, "--", label="f'(x) (autograd)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_title(name)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    fig.suptitle("activations and their derivatives")
    fig.tight_layout()
    return fig


# -- the papers' figures, from a study's runs ---------------------------------------------------


def training_error_panels(panels: Mapping[str, Mapping[str, Sequence[Sequence[float]]]],
                          title: str) -> Any:
    """He et al. 2015 Figs. 2-3: training error (1 - training accuracy) per epoch, one panel
    per architecture; each seed a thin line, the mean over seeds a thick one.

    `panels`: panel title -> option label -> one per-epoch error curve per seed.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False,
                             sharey=True)
    for ax, (name, options) in zip(axes[0], panels.items(), strict=True):
        for i, (label, seeds) in enumerate(options.items()):
            color = f"C{i}"
            for curve in seeds:
                ax.plot(range(1, len(curve) + 1), curve, color=color, alpha=0.3, linewidth=0.8)
            length = min((len(c) for c in seeds), default=0)
            if length:
                mean = torch.tensor([c[:length] for c in seeds], dtype=torch.float64).mean(0)
                ax.plot(range(1, length + 1), mean.numpy(), color=color, linewidth=2.2,
                        label=f"{label} (n={len(seeds)})")
        ax.set(title=name, xlabel="epoch", ylim=(0, 1))
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("training error")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def activations_over_training(panels: Mapping[str, Mapping[str, tuple[Sequence[float],
                              Sequence[float], Sequence[float]]]], title: str) -> Any:
    """Glorot & Bengio 2010 Fig. 2: per hidden layer, the mean activation value over training
    with bars of one sd (the spread of the layer's outputs), one panel per option.

    `panels`: option label -> layer name -> (steps, means, sds).
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (label, layers) in zip(axes[0], panels.items(), strict=True):
        for i, (layer, (steps, means, sds)) in enumerate(layers.items()):
            every = max(1, len(steps) // 25)  # bars on about 25 points, as in the paper
            ax.plot(steps, means, color=f"C{i}", label=f"layer {i + 1} ({layer})")
            ax.errorbar(steps[::every], means[::every], yerr=sds[::every], color=f"C{i}",
                        fmt="none", linewidth=0.8, capsize=1.5)
        ax.set(title=label, xlabel="optimiser step")
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("activation value (mean ± sd)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def layer_histograms(panels: Mapping[str, Sequence[tuple[str, torch.Tensor]]],
                     title: str, xlabel: str, bins: int = 80) -> Any:
    """Glorot & Bengio 2010 Figs. 6-7: the normalised histogram of every layer's values
    overlaid (one line per layer), one panel per option, on a shared x range.

    `panels`: option label -> (layer name, that layer's values) from input to output.
    """
    plt = pyplot()
    everything = torch.cat([v.flatten().float() for layers in panels.values() for _, v in layers])
    low, high = torch.quantile(everything[::max(1, len(everything) // 100_000)],
                               torch.tensor([0.005, 0.995], dtype=torch.float32)).tolist()
    if not high > low:
        low, high = low - 1, high + 1
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.4, 2.6 * len(panels)), squeeze=False,
                             sharex=True)
    for ax, (label, layers) in zip(axes[:, 0], panels.items(), strict=True):
        for i, (name, values) in enumerate(layers):
            counts, edges = torch.histogram(values.flatten().float().clamp(low, high), bins=bins,
                                            range=(low, high))
            ax.plot(((edges[1:] + edges[:-1]) / 2).numpy(), (counts / counts.sum()).numpy(),
                    color=f"C{i}", label=f"layer {i + 1} ({name}), sd {values.std():.2g}")
        ax.set(title=label, ylabel="fraction")
        ax.legend(fontsize=6)
    axes[-1][0].set_xlabel(xlabel)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
