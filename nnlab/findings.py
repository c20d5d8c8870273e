"""`python -m nnlab.findings` (`make findings`): run the studies, then write docs/findings.md.

For each study below: a fresh MLflow store (`<store>/<study>/mlflow.db`), one multirun of
`experiment=<study>` in the chosen mode with the chosen seeds (plus the study's grid cut, said in
the document), its wall time, `nnlab.report`'s tables and verdicts, and the study's claims, each
tested directly (option vs option on one metric: paired t over seeds, or Welch's t, Holm-
corrected across the study's claims). Nothing in the written document is typed by hand but the
claims' wording.

    python -m nnlab.findings                        # full mode, 5 seeds, every study (hours)
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
    Group,
    higher_is_better,
    holm,
    load_runs,
    summarize,
    t_test,
    write_report,
)
from nnlab.tracking import MlflowClient, tags


@dataclass
class Claim:
    """`better` beats `worse` on `metric` (higher or lower as the metric goes), among the runs
    matching `where`; each dict maps a param (e.g. `init.name`) to its value."""

    text: str
    metric: str
    better: dict[str, str]
    worse: dict[str, str]
    where: dict[str, str] = field(default_factory=dict)


@dataclass
class Target:
    """The runs matching `where` reach `at_least` on `metric` (one-sided one-sample t-test)."""

    text: str
    metric: str
    at_least: float
    where: dict[str, str] = field(default_factory=dict)


@dataclass
class Study:
    name: str
    title: str
    claims: list[Claim]
    targets: list[Target] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)  # grid cut in quick mode
    full: list[str] = field(default_factory=list)  # grid cut in full mode


RELU, TANH = {"activation.name": "relu"}, {"activation.name": "tanh"}
LENET, DEEP = {"model.name": "lenet5"}, {"model.name": "deep_mlp"}

STUDIES = [
    Study("init_study", "Initialisation: symmetry, scale, Kaiming vs Xavier", [
        Claim("Kaiming beats Xavier with ReLU on LeNet-5", "test/acc",
              {"init.name": "kaiming_normal"}, {"init.name": "xavier_normal"}, {**LENET, **RELU}),
        Claim("Kaiming beats Xavier with ReLU on the 10-layer MLP", "test/acc",
              {"init.name": "kaiming_normal"}, {"init.name": "xavier_normal"}, {**DEEP, **RELU}),
        Claim("Xavier beats Kaiming with tanh on the 10-layer MLP", "test/acc",
              {"init.name": "xavier_normal"}, {"init.name": "kaiming_normal"}, {**DEEP, **TANH}),
        Claim("all-zero init cannot break symmetry: worse than Kaiming (LeNet-5, ReLU)",
              "test/acc", {"init.name": "kaiming_normal"}, {"init.name": "zeros"},
              {**LENET, **RELU}),
    ], quick=["model=lenet5", "activation=relu", "init=zeros,xavier_normal,kaiming_normal"]),
    Study("activation_study", "Activations: vanishing gradients in a deep net", [
        Claim("ReLU's first-layer gradient is larger than sigmoid's (10-layer MLP)",
              "grad_norm/net.1", {"activation.name": "relu"}, {"activation.name": "sigmoid"},
              DEEP),
        Claim("ReLU trains the 10-layer MLP better than sigmoid", "test/acc",
              {"activation.name": "relu"}, {"activation.name": "sigmoid"}, DEEP),
        Claim("tanh trains the 10-layer MLP better than sigmoid", "test/acc",
              {"activation.name": "tanh"}, {"activation.name": "sigmoid"}, DEEP),
    ], quick=["model=deep_mlp", "activation=sigmoid,tanh,relu"]),
    Study("optimizer_study", "Optimisers on LeNet-5", [
        Claim("Adam beats plain SGD", "test/acc", {"optimizer.name": "adam"},
              {"optimizer.name": "sgd_plain"}),
        Claim("SGD with momentum 0.9 beats plain SGD", "test/acc", {"optimizer.name": "sgd"},
              {"optimizer.name": "sgd_plain"}),
        Claim("Adam beats SGD with momentum", "test/acc", {"optimizer.name": "adam"},
              {"optimizer.name": "sgd"}),
    ], quick=["optimizer=sgd_plain,sgd,adam"]),
    Study("loss_study", "Losses for classification", [
        Claim("cross-entropy beats MSE on one-hot targets", "test/acc",
              {"loss.name": "cross_entropy"}, {"loss.name": "mse"}),
        Claim("cross-entropy beats BCE on one-hot targets", "test/acc",
              {"loss.name": "cross_entropy"}, {"loss.name": "bce_with_logits"}),
    ]),
    Study("loss_regression_study", "Losses for regression with outliers", [
        Claim("SmoothL1 beats MSE on a clean test set after training on outliers", "test/mse",
              {"loss.name": "smooth_l1"}, {"loss.name": "mse"}),
        Claim("L1 beats MSE on a clean test set after training on outliers", "test/mse",
              {"loss.name": "l1"}, {"loss.name": "mse"}),
    ]),
    Study("dropout_study", "Dropout on an over-fitting MLP", [
        Claim("dropout 0.5 beats no dropout on test accuracy", "test/acc",
              {"model.dropout": "0.5"}, {"model.dropout": "0.0"}),
        Claim("dropout 0.2 beats no dropout on test accuracy", "test/acc",
              {"model.dropout": "0.2"}, {"model.dropout": "0.0"}),
    ]),
]
STUDIES.append(Study("lenet5_mnist", "LeNet-5 on MNIST", [], [
    Target("LeNet-5 reaches 99.0% test accuracy on MNIST", "test/acc", 0.99)]))
BY_NAME = {s.name: s for s in STUDIES}


# -- running ------------------------------------------------------------------------------------


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


@dataclass
class ClaimResult:
    claim: Claim
    better: list[float]
    worse: list[float]
    test: str = "-"
    diff: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))
    d: float = float("nan")
    p: float = float("nan")
    p_holm: float = float("nan")

    @property
    def outcome(self) -> str:
        if min(len(self.better), len(self.worse)) < 2:
            return "untested (n < 2)"
        if self.p_holm != self.p_holm:  # nan: no spread on either side
            return "untestable (no spread)"
        if self.p_holm >= ALPHA:
            return "not shown (no significant difference)"
        sign = 1 if higher_is_better(self.claim.metric) else -1
        return "holds" if sign * self.diff > 0 else "contradicted"

    def line(self) -> str:
        c, b, w = self.claim, summarize(self.better), summarize(self.worse)
        stats = f"{c.metric}: " + " vs ".join(
            f"{s.mean:.4g} (n={s.n})" if s.n else "no runs" for s in (b, w))
        if self.test != "-":
            stats += (f"; {self.test}, p={self.p:.3g}, Holm p={self.p_holm:.3g}, difference "
                      f"{self.diff:+.4g} [95% CI {self.ci[0]:+.4g}, {self.ci[1]:+.4g}], "
                      f"d={self.d:.2f}")
        weak = " Weak: n < 5." if min(b.n, w.n) < WEAK_N else ""
        return f"**{self.outcome}**: {c.text}. {stats}.{weak}"


def matching(runs: Sequence[Any], options: dict[str, str]) -> list[Any]:
    def same(run: Any, key: str, value: str) -> bool:
        got = run.data.params.get(key)
        try:
            return float(got) == float(value)
        except (TypeError, ValueError):
            return got == value

    return [r for r in runs if all(same(r, k, v) for k, v in options.items())]


def check_claims(runs: Sequence[Any], claims: Sequence[Claim]) -> list[ClaimResult]:
    """Each claim's two samples and t-test (`diff` = better - worse, so negative where a
    lower-is-better metric bears the claim out); Holm across the study's claims."""
    results = []
    for claim in claims:
        sides = [Group(options, matching(runs, {**claim.where, **options}))
                 for options in (claim.better, claim.worse)]
        better, worse = (g.values(claim.metric) for g in sides)
        paired = bool(better) and better.keys() == worse.keys()
        if paired:
            seeds = sorted(better)
            a, b = [better[s] for s in seeds], [worse[s] for s in seeds]
        else:
            a, b = (g.by_run(claim.metric) for g in sides)
        result = ClaimResult(claim, a, b)
        if min(len(a), len(b)) >= 2:
            result.test, result.diff, result.ci, result.d, result.p = t_test(a, b, paired)
        results.append(result)
    for result, p in zip(results, holm([r.p for r in results]), strict=True):
        result.p_holm = p
    return results


@dataclass
class TargetResult:
    target: Target
    values: list[float]
    p: float = float("nan")  # H1: mean >= at_least
    p_below: float = float("nan")  # H1: mean < at_least

    @property
    def outcome(self) -> str:
        if len(self.values) < 2:
            return "untested (n < 2)"
        if self.p < ALPHA:
            return "holds"
        return "contradicted" if self.p_below < ALPHA else "not shown (no significant difference)"

    def line(self) -> str:
        t, s = self.target, summarize(self.values)
        reached = sum(v >= t.at_least for v in self.values)
        stats = f"{t.metric}: " + (f"{s.mean:.4f} (n={s.n})" if s.n else "no runs")
        if s.ci:
            stats += (f", 95% CI [{s.ci[0]:.4f}, {s.ci[1]:.4f}]; one-sample t against "
                      f"{t.at_least}: p={self.p:.3g} (mean above), {self.p_below:.3g} (below)")
        weak = " Weak: n < 5." if s.n < WEAK_N else ""
        return f"**{self.outcome}**: {t.text}. {stats}; {reached} of {s.n} runs reach it.{weak}"


def check_targets(runs: Sequence[Any], targets: Sequence[Target]) -> list[TargetResult]:
    from scipy import stats

    results = []
    for target in targets:
        values = Group({}, matching(runs, target.where)).by_run(target.metric)
        result = TargetResult(target, values)
        if len(values) >= 2 and len(set(values)) > 1:
            result.p = float(stats.ttest_1samp(values, target.at_least, alternative="greater")
                             .pvalue)
            result.p_below = float(stats.ttest_1samp(values, target.at_least, alternative="less")
                                   .pvalue)
        results.append(result)
    return results


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
    results = [*check_claims(runs, study.claims), *check_targets(runs, study.targets)]
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
    cut = study.quick if "study.mode=quick" in command else study.full
    lines = [f"## {study.title} (`{study.name}`)", "",
             f"Ran `{command}`: {len(runs)} finished runs of {'/'.join(map(str, epochs))} "
             f"epoch(s), {timing} on this machine "
             f"(MLflow: first run start to last run end {span_seconds(runs):.0f} s); "
             f"{packed} of them trained in {packs} pack(s) (`hydra/launcher=packed`), "
             f"{len(runs) - packed} solo."
             + (f" Grid cut to fit the machine: `{' '.join(cut)}`." if cut else ""), "",
             "### Claims", "", *(f"- {r.line()}" for r in results), ""]
    body = report.read_text().split("\n", 1)[1]  # without the report's own title
    relative = os.path.relpath(figures, doc.parent)
    body = re.sub(r"\]\(([\w.-]+\.png)\)", lambda m: f"]({relative}/{m.group(1)})", body)
    body = re.sub(r"^## ", "### ", body, flags=re.MULTILINE)
    lines += ["### Report (`python -m nnlab.report " + study.name + "`)", body.strip(), ""]
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
             f"{how} on {now}: {mode} mode, {seeds} seeds per option, on {machine()}. Do not "
             "edit by hand: rerun the command. Every table is `python -m nnlab.report`'s output on "
             "these runs (final value per run; n, mean, sample sd, 95% t CI; each option vs the "
             "best: paired t over seeds when both ran the same seeds, else Welch's t, Holm-"
             f"corrected; * = significant at {ALPHA}). Each claim is tested directly, better vs "
             "worse option on one metric, Holm-corrected across the study's claims: **holds** "
             "(significant in the claimed direction), **not shown** (no significant "
             "difference), **contradicted** (significant the other way). A target (a level "
             "to reach) is a one-sided one-sample t-test of the runs against it.", "",
             "## Claims at a glance", "", "| study | claim | outcome | test | p (claims: Holm) |",
             "|---|---|---|---|---|"]
    for study, _, results in sections:
        for r in results:
            text, test, p = (r.claim.text, r.test, r.p_holm) if isinstance(r, ClaimResult) \
                else (r.target.text, "one-sample t", r.p)
            lines.append(f"| {study.name} | {text} | {r.outcome} | {test} | "
                         f"{'-' if p != p else f'{p:.3g}'} |")
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
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per option")
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
    if unknown or args.seeds < 1:
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
        command = sweep_command(study, args.mode, args.seeds, store, args.extra.split())
        wall = None
        if not args.report_only:
            print(f"nnlab.findings: running {shown(command)}", flush=True)
            wall = run_study(study, command, store, stores / f"{name}.log")
            print(f"nnlab.findings: {name} took {wall:.0f} s", flush=True)
        body, results = study_section(study, shown(command), wall, store,
                                      doc.with_suffix("") / name, doc)
        sections.append((study, body, results))
    write_findings(doc, args.mode, args.seeds, sections, argv)
    print(f"nnlab.findings: wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
