"""`python -m nnlab.findings` (`make findings`): run the studies, then write docs/findings.md.

For each study below: a fresh MLflow store (`<store>/<study>/mlflow.db`), one multirun of
`experiment=<study>` in the chosen mode with the chosen seeds (plus the study's grid cut, said in
the document), its wall time, `nnlab.report`'s tables and verdicts, and the study's claims, each
tested directly (option vs option on one metric: paired t over seeds, or Welch's t, Holm-
corrected across the study's claims). Nothing in the written document is typed by hand but the
claims' wording.

    python -m nnlab.findings                        # full mode, every study (about an hour)
    python -m nnlab.findings --mode quick --studies loss_regression_study --seeds 2
    python -m nnlab.findings --report-only          # re-read existing stores, rewrite the doc
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nnlab.report import (
    ALPHA,
    WEAK_N,
    detectable_difference,
    higher_is_better,
    holm,
    load_runs,
    log_report,
    seeds_needed,
    spread,
    summarize,
    t_test,
    tost,
    write_report,
)
from nnlab.tracking import MlflowClient, tags


@dataclass
class Claim:
    """`better` beats `worse` on `metric` (higher or lower as the metric goes), among the runs
    matching `where`; each dict maps a param (e.g. `init.name`) to its value. With `margin`, an
    equivalence claim instead: the two differ by less than `margin` (two one-sided tests).
    `epoch`: the metric after that epoch (the paper's budget); None: the run's final value.
    `paper`: what the cited paper reports. Primary claims form the study's Holm family;
    secondary ones are tested alone and marked so."""

    text: str
    metric: str
    better: dict[str, str]
    worse: dict[str, str]
    where: dict[str, str] = field(default_factory=dict)
    paper: str = ""
    epoch: int | None = None
    margin: float | None = None
    primary: bool = True


@dataclass
class Target:
    """The runs matching `where` reach `at_least` on `metric` (one-sided one-sample t-test); with
    `below`, they stay under it."""

    text: str
    metric: str
    at_least: float
    where: dict[str, str] = field(default_factory=dict)
    paper: str = ""
    epoch: int | None = None
    below: bool = False
    primary: bool = True


@dataclass
class Study:
    name: str
    title: str
    claims: list[Claim]
    targets: list[Target] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)  # grid cut in quick mode
    full: list[str] = field(default_factory=list)  # grid cut in full mode
    # full mode: the seeds per option the study runs when --seeds is not given: the number its
    # 5-seed pilot's power analysis asked for, or a time cap (the yaml header says which)
    seeds: int | None = None


DEFAULT_SEEDS = 5
RELU, TANH, SIGMOID = ({"activation.name": a} for a in ("relu", "tanh", "sigmoid"))
KAIMING, XAVIER = {"init.name": "kaiming_normal"}, {"init.name": "xavier_normal"}
D14, D30 = {"model.depth": "13"}, {"model.depth": "29"}  # + the head: 14 and 30 weight layers
DEFAULT_SGD = {"optimizer.lr": "0.05", "optimizer.momentum": "0.9"}
CE, MSE, MSE_LOGITS = ({"loss.name": n} for n in ("cross_entropy", "mse", "mse_logits"))

STUDIES = [
    Study("he_init_study", "He et al. 2015: Kaiming vs Xavier in a deep plain ReLU net", [
        Claim("30 layers: Kaiming's init trains, Xavier's stalls (training accuracy, last epoch)",
              "train/acc_epoch", KAIMING, XAVIER, D30,
              paper="Fig. 3: the 30-layer net with Xavier init 'completely stalls', theirs "
                    "converges"),
        Claim("14 layers: the two inits end equal (test accuracy within +-0.01)", "test/acc",
              KAIMING, XAVIER, D14, margin=0.01,
              paper="14-layer model: 33.90% vs 33.82% top-1 error (ImageNet, as issue 21 "
                    "cites it), no difference"),
        Claim("14 layers: Kaiming's init is ahead after epoch 1 (training accuracy)",
              "train/acc_epoch", KAIMING, XAVIER, D14, epoch=1, primary=False,
              paper="Fig. 2 (22 layers): both converge, theirs starts reducing the error "
                    "earlier"),
    ], [Target("30 layers, Xavier: training accuracy stays at chance level (below 0.2) in the "
               "last epoch", "train/acc_epoch", 0.2, {**XAVIER, **D30}, below=True,
               paper="Fig. 3: the error does not go down at all")],
          quick=["model.depth=3,13"]),
    Study("glorot_init_study", "Glorot & Bengio 2010: standard vs normalized init, sigmoid and "
          "tanh", [
        Claim("tanh: the normalized init ends with a higher test accuracy than the standard one",
              "test/acc", {"init.name": "xavier"}, {"init.name": "standard"}, TANH,
              paper="Table 1 (MNIST): test error 1.64% (tanh, normalized) vs 1.76% (standard)"),
        Claim("standard init: tanh ends with a higher test accuracy than sigmoid", "test/acc",
              TANH, SIGMOID, {"init.name": "standard"}, primary=False,
              paper="Table 1 (MNIST): test error 1.76% (tanh) vs 2.21% (sigmoid)"),
    ], [Target("sigmoid, standard init: the top hidden layer saturates at 0 in epoch 1 (its mean "
               "output below 0.1)", "act_mean/net.10", 0.1, {**SIGMOID, "init.name": "standard"},
               epoch=1, below=True,
               paper="Fig. 2: the top hidden layer's mean sigmoid output quickly drops to ~0")]),
    Study("activation_study", "Vanishing gradients: sigmoid vs tanh vs ReLU in a deep MLP", [
        Claim("ReLU's first-layer gradient norm is larger than sigmoid's (epoch 1)",
              "grad_norm/net.1", RELU, SIGMOID, epoch=1,
              paper="sigmoid' <= 1/4: the gradient shrinks layer by layer (Glorot & Bengio "
                    "2010, Sec. 4.2)"),
        Claim("tanh's first-layer gradient norm is larger than sigmoid's (epoch 1)",
              "grad_norm/net.1", TANH, SIGMOID, epoch=1,
              paper="tanh' <= 1 (sigmoid' <= 1/4) near 0"),
        Claim("ReLU trains the 10-layer MLP to a higher test accuracy than sigmoid", "test/acc",
              RELU, SIGMOID, primary=False, paper="Glorot, Bordes & Bengio 2011"),
        Claim("tanh trains the 10-layer MLP to a higher test accuracy than sigmoid", "test/acc",
              TANH, SIGMOID, primary=False, paper="Glorot & Bengio 2010, Table 1"),
    ]),
    Study("dropout_study", "Srivastava et al. 2014: dropout in the over-fitting regime", [
        Claim("dropout 0.5 gives a higher test accuracy (1,000 training images)", "test/acc",
              {"model.dropout": "0.5"}, {"model.dropout": "0.0"},
              paper="Fig. 9: with 1K training examples dropout lowers the test error"),
        Claim("dropout 0.5 gives a lower test loss (1,000 training images)", "test/loss",
              {"model.dropout": "0.5"}, {"model.dropout": "0.0"},
              paper="Sec. 7.4: dropout prevents over-fitting"),
    ], [Target("without dropout the net fits its training set (training accuracy >= 0.99 in the "
               "last epoch): the over-fitting regime", "train/acc_epoch", 0.99,
               {"model.dropout": "0.0"}, primary=False, paper="the regime of Fig. 9")],
          seeds=11),
    Study("optimizer_study", "Kingma & Ba 2015: plain SGD vs Nesterov momentum vs Adam", [
        Claim("Nesterov momentum lowers the training loss after epoch 1 vs plain SGD",
              "train/loss_epoch", {"optimizer.name": "sgd_nesterov"},
              {"optimizer.name": "sgd_plain"}, epoch=1,
              paper="Sutskever et al. 2013: momentum speeds SGD up"),
        Claim("Adam lowers the training loss after epoch 1 vs plain SGD", "train/loss_epoch",
              {"optimizer.name": "adam"}, {"optimizer.name": "sgd_plain"}, epoch=1,
              paper="Fig. 2: Adam's training cost falls fastest"),
        Claim("Adam's training loss is below SGD with Nesterov momentum's after epoch 3",
              "train/loss_epoch", {"optimizer.name": "adam"}, {"optimizer.name": "sgd_nesterov"},
              paper="Fig. 2 (MNIST multilayer net): Adam below SGDNesterov throughout"),
    ]),
    Study("loss_study", "Cross-entropy vs squared error", [
        Claim("cross-entropy learns faster than squared error on softmax outputs (training "
              "accuracy after epoch 1)", "train/acc_epoch", CE, MSE, epoch=1,
              paper="Golik et al. 2013; Glorot & Bengio 2010, Fig. 5: fewer plateaus with "
                    "cross-entropy"),
        Claim("squared error on raw outputs ends on par with cross-entropy (test accuracy within "
              "+-0.01)", "test/acc", CE, MSE_LOGITS, margin=0.01,
              paper="Hui & Belkin 2021: the square loss matches cross-entropy's accuracy"),
        Claim("cross-entropy learns faster than squared error on raw outputs (training accuracy "
              "after epoch 1)", "train/acc_epoch", CE, MSE_LOGITS, epoch=1, primary=False,
              paper="Hui & Belkin 2021 compare final accuracy only"),
    ]),
    Study("init_study", "Symmetry: zero and constant init", [
        Claim("all-zero init cannot break symmetry: worse than Kaiming (LeNet-5, ReLU)",
              "test/acc", KAIMING, {"init.name": "zeros"},
              paper="Goodfellow et al. 2016, Sec. 8.4: units must start different"),
        Claim("a constant init cannot break symmetry: worse than Kaiming (LeNet-5, ReLU)",
              "test/acc", KAIMING, {"init.name": "constant"}, paper="idem"),
    ]),
    Study("loss_regression_study", "Losses for regression with outliers", [
        Claim("SmoothL1 beats MSE on a clean test set after training on outliers", "test/mse",
              {"loss.name": "smooth_l1"}, {"loss.name": "mse"},
              paper="Huber 1964: a loss linear in large errors is robust to outliers"),
        Claim("L1 beats MSE on a clean test set after training on outliers", "test/mse",
              {"loss.name": "l1"}, {"loss.name": "mse"}, paper="idem (the median is robust)"),
    ]),
    Study("lenet5_card", "The card's sweep: LeNet-5, Xavier/Kaiming x sigmoid/ReLU", [
        Claim("ReLU trains LeNet-5 better than sigmoid (Xavier init)", "test/acc", RELU, SIGMOID,
              {"init.name": "xavier"}, paper="Glorot, Bordes & Bengio 2011"),
        Claim("ReLU trains LeNet-5 better than sigmoid (Kaiming init)", "test/acc", RELU, SIGMOID,
              {"init.name": "kaiming"}, paper="Glorot, Bordes & Bengio 2011"),
        Claim("with ReLU, Xavier and Kaiming end equal at 5 layers (test accuracy within +-0.01)",
              "test/acc", {"init.name": "kaiming"}, {"init.name": "xavier"}, RELU, margin=0.01,
              paper="He et al. 2015: the inits differ only in much deeper nets"),
    ], seeds=10),
    Study("lenet5_kaiming_sgd", "Why init=kaiming does worse with the default SGD on LeNet-5", [
        Claim("with the default SGD (lr 0.05, momentum 0.9) PyTorch's default init beats Kaiming",
              "test/acc", {"init.name": "default"}, {"init.name": "kaiming"}, DEFAULT_SGD,
              paper="the card's observation: 0.97 vs 0.92, one run each"),
        Claim("at lr 0.01 (momentum 0.9) Kaiming and the default end equal (within +-0.01)",
              "test/acc", {"init.name": "kaiming"}, {"init.name": "default"},
              {"optimizer.lr": "0.01", "optimizer.momentum": "0.9"}, margin=0.01),
        Claim("without momentum (lr 0.05) Kaiming and the default end equal (within +-0.01)",
              "test/acc", {"init.name": "kaiming"}, {"init.name": "default"},
              {"optimizer.lr": "0.05", "optimizer.momentum": "0.0"}, margin=0.01),
        Claim("Kaiming with momentum 0.9: lr 0.01 beats lr 0.05", "test/acc",
              {"optimizer.lr": "0.01"}, {"optimizer.lr": "0.05"},
              {"init.name": "kaiming", "optimizer.momentum": "0.9"}, primary=False),
    ], quick=["optimizer.lr=0.05", "optimizer.momentum=0.9,0.0"], seeds=3),
]
STUDIES.append(Study("lenet5_mnist", "LeNet-5 on MNIST", [], [
    Target("LeNet-5 reaches 99.0% test accuracy on MNIST", "test/acc", 0.99,
           paper="LeCun et al. 1998: 0.95% test error (LeNet-5)")]))
BY_NAME = {s.name: s for s in STUDIES}


# -- running ------------------------------------------------------------------------------------


def study_seeds(study: Study, mode: str, asked: int | None) -> int:
    """The seeds per option: --seeds when given, else the study's own in full mode, else 5."""
    return asked or (study.seeds if mode == "full" else None) or DEFAULT_SEEDS


def sweep_command(study: Study, mode: str, seeds: int, store: Path,
                  extra: Sequence[str]) -> list[str]:
    cut = study.quick if mode == "quick" else study.full
    return [sys.executable, "-m", "nnlab", "-m", f"experiment={study.name}", f"study.mode={mode}",
            "seed=" + ",".join(str(s) for s in range(seeds)), *cut,
            f"mlflow.tracking_uri=sqlite:///{store.resolve()}/mlflow.db",
            f"mlflow.artifact_root={store.resolve()}/artifacts",
            f"hydra.sweep.dir={store.resolve()}/hydra", *extra]


def shown(command: Sequence[str]) -> str:
    """The command as a reader would type it (no interpreter path, no store paths)."""
    words = ["python", *command[1:]]
    return " ".join(w for w in words if not w.startswith(("mlflow.", "hydra.sweep.dir")))


def run_study(study: Study, command: list[str], store: Path, log: Path) -> float:
    """Run the sweep into a fresh store; its output goes to `log`. Returns wall seconds."""
    if store.exists():
        shutil.rmtree(store)
    store.mkdir(parents=True)
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seconds = time.perf_counter() - start
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    (store / "wall.json").write_text(json.dumps({"seconds": seconds, "load_1min_at_end": load,
                                                 "exit": done.returncode}))
    if done.returncode not in (0, 1):  # 1: some job failed (diverged runs are findings too)
        raise SystemExit(f"nnlab.findings: {study.name} exited {done.returncode}; see {log}")
    return seconds


# -- claims -------------------------------------------------------------------------------------


def run_value(run: Any, metric: str, epoch: int | None, client: Any) -> float | None:
    """The run's final `metric`, or its value after epoch `epoch` (the epoch-th logged epoch
    value, from MLflow's history)."""
    if epoch is None:
        return run.data.metrics.get(metric)
    history = sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
    return history[epoch - 1].value if len(history) >= epoch else None


def seed_values(runs: Sequence[Any], metric: str, epoch: int | None,
                client: Any) -> dict[str, float]:
    """seed -> value; a seed that occurs twice gets a key of its own (no pairing then)."""
    found: dict[str, float] = {}
    for run in runs:
        value = run_value(run, metric, epoch, client)
        if value is not None:
            seed = run.data.params.get("seed", run.info.run_id)
            found[seed if seed not in found else run.info.run_id] = value
    return found


@dataclass
class ClaimResult:
    claim: Claim
    better: list[float]
    worse: list[float]
    test: str = "-"
    diff: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))
    d: float = float("nan")
    p: float = float("nan")  # superiority: two-sided t; equivalence: TOST
    p_diff: float = float("nan")  # equivalence claims: the two-sided t for a difference
    p_holm: float = float("nan")  # primary: Holm over the study's family; secondary: = p
    detectable: float = float("nan")  # smallest |difference| found at 80% power, these seeds
    seeds_needed: int | None = None  # per option, for the observed difference
    sd: float = float("nan")  # of the per-seed differences (paired), else pooled
    n: int = 0  # seeds per side (the smaller)
    paired: bool = False

    @property
    def primary(self) -> bool:
        return self.claim.primary

    @property
    def outcome(self) -> str:
        if min(len(self.better), len(self.worse)) < 2:
            return "untested (n < 2)"
        if self.p_holm != self.p_holm:  # nan: no spread on either side
            return "untestable (no spread)"
        if self.claim.margin is not None:
            if self.p_holm < ALPHA:
                return "equivalent"
            return "contradicted (they differ)" if self.p_diff < ALPHA else \
                "not shown (neither equivalent nor different)"
        if self.p_holm >= ALPHA:
            return "not shown (no significant difference)"
        sign = 1 if higher_is_better(self.claim.metric) else -1
        return "holds" if sign * self.diff > 0 else "contradicted"

    def lab(self) -> str:
        """The lab's numbers: both means and the difference."""
        b, w = summarize(self.better), summarize(self.worse)
        when = f" after epoch {self.claim.epoch}" if self.claim.epoch else ""
        means = " vs ".join(f"{s.mean:.4g} (n={s.n})" if s.n else "no runs" for s in (b, w))
        return f"{self.claim.metric}{when}: {means}"

    def test_text(self) -> str:
        if self.test == "-":
            return "-"
        if self.claim.margin is not None:
            return f"TOST +-{self.claim.margin:g} ({self.test})"
        return self.test

    def line(self) -> str:
        c = self.claim
        stats = self.lab()
        if self.test != "-":
            holm_word = "Holm p" if c.primary else "p (secondary, not in the Holm family)"
            if c.margin is not None:
                stats += (f"; TOST with margin +-{c.margin:g} ({self.test}): p={self.p:.3g}, "
                          f"{holm_word}={self.p_holm:.3g}; difference {self.diff:+.4g} [90% CI "
                          f"{self.ci[0]:+.4g}, {self.ci[1]:+.4g}]; t for a difference: "
                          f"p={self.p_diff:.3g}")
            else:
                stats += (f"; {self.test}, p={self.p:.3g}, {holm_word}={self.p_holm:.3g}, "
                          f"difference {self.diff:+.4g} [95% CI {self.ci[0]:+.4g}, "
                          f"{self.ci[1]:+.4g}], d={self.d:.2f}")
            if self.detectable == self.detectable:
                need = "-" if self.seeds_needed is None else self.seeds_needed
                stats += (f"; smallest difference detectable at 80% power with these seeds "
                          f"{self.detectable:.3g}, seeds per option this difference needs: "
                          f"{need}")
        weak = " Weak: n < 5." if min(len(self.better), len(self.worse)) < WEAK_N else ""
        kind = "" if c.primary else " (secondary)"
        paper = f" Paper: {c.paper}." if c.paper else ""
        return f"**{self.outcome}**{kind}: {c.text}.{paper} Lab: {stats}.{weak}"


def matching(runs: Sequence[Any], options: dict[str, str]) -> list[Any]:
    def same(run: Any, key: str, value: str) -> bool:
        got = run.data.params.get(key)
        try:
            return float(got) == float(value)
        except (TypeError, ValueError):
            return got == value

    return [r for r in runs if all(same(r, k, v) for k, v in options.items())]


def check_claims(runs: Sequence[Any], claims: Sequence[Claim],
                 client: Any = None) -> list[ClaimResult]:
    """Each claim's two samples and test (`diff` = better - worse, so negative where a
    lower-is-better metric bears the claim out): a t test, or for an equivalence claim two
    one-sided tests; paired over seeds when both sides ran the same seeds. Holm across the
    study's primary claims (`holm_family` does it with the targets)."""
    results = []
    for claim in claims:
        better, worse = (seed_values(matching(runs, {**claim.where, **options}), claim.metric,
                                     claim.epoch, client)
                         for options in (claim.better, claim.worse))
        paired = bool(better) and better.keys() == worse.keys()
        seeds = sorted(better)
        a = [better[k] for k in seeds] if paired else list(better.values())
        b = [worse[k] for k in seeds] if paired else list(worse.values())
        result = ClaimResult(claim, a, b)
        if min(len(a), len(b)) >= 2:
            if claim.margin is None:
                result.test, result.diff, result.ci, result.d, result.p = t_test(a, b, paired)
            else:
                result.test, result.diff, result.ci, result.d, result.p_diff = t_test(
                    a, b, paired, level=1 - 2 * ALPHA)
                result.p = tost(a, b, claim.margin, paired)
            result.sd, result.n, result.paired = spread(a, b, paired), min(len(a), len(b)), paired
        results.append(result)
    holm_family(results)
    return results


def holm_family(results: Sequence[ClaimResult | TargetResult]) -> None:
    """Holm-adjust the primary results' p-values together (the study's family); a secondary
    result keeps its own p. Then size each claim: the smallest difference detectable at 80%
    power and the seeds its difference needs, at the level its own test faces (0.05 / m)."""
    primary = [r for r in results if r.primary]
    for r, p in zip(primary, holm([r.p for r in primary]), strict=True):
        r.p_holm = p
    for r in results:
        if not r.primary:
            r.p_holm = r.p
        if isinstance(r, ClaimResult) and r.test != "-" and r.claim.margin is None:
            alpha = ALPHA / max(1, len(primary)) if r.primary else ALPHA
            r.detectable = detectable_difference(r.sd, r.n, r.paired, alpha)
            r.seeds_needed = seeds_needed(r.diff, r.sd, r.paired, alpha)


@dataclass
class TargetResult:
    target: Target
    values: list[float]
    p: float = float("nan")  # H1: the mean is on the target's side
    p_other: float = float("nan")  # H1: the mean is on the other side
    p_holm: float = float("nan")

    @property
    def primary(self) -> bool:
        return self.target.primary

    @property
    def outcome(self) -> str:
        if len(self.values) < 2:
            return "untested (n < 2)"
        if len(set(self.values)) == 1:  # no spread, no t test: every run says it alone
            on_side = (self.values[0] < self.target.at_least) if self.target.below \
                else (self.values[0] >= self.target.at_least)
            return f"{'holds' if on_side else 'contradicted'} (every run; no spread to test)"
        if self.p_holm < ALPHA:
            return "holds"
        return "contradicted" if self.p_other < ALPHA else "not shown (no significant difference)"

    def lab(self) -> str:
        t, s = self.target, summarize(self.values)
        when = f" after epoch {t.epoch}" if t.epoch else ""
        return f"{t.metric}{when}: " + (f"{s.mean:.4g} (n={s.n})" if s.n else "no runs")

    def line(self) -> str:
        t, s = self.target, summarize(self.values)
        side = "below" if t.below else "above"
        reached = sum((v < t.at_least) if t.below else (v >= t.at_least) for v in self.values)
        stats = self.lab()
        if s.ci:
            holm_word = "Holm p" if t.primary else "p (secondary)"
            stats += (f", 95% CI [{s.ci[0]:.4g}, {s.ci[1]:.4g}]; one-sample t against "
                      f"{t.at_least}: p={self.p:.3g} (mean {side}), {holm_word}="
                      f"{self.p_holm:.3g}; p={self.p_other:.3g} for the other side")
        weak = " Weak: n < 5." if s.n < WEAK_N else ""
        kind = "" if t.primary else " (secondary)"
        paper = f" Paper: {t.paper}." if t.paper else ""
        verb = "stay below" if t.below else "reach"
        return (f"**{self.outcome}**{kind}: {t.text}.{paper} Lab: {stats}; {reached} of {s.n} "
                f"runs {verb} it.{weak}")


def check_targets(runs: Sequence[Any], targets: Sequence[Target],
                  client: Any = None) -> list[TargetResult]:
    from scipy import stats

    results = []
    for target in targets:
        values = list(seed_values(matching(runs, target.where), target.metric, target.epoch,
                                  client).values())
        result = TargetResult(target, values)
        if len(values) >= 2 and len(set(values)) > 1:
            mine, other = ("less", "greater") if target.below else ("greater", "less")
            result.p = float(stats.ttest_1samp(values, target.at_least, alternative=mine).pvalue)
            result.p_other = float(stats.ttest_1samp(values, target.at_least,
                                                     alternative=other).pvalue)
        results.append(result)
    holm_family(results)
    return results


# -- the papers' figures, from the study's runs -------------------------------------------------


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


# -- the document -------------------------------------------------------------------------------


def span_seconds(runs: Sequence[Any]) -> float:
    """First run's start to last run's end, from MLflow (ms timestamps)."""
    starts = [r.info.start_time for r in runs if r.info.start_time]
    ends = [r.info.end_time for r in runs if r.info.end_time]
    return (max(ends) - min(starts)) / 1000 if starts and ends else float("nan")


def study_section(study: Study, command: str, wall: float | None, store: Path, figures: Path,
                  doc: Path) -> tuple[list[str], list[ClaimResult | TargetResult]]:
    client = MlflowClient(f"sqlite:///{store.resolve()}/mlflow.db")
    found = client.get_experiment_by_name(study.name)
    runs = load_runs(client, study.name) if found else []
    if not runs:
        return [f"## {study.title} (`{study.name}`)", "",
                f"**No finished runs** for `{command}`: see {store.parent / study.name}.log.",
                ""], []
    report, _ = write_report(client, study.name, figures)
    results = [*check_claims(runs, study.claims, client),
               *check_targets(runs, study.targets, client)]
    holm_family(results)  # the study's primary claims and targets: one Holm family
    recorded = store / "wall.json"
    load = None
    if recorded.exists():  # the time the study's run took, and how busy the machine was
        found = json.loads(recorded.read_text())
        wall = found["seconds"] if wall is None else wall
        load = found.get("load_1min_at_end")
    epochs = sorted({r.data.params.get("trainer.max_epochs") for r in runs})
    packed = sum(tags.PACK in r.data.tags for r in runs)
    packs = len({r.data.tags[tags.PACK] for r in runs if tags.PACK in r.data.tags})
    timing = f"{wall:.0f} s wall" if wall is not None else "wall time not measured"
    if load is not None:
        timing += f" (1-min load average at its end {load:.1f})"
    quick = "study.mode=quick" in command
    cut = study.quick if quick else study.full
    seeds = sorted({int(r.data.params.get("seed", 0)) for r in runs})
    header = Path(__file__).resolve().parent.parent / "experiments" / f"{study.name}.yaml"
    setup = [line[2:] for line in header.read_text().splitlines()[1:]
             if line.startswith("# ")] if header.is_file() else []
    lines = [f"## {study.title} (`{study.name}`)", "",
             f"**{'Quick' if quick else 'Full'} mode, seeds {','.join(map(str, seeds))}"
             + (" (quick-mode numbers: a smoke test, not the study's result)" if quick else "")
             + ".**", "", *(["> " + " ".join(setup), ""] if setup else []),
             f"Ran `{command}`: {len(runs)} finished runs of {'/'.join(map(str, epochs))} "
             f"epoch(s), {timing} on this machine "
             f"(MLflow: first run start to last run end {span_seconds(runs):.0f} s); "
             f"{packed} of them trained in {packs} pack(s) (`hydra/launcher=packed`), "
             f"{len(runs) - packed} solo."
             + (f" Grid cut to fit the machine: `{' '.join(cut)}`." if cut else ""), "",
             "### Claims", "",
             f"Holm family: the {sum(r.primary for r in results)} primary claim(s); secondary "
             "ones are tested alone.", "", *(f"- {r.line()}" for r in results), ""]
    papers = PAPER_FIGURES[study.name](client, runs, figures) \
        if study.name in PAPER_FIGURES else []
    log_report(client, study.name, figures)  # the report, its plots and the papers' figures
    relative = os.path.relpath(figures, doc.parent)
    body = "\n".join(["### Report (`python -m nnlab.report " + study.name + "`)",
                      report.read_text().split("\n", 1)[1].strip()])
    body = re.sub(r"^## ", "### ", body, flags=re.MULTILINE)
    body = "\n".join([*papers, body])
    body = re.sub(r"\]\(([\w.-]+\.png)\)", lambda m: f"]({relative}/{m.group(1)})", body)
    lines += [body, ""]
    return lines, results


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), {gpu}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def write_findings(doc: Path, mode: str, seeds: int, sections: list[tuple[Study, list[str],
                   list[ClaimResult | TargetResult]]], argv: Sequence[str]) -> None:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    how = (f"Regenerated by `python -m nnlab.findings {' '.join(argv)}` from the stores that "
           "`python -m nnlab.findings` filled (each study's time below is that run's)"
           if "--report-only" in argv else
           f"Generated by `python -m nnlab.findings {' '.join(argv)}` (`make findings`)")
    lines = ["# What the studies show", "",
             f"{how} on {now}: {mode} mode, {seeds} seeds per option unless a study asks for "
             f"more, on {machine()} (each section says the mode and seeds it ran; the yaml "
             "header says why a study runs more). Do not edit by hand: rerun the command. "
             "Each study reproduces a paper's experiment at lab scale; its yaml header "
             "(quoted in the section) cites the paper and says how the set-up was scaled. Every "
             "table is `python -m nnlab.report`'s output on these runs (final value per run; n, "
             "mean, sample sd, 95% t CI; each option vs the best: paired t over seeds when both "
             "ran the same seeds, else Welch's t, Holm-corrected; * = significant at "
             f"{ALPHA}; the smallest difference detectable at 80% power and the seeds the "
             "observed difference needs). Each claim is tested directly on the paper's metric "
             "and budget (a value after epoch k, or the final one): **holds** (significant in "
             "the claimed direction), **equivalent** (a claim of no difference: two one-sided "
             "tests with the stated margin), **not shown** (undecided), **contradicted** "
             "(significant the other way, or for an equivalence claim a significant "
             "difference). A study's primary claims and targets form its Holm family; "
             "secondary ones are tested alone and marked so. A target (a level to reach or "
             "stay under) is a one-sided one-sample t-test of the runs against it.", "",
             "## Claims at a glance", "",
             "| study | claim | paper | lab | test | p (Holm) | verdict |",
             "|---|---|---|---|---|---|---|"]
    for study, _, results in sections:
        for r in results:
            if isinstance(r, ClaimResult):
                text, paper, test = r.claim.text, r.claim.paper, r.test_text()
            else:
                text, paper, test = r.target.text, r.target.paper, "one-sample t"
            kind = "" if r.primary else " (secondary)"
            p = r.p_holm
            lines.append(f"| {study.name} | {text}{kind} | {paper or '-'} | {r.lab()} | {test} | "
                         f"{'-' if p != p else f'{p:.3g}'} | {r.outcome} |")
    left = [s.name for s in STUDIES if s.name not in {study.name for study, _, _ in sections}]
    if left:
        lines += ["", f"Not run for this document: {', '.join(f'`{n}`' for n in left)} "
                  "(`python -m nnlab.findings --studies <name>` runs one)."]
    lines.append("")
    for _, body, _ in sections:
        lines += body
    appendix = Path(__file__).resolve().parent.parent / "docs" / "findings-appendix.md"
    if appendix.is_file():  # measurements made outside the studies (NumPy parity, overhead)
        lines += [line for line in appendix.read_text().splitlines()
                  if not line.startswith("<!--")]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m nnlab.findings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("full", "quick"), default="full")
    parser.add_argument("--studies", default=",".join(BY_NAME),
                        help=f"comma-separated, from {', '.join(BY_NAME)}")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 per option (default: 5, or in "
                        "full mode the seeds a study's pilot power analysis asked for)")
    parser.add_argument("--out", type=Path, help="the document (default: docs/findings.md in "
                        "full mode, reports/findings-quick.md in quick mode)")
    parser.add_argument("--store", type=Path, help="MLflow stores, one per study (default: "
                        "mlruns/findings/<mode>)")
    parser.add_argument("--report-only", action="store_true",
                        help="do not run anything: report on the stores as they are")
    parser.add_argument("--extra", default="", help="more overrides for every sweep, e.g. "
                        "'hydra/launcher=joblib hydra.launcher.n_jobs=2'")
    args = parser.parse_args(argv)
    names = [n for n in args.studies.split(",") if n]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or (args.seeds is not None and args.seeds < 1):
        parser.error(f"--studies {','.join(unknown)} is invalid: valid studies are "
                     f"{', '.join(BY_NAME)}" if unknown else
                     f"--seeds {args.seeds} is invalid: give an integer >= 1")
    doc = args.out or Path("docs/findings.md" if args.mode == "full"
                           else "reports/findings-quick.md")
    stores = args.store or Path("mlruns/findings") / args.mode
    sections = []
    for name in names:
        study = BY_NAME[name]
        store = stores / name
        seeds = study_seeds(study, args.mode, args.seeds)
        command = sweep_command(study, args.mode, seeds, store, args.extra.split())
        wall = None
        if not args.report_only:
            print(f"nnlab.findings: running {shown(command)}", flush=True)
            wall = run_study(study, command, store, stores / f"{name}.log")
            print(f"nnlab.findings: {name} took {wall:.0f} s", flush=True)
        body, results = study_section(study, shown(command), wall, store,
                                      doc.with_suffix("") / name, doc)
        sections.append((study, body, results))
    write_findings(doc, args.mode, args.seeds or DEFAULT_SEEDS, sections, argv)
    print(f"nnlab.findings: wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
