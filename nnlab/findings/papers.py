"""The papers' figures drawn from a study's runs: He et al. 2015's training error curves, Glorot &
Bengio 2010's activations over training and per-layer histograms at init."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnlab.tracking import tags


def histories(client: Any, run: Any, metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric of one run, in step order."""
    found = sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
    return [m.step for m in found], [m.value for m in found]


def he_figures(client: Any, runs: Sequence[Any], out: Path) -> list[str]:
    """He et al. 2015 Figs. 2-3: the training error of each depth, per epoch, both inits."""
    # lazy: matplotlib and torch load only when a figure is drawn
    from nnlab.figures import png_bytes, training_error_panels

    panels: dict[str, dict[str, list[list[float]]]] = {}
    for run in sorted(runs, key=lambda r: (int(r.data.params["model.depth"]),
                                           r.data.params["init.name"])):
        depth = int(run.data.params["model.depth"]) + 1  # + the output layer
        _, acc = histories(client, run, "train/acc_epoch")
        panels.setdefault(f"{depth} weight layers", {}).setdefault(
            run.data.params["init.name"], []).append([1 - a for a in acc])
    figure = training_error_panels(panels, "Training error per epoch (He et al. 2015 Figs. 2-3)")
    (out / "he_training_error.png").write_bytes(png_bytes(figure))
    return ["### The paper's figure: training error per epoch (He et al. Figs. 2-3)", "",
            "Each seed a thin line, the mean a thick one; error = 1 - training accuracy of the "
            "epoch.", "", "![training error](he_training_error.png)", ""]


def layer_values_at_init(overrides: Sequence[str], examples: int = 512
                         ) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """The study's net as initialised (seed 0): each hidden layer's activation values and
    back-propagated gradients (d loss / d pre-activation) on a batch of training images."""
    import torch

    # lazy: building the net loads torch and Lightning, only for this figure
    from nnlab.api import compose
    from nnlab.config import validate
    from nnlab.engine.build import build_datamodule, build_model, data_info

    cfg = compose(*overrides)
    validate(cfg)
    torch.manual_seed(cfg.seed)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, data_info(datamodule).input_shape, data_info(datamodule).num_outputs)
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][:-1]
    acts: list[tuple[str, Any]] = []
    grads: list[tuple[str, Any]] = []
    hooks = []
    for name, layer in linears:
        position = list(dict(model.named_modules())).index(name)
        activation = list(model.modules())[position + 1]  # the module after the Linear
        hooks.append(activation.register_forward_hook(
            lambda _m, _i, y, name=name: acts.append((name, y.detach()))))
        hooks.append(layer.register_full_backward_hook(
            lambda _m, _gi, go, name=name: grads.append((name, go[0].detach()))))
    split = datamodule.splits["train"]
    x = split.x[:examples].clone().requires_grad_(True)  # so the backward hooks see inputs
    loss = torch.nn.functional.cross_entropy(model(x), split.y[:examples])
    loss.backward()
    for hook in hooks:
        hook.remove()
    return acts, grads[::-1]  # backward ran output first


def glorot_figures(client: Any, runs: Sequence[Any], out: Path) -> list[str]:
    """Glorot & Bengio 2010 Fig. 2 (sigmoid activations per layer over training, seed 0) and
    Figs. 6-7 (tanh activations and back-propagated gradients per layer at init)."""
    # lazy: matplotlib and torch load only when a figure is drawn
    from nnlab.figures import activations_over_training, layer_histograms, png_bytes

    panels: dict[str, dict[str, tuple[list[int], list[float], list[float]]]] = {}
    for run in runs:
        p = run.data.params
        if p.get("activation.name") != "sigmoid" or p.get("seed") != "0":
            continue
        layers = [n for n in run.data.tags.get(tags.LAYERS, "").split(",") if n][:-1]
        label = f"sigmoid, {p['init.name']} init (seed 0)"
        for name in layers:
            act = f"net.{int(name.split('.')[1]) + 1}"  # the activation after Linear net.i
            every = "_step" if f"act_mean/{act}_step" in run.data.metrics else ""  # else epochs
            steps, means = histories(client, run, f"act_mean/{act}{every}")
            _, sds = histories(client, run, f"act_std/{act}{every}")
            if steps:
                panels.setdefault(label, {})[act] = (steps, means, sds)
    lines = []
    if panels:
        figure = activations_over_training(dict(sorted(panels.items())), "Sigmoid activation "
                                           "values per hidden layer (Glorot & Bengio 2010 Fig. 2)")
        (out / "glorot_fig2_activations.png").write_bytes(png_bytes(figure))
        lines += ["### The paper's Fig. 2: sigmoid activation values per layer over training", "",
                  "Mean over the batches since the last point (every 10 optimiser steps), bars: "
                  "one sd of the layer's outputs.", "",
                  "![Fig. 2](glorot_fig2_activations.png)", ""]
    study = ["experiment=glorot_init_study", "activation=tanh", "seed=0"]
    found = {init: layer_values_at_init([*study, f"init={init}"]) for init in ("standard",
                                                                                 "xavier")}
    for index, (kind, xlabel, fig) in enumerate((("activation values", "tanh output", 6),
                                                 ("back-propagated gradients", "d loss / d s",
                                                  7))):
        figure = layer_histograms({f"tanh, {init} init": values[index]
                                   for init, values in found.items()},
                                  f"{kind} per layer at init (Glorot & Bengio 2010 Fig. {fig})",
                                  xlabel)
        (out / f"glorot_fig{fig}_init.png").write_bytes(png_bytes(figure))
        lines += [f"### The paper's Fig. {fig}: {kind} per layer at init, both inits", "",
                  "The study's tanh net built with seed 0 (as the runs start), one batch of 512 "
                  "training images.", "", f"![Fig. {fig}](glorot_fig{fig}_init.png)", ""]
    return lines


PAPER_FIGURES = {"he_init_study": he_figures, "glorot_init_study": glorot_figures}
