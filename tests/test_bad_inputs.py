"""Every bad value is refused before training: exit 2, one paragraph naming the key, the bad
value and the valid choices, no traceback, no MLflow store or run. Grow this table with every
new option."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    (["seed=-1"], ["seed=-1", "[0, 2**32)"]),
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
    # numbers the types allow but training cannot use: finite, in range, of a size that fits
    (["optimizer.lr=inf"], ["optimizer.lr=inf", "finite"]),
    (["optimizer.weight_decay=inf"], ["optimizer.weight_decay=inf", "finite"]),
    (["init=normal", "init.std=inf"], ["init.std=inf", "finite"]),
    (["init=constant", "init.value=nan"], ["init.value=nan", "finite"]),
    (["init=uniform", "init.a=nan"], ["init.a=nan", "finite"]),
    (["dataset=sine", "model=mlp", "loss=smooth_l1", "loss.beta=inf"], ["loss.beta=inf"]),
    (["activation=elu", "activation.alpha=inf"], ["activation.alpha=inf", "finite"]),
    (["dataset=moons", "model=mlp", "dataset.noise=inf"], ["dataset.noise=inf", "finite"]),
    (["scheduler=step", "scheduler.gamma=inf"], ["scheduler.gamma=inf", "finite"]),
    (["seed=4294967296"], ["seed=4294967296", "2**32"]),
    (["batch_size=99999999999999999999"], ["batch_size=99999999999999999999", "64-bit"]),
    (["trainer.limit_train_batches=0.0001"], ["limit_train_batches=0.0001", "0 batches",
                                              ">= 0.05"]),
    (["model=mlp", "model.hidden=[2000000000]"], ["model.hidden=[2000000000]", "TB",
                                                  "available"]),
    (["model=mlp", "model.hidden=[100000,100000]"], ["model.hidden=[100000, 100000]", "GB"]),
    (["dataset=moons", "model=mlp", "dataset.n_samples=100000000000"],
     ["dataset.n_samples=100000000000", "TB", "n_samples up to about"]),
    (["dataset.size=1000000"], ["dataset.size=1000000", "available"]),
    # the parts' own rules: built dry before any data loads or store opens
    (["optimizer=adam", "+optimizer.eps=-1"], ["optimizer=adam", "optimizer.eps=-1",
                                               "Invalid epsilon value"]),
    (["optimizer.nesterov=true", "optimizer.momentum=0"], ["optimizer.nesterov=True",
                                                           "optimizer.momentum=0", "Nesterov"]),
    (["scheduler=step", "+scheduler.last_epoch=5"], ["scheduler=step", "last_epoch=5"]),
    (["callbacks=early_stopping", "callbacks.early_stopping.mode=sideways"],
     ["callbacks.early_stopping.mode='sideways'", "min, max"]),
    (["callbacks=early_stopping", "callbacks.early_stopping.monitor=val/bogus"],
     ["monitor='val/bogus'", "val/acc", "val/loss"]),
    (["callbacks=early_stopping", "callbacks.early_stopping.patience=-3"],
     ["patience=-3", ">= 0"]),
    (["+callbacks.best._target_=lightning.pytorch.callbacks.ModelCheckpoint",
      "+callbacks.best.monitor=val/r2"], ["callbacks.best.monitor='val/r2'", "classification"]),
    (["logger=csv", "logger.csv.save_dir=a_file/logs"], ["logger.csv.save_dir='a_file/logs'",
                                                         "is a file"]),
    (["accelerator=cpu", "accelerator.devices=[7]"], ["accelerator.devices=[7]", "int > 0"]),
    (["accelerator=cpu", "accelerator.strategy=fsdp"], ["accelerator.strategy='fsdp'", "GPU"]),
    (["+trainer.accumulate_grad_batches=0"], ["accumulate_grad_batches=0", ">= 1"]),
    (["+trainer.check_val_every_n_epoch=0"], ["check_val_every_n_epoch=0", ">= 1"]),
    (["+trainer.gradient_clip_algorithm=bogus"], ["gradient_clip_algorithm='bogus'", "norm"]),
    (["dataset.resize=2"], ["dataset.resize=2", "(1, 2, 2)", "lenet5"]),
    (["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0", "seed=0,1"],
     ["hydra.launcher.n_jobs=0", "!= 0"]),
    (["-m", "hydra/launcher=packed", "hydra.launcher.max_members=0", "seed=0,1"],
     ["hydra.launcher.max_members=0", ">= 1"]),
    # the user's own files and folders
    (["--config-dir", "no_such_conf"], ["--config-dir", "no_such_conf", "no such folder"]),
    (["--config-dir", "user_conf", "experiment=broken"], ["broken.yaml", "line 3",
                                                          "not valid YAML"]),
    (["hydra.run.dir=a_file/run"], ["hydra.run.dir=a_file/run", "is a file"]),
    (["hydra.run.dir=/proc/nnlab-run"], ["hydra.run.dir=/proc/nnlab-run", "cannot be created"]),
    # messages that say the real cause, and nothing else
    (["mlflow.experiment_name="], ["mlflow.experiment_name=''", "non-empty"]),
    (["accelerator=cpu", "accelerator.precision=16-mixed"],
     ["accelerator.precision='16-mixed'", "CUDA", "bf16-mixed"]),
    (["mlflow.tracking_uri=http://bob:hunter2@127.0.0.1:9"],
     ["mlflow.tracking_uri=http://***@127.0.0.1:9", "cannot reach"]),
    # data that lies (files made by the fixture, see fake_mnist)
    (["dataset=mnist", "dataset.root=bad_labels"], ["bad_labels", "outside its classes 0..9",
                                                    "200"]),
    (["dataset=mnist", "dataset.root=short_labels"], ["short_labels", "30 inputs but 29 labels"]),
    (["dataset=mnist", "dataset.root=truncated_gz"], ["train-images-idx3-ubyte.gz",
                                                      "truncated"]),
]
SECRET = "hunter2"  # a password in a row's URI: never printed


def idx(path: Path, array: np.ndarray, magic: int, gz: bool = False) -> None:
    """An MNIST IDX file (big-endian header: magic, then each dimension)."""
    data = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def fake_mnist(root: Path, labels: dict[str, np.ndarray], gz: bool = False) -> None:
    """A tiny MNIST in torchvision's layout: 30 train and 10 test 28x28 images."""
    raw = root / "MNIST" / "raw"
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)), 2051, gz)
        idx(raw / f"{split}-labels-idx1-ubyte", labels.get(split, np.arange(n) % 10), 2049, gz)


def user_files(cwd: Path) -> None:
    """What the rows name in the scratch folder: bad data sets, a user's configs, a file."""
    fake_mnist(cwd / "bad_labels", {"train": np.r_[np.arange(29) % 10, 200]})
    fake_mnist(cwd / "short_labels", {"train": np.arange(29) % 10})
    fake_mnist(cwd / "truncated_gz", {}, gz=True)
    whole = cwd / "truncated_gz" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    whole.write_bytes(whole.read_bytes()[:200])
    (cwd / "user_conf" / "experiment").mkdir(parents=True)
    (cwd / "user_conf" / "experiment" / "broken.yaml").write_text(
        "# @package _global_\nseed: 3\nmodel: [mlp\n")
    (cwd / "a_file").write_text("not a folder\n")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """Every case through nnlab's real entry point, in one process started in a scratch folder."""
    cwd = tmp_path_factory.mktemp("bad-inputs")
    user_files(cwd)
    (cwd / "tmp").mkdir()
    before = sorted(p.relative_to(cwd) for p in cwd.rglob("*"))
    cases = [args for args, _ in BAD_INPUTS]
    result = subprocess.run([sys.executable, str(DRIVER), json.dumps(cases)], cwd=cwd,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(cwd / "tmp"),
                                 "NNLAB_DATA": str(cwd / "no-data")})
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    after = sorted(p.relative_to(cwd) for p in cwd.rglob("*")
                   if not p.relative_to(cwd).as_posix().startswith("tmp/torchinductor_"))
    return cwd, {" ".join(r["args"]): r for r in found}, before, after


def test_the_table_covers_every_group() -> None:
    keys = " ".join(" ".join(args) for args, _ in BAD_INPUTS)
    for group in ("model", "activation", "init", "loss", "optimizer", "scheduler", "dataset",
                  "accelerator", "trainer", "callbacks", "instruments", "checkpoint", "seed",
                  "batch_size", "experiment"):
        assert group in keys, group
    assert len(BAD_INPUTS) >= 90


@pytest.mark.parametrize(("overrides", "fragments"), BAD_INPUTS,
                         ids=[" ".join(case[0]) for case in BAD_INPUTS])
def test_bad_input_is_refused_before_any_run(outcomes, overrides: list[str],
                                             fragments: list[str]) -> None:
    cwd, found, _, _ = outcomes
    outcome = found[" ".join(overrides)]
    message = outcome["stderr"]
    assert outcome["code"] == 2, message[-2000:]
    for fragment in fragments:
        assert fragment in message, (fragment, message[-2000:])
    assert "Traceback" not in message and SECRET not in message
    lines = [line for line in message.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nnlab: error: "), message
    assert not (cwd / "mlruns" / "mlflow.db").exists(), "no store, let alone a run"


def test_refused_inputs_leave_nothing_behind(outcomes) -> None:
    """No store, no run folder, no half-decompressed .part file: the scratch folder holds
    exactly the files the fixture put there, after every row above (torch's own compile cache
    in $TMPDIR aside)."""
    _, _, before, after = outcomes
    assert after == before, sorted(set(after) ^ set(before))
