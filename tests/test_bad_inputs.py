"""Every bad value is refused before training: exit 2, one paragraph naming the key, the bad
value and the valid choices, no traceback, no MLflow store or run. Grow this table with every
new option."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).parent / "helpers" / "bad_input_driver.py"

# (overrides, fragments the message must contain)
BAD_INPUTS: list[tuple[list[str], list[str]]] = [
    # Hydra's own errors, worded like nnlab's
    (["model=resnet"], ["model=resnet", "lenet5", "mlp"]),
    (["activation=swishy"], ["activation=swishy", "relu", "sigmoid"]),
    (["init=kaimingg"], ["init=kaimingg", "Did you mean 'kaiming'"]),
    (["experiment=init_studdy"], ["experiment=init_studdy", "Did you mean 'init_study'"]),
    (["accelerator=tpu"], ["accelerator=tpu", "cpu", "gpu"]),
    (["batch_size=abc"], ["batch_size=abc", "Integer"]),
    (["seed=1.5"], ["seed=1.5", "Integer"]),
    (["init.valu=3"], ["init.valu", "+init.valu"]),
    (["model=mlp", "model.hidden=[64 32"], ["model.hidden=[64 32", "quoted"]),
    # nnlab's checks: every group
    (["optimizer.lr=fast"], ["optimizer.lr", "fast"]),
    (["optimizer.lr=0"], ["optimizer.lr=0", "> 0"]),
    (["optimizer.lr=-0.1"], ["optimizer.lr=-0.1", "> 0"]),
    (["optimizer.momentum=1.5"], ["optimizer.momentum=1.5", "[0, 1)"]),
    (["optimizer=sgd", "+optimizer.momentun=0.9"], ["momentun", "Did you mean 'momentum'"]),
    (["optimizer=adam", "optimizer.betas=[0.9,1.5]"], ["optimizer.betas", "[0, 1)"]),
    (["model=mlp", "model.dropout=1.0"], ["model.dropout=1.0", "0 <= p < 1"]),
    (["model=mlp", "model.hidden=[0]"], ["model.hidden=[0]", ">= 1"]),
    (["model=mlp", "model.hidden=5"], ["model.hidden=5", "Sequence"]),
    (["model.width=0"], ["model.width=0", "> 0"]),
    (["model.pool=median"], ["model.pool='median'", "'max' | 'avg'"]),
    (["+model.depth=3"], ["model.depth", "no parameter 'depth'"]),
    (["activation=leaky_relu", "activation.negative_slope=-1"], ["negative_slope=-1", ">= 0"]),
    (["activation.name=swish"], ["activation.name='swish'", "relu", "sigmoid"]),
    (["init=kaiming_normal", "init.mode=bogus"], ["init.mode='bogus'", "'fan_in' | 'fan_out'"]),
    (["init=kaiming", "init.distribution=cauchy"], ["init.distribution='cauchy'", "'normal'"]),
    (["init=constant", "+init.valu=3"], ["init.valu=3", "Did you mean 'value'"]),
    (["init=uniform", "init.a=1", "init.b=0"], ["init.a=1", "a < b"]),
    (["init=normal", "init.std=0"], ["init.std=0", "> 0"]),
    (["init.bias=random"], ["init.bias='random'", "zeros"]),
    (["loss.label_smoothing=2"], ["loss.label_smoothing=2", "[0, 1]"]),
    (["dataset=sine", "model=mlp"], ["cross_entropy", "regression", "mse"]),
    (["dataset=moons"], ["lenet5", "moons", "model=mlp"]),
    (["dataset.val_fraction=1.5"], ["dataset.val_fraction=1.5", "[0, 1)"]),
    (["dataset.test_fraction=0"], ["dataset.test_fraction=0", "(0, 1)"]),
    (["dataset.in_memory=maybe"], ["dataset.in_memory='maybe'", "'auto'"]),
    (["dataset.resize=0"], ["dataset.resize=0", ">= 1"]),
    (["scheduler=step", "scheduler.step_size=0"], ["scheduler.step_size=0", ">= 1"]),
    (["scheduler=step", "scheduler.gamma=-1"], ["scheduler.gamma=-1", "> 0"]),
    (["accelerator.precision=8"], ["accelerator.precision", "bf16-mixed"]),
    (["accelerator.devices=0"], ["accelerator.devices=0", ">= 1"]),
    (["batch_size=0"], ["batch_size=0", ">= 1"]),
    (["seed=-1"], ["seed=-1", ">= 0"]),
    (["trainer.max_epochs=0"], ["trainer.max_epochs=0", ">= 1"]),
    (["trainer.limit_train_batches=0"], ["trainer.limit_train_batches=0", "(0, 1]"]),
    (["trainer.max_epochs=1 2"], ["trainer.max_epochs='1 2'", "int"]),
    (["+trainer.max_epoch=3"], ["trainer.max_epoch", "Did you mean 'max_epochs'"]),
    (["+trainer.accelerator=gpu"], ["trainer.accelerator", "accelerator=cpu|gpu|auto"]),
    (["+callbacks.es._target_=nonexistent.Module"], ["callbacks.es._target_", "nonexistent"]),
    (["+callbacks.es.monitor=val/loss"], ["callbacks.es", "_target_"]),
    (["instruments.every_n_steps=0"], ["instruments.every_n_steps=0", ">= 1"]),
    (["instruments.saturation_threshold=2"], ["saturation_threshold=2", "(0, 1)"]),
    (["checkpoint.every_n_steps=-1"], ["checkpoint.every_n_steps=-1", ">= 0"]),
    (["+activaton=relu"], ["activaton", "Did you mean 'activation'"]),
    (["+sed=3"], ["sed", "Did you mean 'seed'"]),
    (["-m", "seed=0,1", "--cfg", "job"], ["--multirun, --cfg", "drop -m"]),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """Every case through nnlab's real entry point, in one process started in a scratch folder."""
    cwd = tmp_path_factory.mktemp("bad-inputs")
    cases = [args for args, _ in BAD_INPUTS]
    result = subprocess.run([sys.executable, str(DRIVER), json.dumps(cases)], cwd=cwd,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    return cwd, {" ".join(r["args"]): r for r in found}


def test_the_table_covers_every_group() -> None:
    keys = " ".join(" ".join(args) for args, _ in BAD_INPUTS)
    for group in ("model", "activation", "init", "loss", "optimizer", "scheduler", "dataset",
                  "accelerator", "trainer", "callbacks", "instruments", "checkpoint", "seed",
                  "batch_size", "experiment"):
        assert group in keys, group
    assert len(BAD_INPUTS) >= 30


@pytest.mark.parametrize(("overrides", "fragments"), BAD_INPUTS,
                         ids=[" ".join(case[0]) for case in BAD_INPUTS])
def test_bad_input_is_refused_before_any_run(outcomes, overrides: list[str],
                                             fragments: list[str]) -> None:
    cwd, found = outcomes
    outcome = found[" ".join(overrides)]
    message = outcome["stderr"]
    assert outcome["code"] == 2, message[-2000:]
    for fragment in fragments:
        assert fragment in message, (fragment, message[-2000:])
    assert "Traceback" not in message
    lines = [line for line in message.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nnlab: error: "), message
    assert not (cwd / "mlruns" / "mlflow.db").exists(), "no store, let alone a run"
