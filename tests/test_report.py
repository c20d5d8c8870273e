"""nnlab.report over a small real study: groups, seed statistics, the winner, files, MLflow."""

from __future__ import annotations

import statistics

import pytest
from mlflow.tracking import MlflowClient

from nnlab.report import main, report_experiment
from nnlab.tracking import tags

INITS, SEEDS = ("zeros", "xavier_normal"), (0, 1)


@pytest.fixture(scope="module")
def study(moons_study, tmp_path_factory):
    """init in {zeros, xavier_normal} x 2 seeds: a tanh MLP on moons, 3 epochs each."""
    tmp = tmp_path_factory.mktemp("report")
    uri = moons_study(tmp, "report_study", {"init": INITS, "seed": tuple(map(str, SEEDS))},
                      model=("model=mlp", "model.hidden=[16,16]", "activation=tanh"))
    return uri, tmp


def test_report_aggregates_names_the_winner_and_logs_itself(compose_cfg, study, capsys) -> None:
    uri, tmp = study
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("report_study").experiment_id
    runs = client.search_runs([experiment_id])
    by_init = {i: [r.data.metrics["test/acc"] for r in runs if r.data.params["init.name"] == i]
               for i in INITS}
    means = {i: statistics.fmean(v) for i, v in by_init.items()}
    best = max(means, key=means.get)
    other = min(means, key=means.get)

    out = tmp / "out"
    assert main(["report_study", "--tracking-uri", uri, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    text = (out / "report.md").read_text()
    # grouped by the one option that varies (not by seed, run name or derived params)
    assert "options that vary: init.name." in text
    section = text.split("## test/acc")[1].split("## ")[0]
    for init in INITS:
        std = statistics.stdev(by_init[init])
        assert f"| init={init} | 2 | {means[init]:.4f} | {std:.4f} | [" in section
    line = next(x for x in section.splitlines() if x.startswith("Verdict: test/acc:"))
    assert f"best mean init={best} {means[best]:.4f} (n=2)" in line
    assert f"init={other}" in line and f"diff {means[other] - means[best]:+.4f}" in line
    assert "weak: fewer than 5 seeds per option" in line
    assert "test/acc" in printed and "report_study: test/acc (final value, over seeds)" in printed
    for png in ("learning_curves.png", "layer_gradients.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")
        assert f"]({png})" in text

    assert not client.search_runs([experiment_id], f"tags.`{tags.REPORT}` = 'true'")
    reports = client.get_experiment_by_name(report_experiment("report_study")).experiment_id
    (report,) = client.search_runs([reports], f"tags.`{tags.REPORT}` = 'true'")
    logged = {a.path for a in client.list_artifacts(report.info.run_id, "report")}
    assert logged == {"report/report.md", "report/report.html", "report/learning_curves.png",
                      "report/layer_gradients.png"}
    assert main(["report_study", "--tracking-uri", uri, "--out", str(out), "--no-log"]) == 0
    assert "| init=zeros | 2 |" in (out / "report.md").read_text()  # the report run is not counted


def test_the_cards_sweep_gets_no_verdict_and_the_command_that_adds_seeds(run_cli, store_uri,
                                                                         tmp_path, capsys) -> None:
    """The card's sweep (one seed per option, cut to 2 batches): every line of the terminal
    report fits 100 columns, and the report prints the sweep again with 5 seeds and
    sweep.resume=true."""
    sweep = ["model=lenet5", "init=xavier,kaiming", "activation=sigmoid,relu",
             "trainer.max_epochs=1", "trainer.limit_train_batches=2",
             "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
             "instruments.enabled=false"]
    result = run_cli(tmp_path, "-m", *sweep, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert main(["nnlab", "--tracking-uri", store_uri(tmp_path), "--out",
                 str(tmp_path / "report"), "--no-log"]) == 0
    printed = capsys.readouterr().out
    # every line of the report itself; the closing "wrote <path>" lines hold the --out path
    # given (pytest's temporary folder here), whose length no layout can bound
    lines = [line for line in printed.splitlines() if not line.startswith("nnlab.report: wrote")]
    assert len(lines) > 10 and all(len(line) <= 100 for line in lines), max(lines, key=len)
    assert "no verdict; run more seeds" in printed
    command = printed.split("This adds them (finished runs are skipped):\n")[1].split("\n\n")[0]
    words = " ".join(w.strip().rstrip("\\") for w in command.splitlines()).split()
    assert words[:4] == ["python", "-m", "nnlab", "-m"]
    wanted = {w.lower() for w in sweep} | {"seed=0,1,2,3,4", "sweep.resume=true"}
    assert wanted <= {w.lower() for w in words}  # the tags hold Hydra's False for false
