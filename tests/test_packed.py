"""Packed sweeps (nnlab.packed, hydra/launcher=packed): each packed member trains exactly as its
solo run (same init draw, same batches in the same order, same optimiser update), logs into its
own MLflow run, and diverges alone; jobs that cannot pack run solo with the reason printed."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from torch import nn

from nnlab.engine import train_one
from nnlab.engine.logger import is_curve
from nnlab.figures import learning_curves
from nnlab.packed import (
    PACK_TAG,
    Member,
    model_unpackable,
    pack_key,
    run_pack,
    unpackable,
)
from nnlab.tracking import tags

TOLERANCE = 1e-5  # relative, float32 (the contract)


def base_overrides(tmp: Path, steps: int) -> list[str]:
    return ["model=mlp", "dataset=moons", f"trainer.limit_train_batches={steps}",
            "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
            "instruments.enabled=false", "checkpoint.every_n_steps=0",
            f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db", f"mlflow.artifact_root={tmp}/art"]


def solo_params(compose_cfg, tmp: Path, name: str, overrides: list[str]) -> dict[str, torch.Tensor]:
    """The model parameters a real solo run (nnlab.engine.train_one) ends with."""
    train_one(compose_cfg(overrides), overrides, tmp / name)
    state = torch.load(tmp / name / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def worst_relative_difference(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> float:
    assert got.keys() == want.keys()
    return max(float((got[k] - want[k]).abs().max() / want[k].abs().max()) for k in want)


def packed_and_solo_runs(tmp: Path, members: list[Member]) -> list[tuple]:
    """(each member's MLflow run, the solo run of the same overrides) from the store in tmp."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    runs = client.search_runs([members[0].tracker.experiment_id])
    return [(client.get_run(m.tracker.run_id),
             next(r for r in runs if PACK_TAG not in r.data.tags
                  and r.data.tags["nnlab.overrides"] == " ".join(m.overrides)))
            for m in members]


def check_pack_against_solo(compose_cfg, tmp: Path, steps: int, variants: list[list[str]]) -> None:
    members, solos, inits = [], [], []
    for i, variant in enumerate(variants):
        overrides = [*base_overrides(tmp, steps), *variant]
        solos.append(solo_params(compose_cfg, tmp, f"solo{i}", overrides))
        members.append(Member(compose_cfg(overrides), overrides, tmp / f"member{i}", {}))
    module = run_pack(members, "test-pack")
    for m, (member, solo) in enumerate(zip(members, solos, strict=True)):
        packed = module.member_state_dict(m)
        inits.append(member.model.state_dict())  # the member's own untrained init draw
        assert worst_relative_difference(packed, solo) <= TOLERANCE, variants[m]
        assert member.error is None and member.tracker is not None
    # each member's MLflow run holds the metrics its solo run logged
    for packed, twin in packed_and_solo_runs(tmp, members):
        assert packed.data.tags[PACK_TAG] == "test-pack" and packed.info.status == "FINISHED"
        for key in ("train/loss_epoch", "val/loss", "val/acc", "test/loss", "test/acc"):
            assert packed.data.metrics[key] == pytest.approx(twin.data.metrics[key], rel=1e-4)
    # the check has teeth: training moved every member away from its init
    for init, solo in zip(inits, solos, strict=True):
        assert worst_relative_difference(init, solo) > 100 * TOLERANCE


@pytest.mark.parametrize("steps", [1, 10])
def test_pack_of_two_inits_by_two_seeds_equals_solo_runs(compose_cfg, tmp_path, steps: int) -> None:
    variants = [[f"init={init}", f"seed={seed}"]
                for init in ("xavier_normal", "kaiming_normal") for seed in (0, 1)]
    check_pack_against_solo(compose_cfg, tmp_path, steps, variants)


@pytest.mark.parametrize("steps", [1, 10])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_pack_with_different_learning_rates_equals_solo_runs(compose_cfg, tmp_path, steps: int,
                                                              optimizer: str) -> None:
    momentum = ["optimizer.momentum=0.5"] if optimizer == "sgd" else []
    variants = [[f"optimizer={optimizer}", "seed=0", "optimizer.lr=0.05"],
                [f"optimizer={optimizer}", "seed=1", "optimizer.lr=0.01", *momentum],
                [f"optimizer={optimizer}", "seed=0", "optimizer.lr=0.2",
                 "optimizer.weight_decay=0.01"]]
    check_pack_against_solo(compose_cfg, tmp_path, steps, variants)


def test_pack_with_dropout_rates_equals_solo_runs(compose_cfg, tmp_path) -> None:
    """Each member's dropout masks come from its own stream, as its solo run draws them."""
    variants = [["model.dropout=0.2", "seed=0"], ["model.dropout=0.5", "seed=1"]]
    check_pack_against_solo(compose_cfg, tmp_path, 10, variants)


def test_pack_key_groups_only_packable_differences(compose_cfg) -> None:
    base = ["model=mlp", "dataset=moons"]
    key = pack_key(compose_cfg(base))
    for packable in ("seed=3", "init=xavier_normal", "optimizer.lr=0.3",
                     "optimizer.momentum=0.5", "optimizer.weight_decay=0.1"):
        assert pack_key(compose_cfg([*base, packable])) == key, packable
    for other in ("activation=tanh", "batch_size=32", "model.hidden=[8]", "optimizer=adam",
                  "model.dropout=0.3"):  # dropout on vs off builds different layers
        assert pack_key(compose_cfg([*base, other])) != key, other
    assert unpackable(compose_cfg(base)) is None
    assert "gradient clipping" in unpackable(compose_cfg([*base, "trainer.gradient_clip_val=1"]))
    assert "scheduler=step" in unpackable(compose_cfg([*base, "scheduler=step"]))
    assert "rmsprop" in unpackable(compose_cfg([*base, "optimizer=rmsprop"]))
    assert "DDP" in unpackable(compose_cfg([*base, "accelerator.devices=2"]))
    batchnorm = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4))
    assert "BatchNorm" in model_unpackable(batchnorm, torch.device("cpu"), True)
    conv = nn.Sequential(nn.Conv2d(1, 2, 3))
    assert "compute-bound" in model_unpackable(conv, torch.device("cpu"), False)
    assert model_unpackable(conv, torch.device("cpu"), True) is None


def test_packed_sweep_logs_each_member_as_its_own_run(all_runs, run_cli, tmp_path) -> None:
    """sgd jobs pack (one MLflow run each, tagged with the pack); rmsprop jobs run solo, and
    the launcher says why."""
    result = run_cli(tmp_path, "-m", "hydra/launcher=packed", "model=mlp", "dataset=moons",
                     "seed=0,1", "optimizer=sgd,rmsprop", "trainer.max_epochs=2",
                     "instruments.enabled=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rmsprop has no vectorised version" in result.stdout
    # as quiet as a solo run: no Lightning INFO lines ("GPU available: ...", tips)
    assert "GPU available" not in result.stdout + result.stderr
    runs = all_runs(tmp_path)
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    packed = [r for r in runs if PACK_TAG in r.data.tags]
    solo = [r for r in runs if PACK_TAG not in r.data.tags]
    assert {r.data.params["optimizer.name"] for r in packed} == {"sgd"}
    assert {r.data.params["seed"] for r in packed} == {"0", "1"}
    assert len({r.data.tags[PACK_TAG] for r in packed}) == 1
    assert {r.data.params["optimizer.name"] for r in solo} == {"rmsprop"}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    solo_keys = {k for k in solo[0].data.metrics if not k.startswith(("grad/", "act/", "weight/"))}
    for r in packed:
        assert set(r.data.metrics) == solo_keys
        assert len(client.get_metric_history(r.info.run_id, "val/acc")) == 2  # per epoch
        assert r.data.tags["nnlab.job_num"] in {"0", "2"}
        artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"config.yaml", "overrides.txt", "model_summary.txt"} <= artifacts
    # the two seeds trained differently (their own data order and init)
    assert len({r.data.metrics["val/loss"] for r in packed}) == 2
    plan = json.loads(next((tmp_path / "mlruns" / "hydra" / "multirun").glob("*/packs.json"))
                      .read_text())
    assert [p["jobs"] for p in plan["packs"]] == [[0, 2]]
    assert sorted(s["job"] for s in plan["solo"]) == [1, 3]


def test_a_diverging_member_stops_alone(all_runs, run_cli, tmp_path) -> None:
    result = run_cli(tmp_path, "-m", "hydra/launcher=packed", "model=mlp", "dataset=moons",
                     "optimizer.lr=0.05,1e12", "trainer.max_epochs=2",
                     "instruments.enabled=false")
    assert result.returncode == 1  # the sweep reports its failed job
    runs = {r.data.params["optimizer.lr"]: r for r in all_runs(tmp_path)}
    assert runs["1000000000000.0"].info.status == "FAILED"
    assert runs["1000000000000.0"].data.tags["diverged"] == "true"
    assert runs["0.05"].info.status == "FINISHED"
    assert runs["0.05"].data.tags[PACK_TAG] == runs["1000000000000.0"].data.tags[PACK_TAG]
    assert "diverged" in result.stderr


@pytest.mark.slow
def test_packed_sweep_means_lie_within_the_solo_seed_spread(all_runs, run_cli, tmp_path) -> None:
    """Over whole runs the contract is statistical: per init, the packed runs' mean final
    val/acc lies within the solo (basic launcher) runs' range over seeds."""
    sweep = ["-m", "model=mlp", "dataset=moons", "init=xavier_normal,kaiming_normal",
             "seed=0,1,2", "trainer.max_epochs=10", "instruments.enabled=false"]
    for launcher in ("basic", "packed"):
        folder = tmp_path / launcher
        folder.mkdir()
        result = run_cli(folder, *sweep, f"hydra/launcher={launcher}")
        assert result.returncode == 0, result.stderr[-3000:]
    for init in ("xavier_normal", "kaiming_normal"):
        solo = [r.data.metrics["val/acc"] for r in all_runs(tmp_path / "basic")
                if r.data.params["init.name"] == init]
        packed = [r.data.metrics["val/acc"] for r in all_runs(tmp_path / "packed")
                  if r.data.params["init.name"] == init]
        assert len(solo) == len(packed) == 3
        assert min(solo) <= statistics.mean(packed) <= max(solo), (init, solo, packed)


INSTRUMENT_PREFIXES = ("grad_norm/", "weight_norm/", "act_mean/", "act_std/", "saturated/",
                       "dead/")


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_packed_members_log_the_solo_runs_instruments(compose_cfg, tmp_path,
                                                      activation: str) -> None:
    """Per-layer instruments are vectorised in a pack: each member logs the same metric names,
    at the same steps, with its solo run's values; and the same figures under instruments/."""
    from mlflow.tracking import MlflowClient

    members = []
    for seed in (0, 1):
        overrides = [*base_overrides(tmp_path, 6), "trainer.max_epochs=2", f"seed={seed}",
                     f"activation={activation}", "instruments.enabled=true",
                     "instruments.every_n_steps=2", "instruments.plots=true",
                     "trainer.limit_train_batches=null"]
        overrides.remove("instruments.enabled=false")
        overrides.remove("trainer.limit_train_batches=6")
        train_one(compose_cfg(overrides), overrides, tmp_path / f"solo{seed}")
        members.append(Member(compose_cfg(overrides), overrides, tmp_path / f"member{seed}", {}))
    run_pack(members, "test-pack")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for packed, twin in packed_and_solo_runs(tmp_path, members):
        keys = {k for k in twin.data.metrics if k.startswith(INSTRUMENT_PREFIXES)}
        assert {k for k in packed.data.metrics if k.startswith(INSTRUMENT_PREFIXES)} == keys
        kinds = {k.split("/")[0] for k in keys}
        assert {"grad_norm", "weight_norm", "act_mean", "act_std",
                "saturated" if activation == "tanh" else "dead"} <= kinds
        assert any(k.endswith("_step") for k in keys)  # every_n_steps values too
        for key in keys:
            got = [(m.step, m.value) for m in client.get_metric_history(packed.info.run_id, key)]
            want = [(m.step, m.value) for m in client.get_metric_history(twin.info.run_id, key)]
            assert [s for s, _ in got] == [s for s, _ in want], key
            assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-4,
                                                        abs=1e-6), key
        assert packed.data.tags[tags.LAYERS] == twin.data.tags[tags.LAYERS]
        figures = {a.path for a in client.list_artifacts(packed.info.run_id, "instruments")}
        assert figures == {a.path for a in client.list_artifacts(twin.info.run_id,
                                                                 "instruments")}
        assert "instruments/decision_boundary.gif" in figures
        # the learning curves, drawn from the values the member's logger kept, are the picture
        # its run's metric histories in the store give
        curves = {key: [(m.step, m.value) for m in
                        client.get_metric_history(packed.info.run_id, key)]
                  for key in packed.data.metrics if is_curve(key)}
        drawn = client.download_artifacts(packed.info.run_id, "instruments/learning_curves.png",
                                          str(tmp_path))
        assert Path(drawn).read_bytes() == learning_curves(curves)


def test_a_pack_splits_at_max_members_and_says_how_many_fit(all_runs, run_cli, tmp_path) -> None:
    result = run_cli(tmp_path, "-m", "hydra/launcher=packed", "model=mlp", "dataset=moons",
                     "seed=0,1,2,3,4", "trainer.max_epochs=1", "instruments.enabled=false",
                     "hydra.launcher.max_members=2")
    assert result.returncode == 0, result.stderr[-3000:]
    plan = json.loads(next((tmp_path / "mlruns" / "hydra" / "multirun").glob("*/packs.json"))
                      .read_text())
    assert [p["members"] for p in plan["packs"]] == [2, 2, 1]
    assert [p["jobs"] for p in plan["packs"]] == [[0, 1], [2, 3], [4]]
    fits = plan["packs"][0]["fit_in_memory"]
    assert fits > 1000  # a 2-input MLP on 1,000 points: a few hundred kB a member
    assert f"{fits} such members would fit half its free memory" in result.stdout
    runs = all_runs(tmp_path)
    assert len(runs) == 5 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags[PACK_TAG] for r in runs}) == 3
