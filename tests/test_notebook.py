"""examples/nnlab_tour.ipynb executed end to end in a real Jupyter kernel (nbclient), on the
offline digits, in a scratch folder: every cell runs, and its outputs and the MLflow store it
leaves say what the notebook claims."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "nnlab_tour.ipynb"


def outputs(cell: dict, kind: str) -> str:
    """All of a cell's output of one kind: "stdout"/"stderr" streams, or a MIME type."""
    found = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream" and out["name"] == kind:
            found.append(out["text"])
        elif kind in out.get("data", {}):
            found.append(out["data"][kind])
    return "".join(found)


def test_the_tour_notebook_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    def cell(text: str) -> dict:
        (found,) = [c for c in notebook.cells if c.cell_type == "code" and text in c.source]
        return found

    run = cell("run = nnlab.train")
    assert "FINISHED" in outputs(run, "text/html")
    assert "data:image/png;base64," in outputs(run, "text/html")  # the learning curves
    assert outputs(run, "stderr").count("training: 100%") >= 1  # one bar for the run ...
    assert outputs(run, "stderr").count("training:   0%") == 1  # ... started once
    assert "IProgress" not in outputs(run, "stderr")  # no widget warnings without ipywidgets
    assert "LeNet5 (4, 10)" in outputs(cell("model = run.model"), "stdout")

    card = outputs(cell("card = nnlab.sweep"), "text/html")
    assert card.count("FINISHED") == 4 and "xavier" in card and "sigmoid" in card
    pivot = outputs(cell("pivot_table"), "text/plain")
    assert all(word in pivot for word in ("xavier", "kaiming", "sigmoid", "relu"))

    study = outputs(cell("study.table"), "text/plain")
    assert study.count("FINISHED") == 4  # 2 dropout rates (0, 0.5) x 2 seeds
    report = outputs(cell("report = nnlab.compare"), "text/html")
    assert "Verdict:" in report and "model.dropout=0.5" in report
    assert "data:image/png;base64," in report

    refused = outputs(cell("init.mode=bogus"), "stdout").strip()  # the CLI's paragraph
    assert refused == ("init.mode='bogus' is invalid: nnlab.inits.kaiming takes mode as "
                       "'fan_in' | 'fan_out'. Valid: 'fan_in' | 'fan_out'.")

    # the store beside the notebook holds what the cells showed
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    lab = client.get_experiment_by_name("nnlab")
    runs = client.search_runs([lab.experiment_id])
    parents = [r for r in runs if r.data.tags.get("mlflow.source.name") == "nnlab sweep"]
    assert len(runs) == 1 + 4 + 1 and len(parents) == 1
    assert all(r.info.status == "FINISHED" for r in runs)
    dropout = client.get_experiment_by_name("dropout_study")
    assert len(client.search_runs([dropout.experiment_id])) == 4 + 1  # jobs + the sweep's run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlruns"]  # nothing else written
