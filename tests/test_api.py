"""nnlab.train / nnlab.sweep / nnlab.compare against the command line: the same runs in MLflow,
the same error paragraphs, Ctrl-C ends a run KILLED and leaves the process usable, and the
report's HTML page."""

from __future__ import annotations

import html
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import nnlab
from nnlab import report
from nnlab.errors import ConfigError

MOONS = ["model=mlp", "dataset=moons", "trainer.max_epochs=3", "accelerator=cpu",
         "instruments.plots=false"]
QUIET = ["trainer.enable_progress_bar=false"]  # what run_cli appends
DRIVER = Path(__file__).parent / "helpers" / "bad_input_driver.py"
VOLATILE_TAGS = ("nnlab.checkpoint", "mlflow.user", "mlflow.source.", "mlflow.runName")


def only_run(cwd: Path) -> object:
    """The one job run of experiment nnlab in cwd's default store."""
    client = MlflowClient(f"sqlite:///{cwd}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("nnlab").experiment_id])
    assert len(runs) == 1
    return runs[0]


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_api_run_is_the_cli_run(tmp_path, run_cli, monkeypatch) -> None:
    """The same overrides from the shell and from Python: the same params, tags, artifacts and
    metrics (to 1e-6, CPU); the API changes no working directory and writes no Hydra log."""
    cli_dir, api_dir = tmp_path / "cli", tmp_path / "api"
    cli_dir.mkdir()
    api_dir.mkdir()
    done = run_cli(cli_dir, *MOONS)
    assert done.returncode == 0, done.stderr[-2000:]
    monkeypatch.chdir(api_dir)
    result = nnlab.train(*MOONS, *QUIET)
    assert Path.cwd() == api_dir
    assert sorted(p.name for p in api_dir.iterdir()) == ["mlruns"]  # nothing beside the store
    assert not list(api_dir.glob("mlruns/hydra/**/*.log"))  # no Hydra log file
    cli_run, api_run = only_run(cli_dir), only_run(api_dir)
    assert result.run_id == api_run.info.run_id and result.status == "FINISHED"

    assert api_run.data.params == cli_run.data.params
    kept = {k: v for k, v in cli_run.data.tags.items() if not k.startswith(VOLATILE_TAGS)}
    assert {k: api_run.data.tags.get(k) for k in kept} == kept
    assert set(api_run.data.tags) == set(cli_run.data.tags)
    assert set(api_run.data.metrics) == set(cli_run.data.metrics)
    for key, value in cli_run.data.metrics.items():
        if not key.startswith("time/"):  # wall clock
            assert math.isclose(api_run.data.metrics[key], value, abs_tol=1e-6), key
    cli_client = MlflowClient(f"sqlite:///{cli_dir}/mlruns/mlflow.db")
    api_client = MlflowClient(f"sqlite:///{api_dir}/mlruns/mlflow.db")
    for key in ("train/loss_step", "train/loss_epoch", "val/acc", "val/loss"):
        mine = history(api_client, api_run.info.run_id, key)
        theirs = history(cli_client, cli_run.info.run_id, key)
        assert [s for s, _ in mine] == [s for s, _ in theirs]
        assert all(math.isclose(a, b, abs_tol=1e-6) for (_, a), (_, b) in
                   zip(mine, theirs, strict=True)), key

    def artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
        found = set()
        for entry in client.list_artifacts(run_id, path):
            found |= artifacts(client, run_id, entry.path) if entry.is_dir else {entry.path}
        return found

    assert artifacts(api_client, api_run.info.run_id) == \
        artifacts(cli_client, cli_run.info.run_id)
    for client in (cli_client, api_client):  # MLflow 3's UI opens on the runs table
        kind = client.get_experiment_by_name("nnlab").tags.get("mlflow.experimentKind")
        assert kind == "custom_model_development"

    # the result: final metrics, config, per-epoch history, the trained model, its HTML
    assert result.metrics == api_run.data.metrics
    assert result.config.model.name == "mlp" and result.config.dataset.name == "moons"
    assert list(result.history.index) == [1, 2, 3]
    assert result.history["val/acc"].iloc[-1] == api_run.data.metrics["val/acc"]
    assert [v for _, v in history(api_client, api_run.info.run_id, "val/loss")] == \
        result.history["val/loss"].tolist()
    model = result.model
    assert sum(p.numel() for p in model.parameters()) == \
        int(api_run.data.params["model.num_params"])
    page = result._repr_html_()
    assert "FINISHED" in page and "data:image/png;base64," in page
    assert f"{api_run.data.metrics['val/acc']:.4f}" in page


def test_bad_values_raise_the_cli_paragraph(tmp_path, monkeypatch) -> None:
    """Each bad input: ConfigError whose message is the paragraph the CLI prints, and no MLflow
    store or run left behind."""
    cases = [["init=bogus"], ["init=kaiming", "init.mode=bogus"], ["+trainer.max_epoch=3"],
             ["dataset=moons"], ["optimizer.lr=-1"], ["model.hidden=[64,"]]
    done = subprocess.run([sys.executable, str(DRIVER), json.dumps(cases)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=True)
    monkeypatch.chdir(tmp_path)
    for case in json.loads(done.stdout):
        assert case["code"] == 2, case
        paragraph = case["stderr"].strip().removeprefix("nnlab: error: ")
        with pytest.raises(ConfigError) as caught:
            nnlab.train(*case["args"])
        assert str(caught.value) == paragraph
        assert "\n" not in paragraph and str(case["args"][-1]).split("=")[0].lstrip("+") \
            in paragraph
    with pytest.raises(ConfigError) as caught:  # a sweep's bad option: refused before any job
        nnlab.sweep("init=xavier,bogus")
    assert str(caught.value).startswith("init=bogus is invalid")
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_ctrl_c_kills_the_run_and_the_process_goes_on(tmp_path, monkeypatch) -> None:
    """SIGINT mid-training (a Jupyter kernel's interrupt): the run ends KILLED with its own
    checkpoint, KeyboardInterrupt returns control, and the next nnlab.train runs normally."""
    monkeypatch.chdir(tmp_path)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        nnlab.train(*MOONS, "trainer.max_epochs=8", *QUIET,
                    "+callbacks.ctrl_c._target_=helpers.interrupt.SigintAt",
                    "+callbacks.ctrl_c.step=3")
    assert signal.getsignal(signal.SIGINT) is handler  # the caller's handler is back
    killed = only_run(tmp_path)
    assert killed.info.status == "KILLED"
    again = nnlab.train(*MOONS, *QUIET)
    assert again.status == "FINISHED" and again.run_id != killed.info.run_id
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    checkpoints = {Path(client.get_run(r).data.tags["nnlab.checkpoint"])
                   for r in (killed.info.run_id, again.run_id)}
    assert len(checkpoints) == 2 and all(p.is_file() for p in checkpoints)  # one folder each
    resumed = nnlab.train(f"resume={killed.info.run_id}", *QUIET)
    assert resumed.run_id == killed.info.run_id and resumed.status == "FINISHED"
    assert len(resumed.history) == 8  # every epoch once, as a run never stopped


def test_ctrl_c_in_a_sweep_kills_its_job_and_the_sweep(tmp_path, monkeypatch) -> None:
    """SIGINT in a sweep's first job: that job's run and the sweep's own run end KILLED, no
    later job starts, and KeyboardInterrupt returns control (as `python -m nnlab -m`: 130)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        nnlab.sweep(*MOONS, *QUIET, "trainer.max_epochs=8", "init=xavier,kaiming",
                    "+callbacks.ctrl_c._target_=helpers.interrupt.SigintAt")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("nnlab").experiment_id])
    parents = [r for r in runs if r.data.tags.get("mlflow.source.name") == "nnlab sweep"]
    jobs = [r for r in runs if r not in parents]
    assert [r.info.status for r in parents] == ["KILLED"]
    assert [(r.data.tags["nnlab.job_num"], r.info.status) for r in jobs] == [("0", "KILLED")]


def test_sweep_one_row_per_job(tmp_path, monkeypatch) -> None:
    """The sweep syntax of -m; a failed job is a FAILED row and the others still run; every
    job's run nests under the sweep's run; launcher= picks the launcher (packed: one pack)."""
    monkeypatch.chdir(tmp_path)
    result = nnlab.sweep(*MOONS, *QUIET, "init=xavier,kaiming", "optimizer.lr=0.1,1e12")
    table = result.table
    assert list(table.index) == [0, 1, 2, 3]
    assert {"init", "optimizer.lr", "status", "val/acc", "run_id"} <= set(table.columns)
    assert sorted(table["status"]) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    assert {float(lr) for lr in table[table["status"] == "FAILED"]["optimizer.lr"]} == {1e12}
    assert table[table["status"] == "FAILED"]["error"].str.contains("Diverged").all()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    for job, row in table.iterrows():
        run = client.get_run(row["run_id"])
        assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert run.data.tags["nnlab.job_num"] == str(job)
        assert run.data.params["init.name"] == row["init"]
        if row["status"] == "FINISHED":
            assert row["val/acc"] == run.data.metrics["val/acc"]
    assert client.get_run(result.parent_run_id).info.status == "FAILED"
    assert "data:image/png;base64," in result._repr_html_()

    packed = nnlab.sweep(*MOONS, *QUIET, "init=xavier,kaiming", launcher="packed")
    assert list(packed.table["status"]) == ["FINISHED", "FINISHED"]
    packs = {client.get_run(r).data.tags.get("nnlab.pack") for r in packed.table["run_id"]}
    assert len(packs) == 1 and None not in packs


def test_report_page_and_compare(tmp_path, moons_study, monkeypatch) -> None:
    """`python -m nnlab.report` writes report.html (tables, verdicts, figures inside it) and
    logs it next to report.md; nnlab.compare returns the same tables and verdicts."""
    uri = moons_study(tmp_path, "act", {"activation": ("relu", "tanh"), "seed": ("0", "1")})
    out = tmp_path / "report"
    assert report.main(["act", "--tracking-uri", uri, "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    verdicts = [line.removeprefix("Verdict: ") for line in markdown.splitlines()
                if line.startswith("Verdict: ")]
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert verdicts and all(v in text for v in verdicts)
    assert page.count("<table>") == markdown.count("| option |")
    assert page.count("data:image/png;base64,") == markdown.count("](") > 0
    assert 'src="learning_curves.png"' not in page  # nothing outside the page
    client = MlflowClient(uri)
    reports = client.get_experiment_by_name("act reports")
    assert reports.tags.get("mlflow.experimentKind") == "custom_model_development"
    (logged,) = client.search_runs([reports.experiment_id])
    names = {a.path for a in client.list_artifacts(logged.info.run_id, "report")}
    assert {"report/report.md", "report/report.html"} <= names

    compared = nnlab.compare("act", tracking_uri=uri)
    assert compared.options == ["activation.name"]
    assert list(compared.verdicts.values()) == verdicts
    table = compared.tables["val/acc"]
    rows = markdown.split("## val/acc")[1].split("Verdict:")[0].strip().splitlines()[2:]
    assert len(table) == len(rows) == 2
    for (_, row), line in zip(table.iterrows(), rows, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert row["option"] == cells[0] and int(row["n"]) == int(cells[1]) == 2
        assert f"{row['mean']:.4f}" == cells[2]
    assert len(compared.runs) == 4 and set(compared.runs["activation.name"]) == {"relu", "tanh"}
    shown = compared._repr_html_()
    assert all(html.escape(v) in shown for v in verdicts)
    assert shown.count("data:image/png;base64,") == len(compared.figures) >= 1
    with pytest.raises(ConfigError, match="Valid: .*'act'"):
        nnlab.compare("acts", tracking_uri=uri)
    monkeypatch.chdir(tmp_path)  # save=True: what the command writes and logs, from here
    saved = nnlab.compare("act", tracking_uri=uri, save=True)
    assert (tmp_path / saved.path).read_text() == markdown
    assert (tmp_path / "reports" / "act" / "report.html").is_file()
    assert client.get_run(saved.report_run_id).info.experiment_id == reports.experiment_id


def test_import_nnlab_stays_light() -> None:
    """`import nnlab` loads neither the API, Hydra nor torch; the API's names are listed."""
    code = ("import sys, nnlab; print('torch' in sys.modules, 'nnlab.api' in sys.modules, "
            "'hydra' in sys.modules, sorted(set(dir(nnlab)) & {'train', 'sweep', 'compare'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ})
    assert done.stdout.strip() == "False False False ['compare', 'sweep', 'train']"


def test_help_and_the_api_docstrings_agree() -> None:
    """Each Python line of `--help` is in its function's docstring, and the help's shell
    examples of one run and one sweep are those lines' twins."""
    import nnlab.api

    done = subprocess.run([sys.executable, "-m", "nnlab", "--help"], capture_output=True,
                          text=True, check=True)
    lines = [line.strip() for line in done.stdout.splitlines()]
    python = [line for line in lines if line.startswith("nnlab.")]
    assert {line.split("(")[0] for line in python} == {"nnlab.train", "nnlab.sweep",
                                                       "nnlab.compare"}
    for line in python:
        name = line.split("(")[0].removeprefix("nnlab.")
        assert line in getattr(nnlab.api, name).__doc__, line
    for shell, twin in (("python -m nnlab model=", "nnlab.train("),
                        ("python -m nnlab -m model=", "nnlab.sweep(")):
        args = next(x for x in lines if x.startswith(shell)).split()[3:]
        args = [a for a in args if a != "-m"]
        expected = twin + ", ".join(f'"{a}"' for a in args) + ")"
        assert expected in python


def test_config_dir_is_the_cli_config_dir(tmp_path, monkeypatch) -> None:
    """config_dir= adds a user's own config folder as --config-dir does (README's examples/);
    a folder that does not exist is refused in one paragraph."""
    import shutil

    shutil.copytree(Path(__file__).resolve().parents[1] / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("*.ipynb"))
    monkeypatch.chdir(tmp_path / "examples")
    monkeypatch.syspath_prepend(str(tmp_path / "examples"))  # as a notebook's own folder is
    result = nnlab.train("model=twolayer", "dataset=flat_digits", "activation=swish",
                         "init=kaiming", "trainer.max_epochs=2", *QUIET, config_dir="myconf")
    assert result.status == "FINISHED"
    assert result.config.model._target_ == "mypkg.nets.TwoLayer"
    with pytest.raises(ConfigError, match="config_dir='nowhere' is invalid"):
        nnlab.train(config_dir="nowhere")
