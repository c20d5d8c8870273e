"""Logging to the team server (`python -m nnlab.server`: PostgreSQL + MLflow with logins) vs the
local sqlite store, side by side; figures appended to bench/results.md.

    python bench/server_logging.py [--only requests,epoch,model] [--data ROOT] [--batches N]
                                   [--repeats R] [--out bench/results.md]

requests  one log_batch of 50 metric values (nnlab's flush size) and of 1 value: sqlite vs the
          server, with the server's credential cache on (nnlab's default) and off (MLflow's)
logger    time a step spends in nnlab's Lightning logger logging every step: sqlite vs server
epoch     nnlab epoch (LeNet-5, MNIST, CPU) logging every step vs never, on sqlite and the server
model     the trained model at the end of a run: state_dict + info.json artifacts (what nnlab
          logs) vs MLflow's PyTorch flavour (log_model with input example and signature)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
PASSWORD = "bench-" + secrets.token_hex(12)
CREDS = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": PASSWORD}


class Server:
    """`python -m nnlab.server` on a free port in a fresh root (reachable by PostgreSQL's user)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, auth_cache_s: int = 60) -> None:
        env = {**os.environ, "NNLAB_ADMIN_PASSWORD": PASSWORD,
               "NNLAB_AUTH_CACHE_S": str(auth_cache_s), "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([PY, "-m", "nnlab.server", "--root", str(self.root),
                                      "--port", str(self.port)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (self.root / "server.json").exists():
            if self.proc.poll() is not None:
                raise RuntimeError("nnlab.server exited while starting")
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(120)


def median_ms(seconds: list[float]) -> float:
    return 1000 * statistics.median(seconds)


# -- requests -------------------------------------------------------------------------------------
def time_requests(uri: str, repeats: int) -> dict[str, float]:
    """Median seconds of log_batch with 50 values and with 1 value, in one run of `uri`."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment(f"bench-{secrets.token_hex(4)}")
    run_id = client.create_run(experiment).info.run_id
    now, step = int(time.time() * 1000), 0
    timings: dict[str, list[float]] = {"50": [], "1": []}
    for _ in range(repeats):
        for size in ("50", "1"):
            batch = [Metric("x", float(i), now, step + i) for i in range(int(size))]
            step += int(size)
            start = time.perf_counter()
            client.log_batch(run_id, metrics=batch)
            timings[size].append(time.perf_counter() - start)
    client.set_terminated(run_id)
    return {size: median_ms(values) for size, values in timings.items()}


def requests_section(server: Server, repeats: int) -> list[str]:
    os.environ.update(CREDS)
    with tempfile.TemporaryDirectory() as tmp:
        rows = {"sqlite (local file)": time_requests(f"sqlite:///{tmp}/mlflow.db", repeats)}
    rows["server, credential cache on (nnlab's default, 60 s)"] = time_requests(server.url,
                                                                                 repeats)
    server.stop()
    server.start(auth_cache_s=0)
    rows["server, credential cache off (MLflow's default)"] = time_requests(server.url, repeats)
    server.stop()
    server.start()
    return [
        f"### One log_batch call (median of {repeats}, ms)", "",
        "| store | 50 values (one nnlab flush) | 1 value | per value, in a flush of 50 |",
        "|---|---|---|---|",
        *[f"| {name} | {t['50']:.1f} | {t['1']:.1f} | {1000 * t['50'] / 50:.0f} us |"
          for name, t in rows.items()],
    ]


# -- logger -------------------------------------------------------------------------------------
def logger_ms_per_step(uri: str, steps: int) -> float:
    """Milliseconds a training step spends in nnlab's Lightning logger (MlflowRunLogger) when it
    logs train/loss_step and train/acc_step every step: batched, one log_batch per 50 values."""
    sys.path.insert(0, str(REPO))
    from nnlab.engine.logger import MlflowRunLogger
    from nnlab.tracking import Tracker

    tracker = Tracker(uri, f"bench-{secrets.token_hex(4)}")
    tracker.start("logger", {}, {})
    logger = MlflowRunLogger(tracker)
    start = time.perf_counter()
    for step in range(steps):
        logger.log_metrics({"train/loss_step": 1.0 / (step + 1), "train/acc_step": 0.5}, step)
    logger.flush()
    spent = time.perf_counter() - start
    tracker.end("FINISHED")
    return 1000 * spent / steps


def logger_section(server: Server, repeats: int, steps: int = 1000) -> list[str]:
    os.environ.update(CREDS)
    seen: dict[str, list[float]] = {"sqlite": [], "server": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            seen["sqlite"].append(logger_ms_per_step(f"sqlite:///{tmp}/mlflow.db", steps))
            seen["server"].append(logger_ms_per_step(server.url, steps))
    med = {k: statistics.median(v) for k, v in seen.items()}
    step_ms = 11.0  # a LeNet-5 MNIST CPU step here (bench/results.md, quiet run of 2026-11-23)
    return [f"### nnlab's logger alone, logging every step ({steps} steps x 2 values in a tight "
            "loop; sqlite: one log_batch per 50 values; server: per 50 values once 5 s have "
            f"passed, else per 1000; median of {repeats})", "",
            "| store | ms a step | vs an ~11 ms LeNet-5 CPU step | each repeat |",
            "|---|---|---|---|",
            *[f"| {k} | {v:.2f} | {100 * v / step_ms:+.1f}% | "
              f"{' '.join(f'{x:.2f}' for x in seen[k])} |" for k, v in med.items()]]


# -- epoch ----------------------------------------------------------------------------------------
def epoch_seconds(args: list[str], uri: str) -> float:
    """The last epoch's time/epoch_s of one CLI run logging to `uri`."""
    from mlflow.tracking import MlflowClient

    experiment = f"bench-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as tmp:
        store = uri if uri.startswith("http") else f"sqlite:///{tmp}/mlruns/mlflow.db"
        out = subprocess.run(
            [PY, "-m", "nnlab", *args, f"mlflow.tracking_uri={store}",
             f"mlflow.experiment_name={experiment}", "trainer.enable_progress_bar=false"],
            cwd=tmp, capture_output=True, text=True,
            env={**os.environ, **CREDS, "PYTHONPATH": str(REPO)})
        if out.returncode != 0:
            raise RuntimeError(f"nnlab failed:\n{out.stderr[-3000:]}")
        client = MlflowClient(store)
        run = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])[0]
        history = client.get_metric_history(run.info.run_id, "time/epoch_s")
        return max(history, key=lambda m: m.step).value


def epoch_section(server: Server, root: str, batches: int, repeats: int) -> list[str]:
    base = ["dataset=mnist", f"dataset.root={root}", "accelerator=cpu", "trainer.max_epochs=2",
            f"trainer.limit_train_batches={batches}", "trainer.limit_test_batches=1",
            "instruments.enabled=false"]
    variants = {(store, every): [*base, f"trainer.log_every_n_steps={every}"]
                for store in ("sqlite", "server") for every in (1, 1000000)}
    seen: dict[tuple[str, int], list[float]] = {k: [] for k in variants}
    for _ in range(repeats):  # interleaved: the machine's drift hits every variant alike
        for (store, every), args in variants.items():
            seen[(store, every)].append(
                epoch_seconds(args, server.url if store == "server" else "sqlite"))
    med = {k: statistics.median(v) for k, v in seen.items()}
    lines = [f"### Per-step logging in an nnlab epoch (LeNet-5, MNIST, CPU, {batches} batches + "
             f"validation, epoch 2 of 2; median of {repeats})", "",
             "| store | every step s | never s | cost of logging every step | each repeat |",
             "|---|---|---|---|---|"]
    for store in ("sqlite", "server"):
        every, never = med[(store, 1)], med[(store, 1000000)]
        each = " / ".join(" ".join(f"{s:.2f}" for s in seen[(store, e)]) for e in (1, 1000000))
        cost = f"{100 * (every - never) / never:+.1f}% ({1000 * (every - never) / batches:+.2f} ms"
        lines.append(f"| {store} | {every:.3f} | {never:.3f} | {cost} a step) | {each} |")
    return lines


# -- model ----------------------------------------------------------------------------------------
def model_section(server: Server, repeats: int) -> list[str]:
    """state_dict artifacts (nnlab) vs MLflow's PyTorch flavour, logged and loaded."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    sys.path.insert(0, str(REPO))
    from nnlab.config import register_configs
    from nnlab.engine.build import build_datamodule, build_model
    from nnlab.engine.trained import load_model, log_trained_model
    from nnlab.tracking import Tracker

    os.environ.update(CREDS)
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config")  # LeNet-5 on digits
    datamodule = build_datamodule(cfg)
    info = datamodule.info
    model = build_model(cfg, info.input_shape, info.num_outputs)
    example = datamodule.splits["test"].x[:4]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for store in (f"sqlite:///{tmp}/mlflow.db", server.url):
            name = "server" if store.startswith("http") else "sqlite"
            tracker = Tracker(store, f"bench-model-{secrets.token_hex(4)}",
                              artifact_root=f"{tmp}/artifacts")
            times: dict[str, list[float]] = {k: [] for k in ("ours", "flavour", "ours_load",
                                                             "flavour_load")}
            for _ in range(repeats):
                tracker.start("model", {}, {})
                tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
                start = time.perf_counter()
                log_trained_model(tracker, model, datamodule)
                times["ours"].append(time.perf_counter() - start)
                mlflow.set_tracking_uri(store)
                start = time.perf_counter()
                with mlflow.start_run(run_id=tracker.run_id):
                    logged = mlflow.pytorch.log_model(
                        model, name="pytorch_model", input_example=example.numpy(),
                        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
                times["flavour"].append(time.perf_counter() - start)
                start = time.perf_counter()
                load_model(tracker.run_id, store)
                times["ours_load"].append(time.perf_counter() - start)
                start = time.perf_counter()
                mlflow.pytorch.load_model(logged.model_uri)
                times["flavour_load"].append(time.perf_counter() - start)
                tracker.end("FINISHED")
            rows.append((name, {k: median_ms(v) for k, v in times.items()}))
        client = MlflowClient(server.url)
        sizes = {a.path: a.file_size for a in client.list_artifacts(tracker.run_id, "model")}
    params = sum(p.numel() for p in model.parameters())
    return [f"### The trained model at the end of a run (LeNet-5, {params:,} parameters; median of "
            f"{repeats}, ms)", "",
            "| store | state_dict + info.json (nnlab) | MLflow PyTorch flavour (input example, "
            "signature, pinned requirements) | load: nnlab.load_model | load: "
            "mlflow.pytorch.load_model |", "|---|---|---|---|---|",
            *[f"| {name} | {t['ours']:.0f} | {t['flavour']:.0f} | {t['ours_load']:.0f} | "
              f"{t['flavour_load']:.0f} |" for name, t in rows],
            "", f"- nnlab's files: {json.dumps(sizes)} bytes"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="requests,logger,epoch,model")
    parser.add_argument("--data", default=os.environ.get("NNLAB_DATA",
                                                         str(REPO.parent / "shared" / "data")))
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results.md"))
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    folder = Path(tempfile.mkdtemp(prefix="nnlab-bench-server-"))
    folder.chmod(0o755)
    server = Server(folder / "root")
    server.start()
    lines = [f"## Team server vs sqlite: run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"- machine: {platform.node()}, {os.cpu_count()} CPUs; server: nnlab.server "
             f"(PostgreSQL + MLflow basic-auth, 2 workers) on 127.0.0.1; load average at start "
             f"{os.getloadavg()[0]:.1f}", ""]
    sections = {"requests": lambda: requests_section(server, 4 * args.repeats),
                "logger": lambda: logger_section(server, args.repeats),
                "epoch": lambda: epoch_section(server, str(Path(args.data).resolve()),
                                               args.batches, args.repeats),
                "model": lambda: model_section(server, args.repeats)}
    try:
        for name, section in sections.items():
            if name in only:
                part = section()
                print("\n".join(part), "\n", flush=True)
                lines += [*part, ""]
    finally:
        server.stop()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    lines.append(f"- load average at end {os.getloadavg()[0]:.1f}")
    with Path(args.out).open("a") as handle:
        handle.write("\n".join(lines) + "\n\n")
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
