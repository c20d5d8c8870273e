"""nnlab's benchmarks: figures side by side in one run, reported as ratios, in bench/results.md.

    python bench/run.py [--only overhead,startup,memory,ddp,sweep,gpu] [--data ROOT] [--batches N]
                        [--repeats R] [--out bench/results.md]

overhead  nnlab vs a hand-written PyTorch loop (same LeNet-5, MNIST split, batch size, SGD, seed):
          epoch wall time ratio; and per-step MLflow logging (log_every_n_steps=1 vs never)
startup   from the command to the first training step (digits and MNIST), plus import costs
memory    peak resident memory of the default job against the import floor
ddp       a LeNet-5 MNIST epoch on 1 CPU process vs 2 DDP (gloo) processes
sweep     8 short jobs: joblib launcher (2 workers) vs the basic (sequential) launcher
gpu       (CUDA only) epoch time in-memory vs DataLoader vs the plain loop; test accuracy after
          GPU_EPOCHS epochs; bench/data_path.py's table when it is there
ROOT (default $NNLAB_DATA, else ../shared/data) holds MNIST/raw: the IDX files or only their .gz.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
GPU_EPOCHS = 12  # documented: LeNet-5, Adam lr 1e-3, batch 64 -> test accuracy >= 99.0%
GPU_OPT = ["optimizer=adam", "optimizer.lr=0.001"]
QUIET = ["trainer.enable_progress_bar=false"]

# Runs the CLI; at the first training batch writes the wall clock to $FIRST_STEP_FILE and exits.
FIRST_STEP = """
import os, sys, time
import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
class First(Callback):
    def on_train_batch_start(self, *args):
        open(os.environ["FIRST_STEP_FILE"], "w").write(repr(time.time()))
        os._exit(0)
init = pl.Trainer.__init__
def patched(self, *a, callbacks=None, **k):
    init(self, *a, callbacks=[*(callbacks or []), First()], **k)
pl.Trainer.__init__ = patched
from nnlab.__main__ import main
main()
"""


# -- the plain PyTorch loop --------------------------------------------------------------------
def read_idx(raw: Path, name: str):
    """An IDX file as a numpy array, from NAME or NAME.gz."""
    import numpy as np

    path = raw / name
    if path.exists():
        data = path.read_bytes()
    else:
        data = gzip.decompress((raw / f"{name}.gz").read_bytes())
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def plain_loop(root: str, epochs: int, batches: int, device: str, batch_size: int = 64,
               lr: float = 0.05, adam: bool = False, seed: int = 0) -> dict:
    """LeNet-5 on MNIST, nothing but torch: the same split sizes and per-epoch validation."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(REPO))
    from nnlab.models.lenet import LeNet5

    torch.manual_seed(seed)
    raw = Path(root) / "MNIST" / "raw"
    x = torch.from_numpy(read_idx(raw, "train-images-idx3-ubyte").copy()).float().div_(255)
    y = torch.from_numpy(read_idx(raw, "train-labels-idx1-ubyte").astype("int64"))
    xt = torch.from_numpy(read_idx(raw, "t10k-images-idx3-ubyte").copy()).float().div_(255)
    yt = torch.from_numpy(read_idx(raw, "t10k-labels-idx1-ubyte").astype("int64"))
    x, xt = x.unsqueeze(1), xt.unsqueeze(1)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:6000], order[6000:]
    mean, std = x[train_idx].mean(), x[train_idx].std()
    x, xt = (x - mean) / std, (xt - mean) / std
    dev = torch.device(device)
    xtr, ytr = x[train_idx].to(dev), y[train_idx].to(dev)
    xv, yv, xt, yt = x[val_idx].to(dev), y[val_idx].to(dev), xt.to(dev), yt.to(dev)
    model = LeNet5((1, 28, 28), 10, torch.nn.ReLU).to(dev)
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if adam
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    gen = torch.Generator().manual_seed(seed)

    def evaluate(xs, ys) -> float:
        """Loss and accuracy in training-sized batches, the work nnlab's validation does."""
        model.eval()
        right, loss = 0, 0.0
        with torch.no_grad():
            for i in range(0, len(xs), batch_size):
                scores = model(xs[i : i + batch_size])
                loss += F.cross_entropy(scores, ys[i : i + batch_size], reduction="sum").item()
                right += (scores.argmax(1) == ys[i : i + batch_size]).sum().item()
        model.train()
        return right / len(xs)

    times = []
    for _ in range(epochs):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        perm = torch.randperm(len(xtr), generator=gen).to(dev)
        n = len(xtr) if not batches else min(len(xtr), batches * batch_size)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        evaluate(xv, yv)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"epoch_s": times, "test_acc": evaluate(xt, yt)}


# -- nnlab runs ---------------------------------------------------------------------------------
def nnlab_run(args: list[str], env: dict | None = None, tree: Path = REPO) -> dict:
    """Run the CLI in a scratch folder; return its run's metric histories, the wall time, the
    CPU seconds of the command and its children (a pack's drawing process included) and the
    1-minute load average at its start (`tree`: the checkout of nnlab to run, this one by
    default)."""
    import resource

    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        load = os.getloadavg()[0]
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        out = subprocess.run([PY, "-m", "nnlab", *args, *QUIET], cwd=tmp, capture_output=True,
                             text=True, env={**os.environ, **(env or {}),
                                             "PYTHONPATH": str(tree)})
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
        if out.returncode != 0:
            raise RuntimeError(f"nnlab {' '.join(args)} failed:\n{out.stderr[-3000:]}")
        client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        history = {key: [m.value for m in sorted(client.get_metric_history(r.info.run_id, key),
                                                 key=lambda m: m.step)]
                   for r in runs for key in ("time/epoch_s", "test/acc")}
        span = (max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1e3
        return {"wall_s": wall, "span_s": span, "cpu_s": cpu, "load": load, "runs": len(runs),
                **history}


def plain_subprocess(root: str, epochs: int, batches: int, device: str, **kw) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'bench')!r}); import run; "
            f"print(json.dumps(run.plain_loop({root!r}, {epochs}, {batches}, {device!r}, "
            f"**{kw!r})))")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def instruments_off() -> list[str]:
    """Instruments (per-layer measurements and figures, another concern) off. (Until 2026-11-25
    this looked for `instruments:` in conf/config.yaml, which moved to nnlab's schema in the
    library refactor, so runs after that kept the instruments on.)"""
    return ["instruments.enabled=false"]


def last(values: list[float]) -> float:
    return values[-1]


def overhead(root: str, batches: int, repeats: int, epochs: int = 2) -> list[str]:
    base = ["dataset=mnist", f"dataset.root={root}", "accelerator=cpu",
            f"trainer.max_epochs={epochs}", "trainer.limit_test_batches=1", *instruments_off()]
    if batches:
        base.append(f"trainer.limit_train_batches={batches}")
    variants = {"nnlab (default logging, every 10 steps)": [],
                "nnlab, log every step": ["trainer.log_every_n_steps=1"],
                "nnlab, no step logging": ["trainer.log_every_n_steps=1000000"]}
    seen: dict[str, list[float]] = {"plain PyTorch loop": []} | {k: [] for k in variants}
    for _ in range(repeats):  # interleaved, so the machine's drift hits every variant alike
        plain_run = plain_subprocess(root, epochs, batches, "cpu")
        seen["plain PyTorch loop"].append(last(plain_run["epoch_s"]))
        for name, extra in variants.items():
            seen[name].append(last(nnlab_run([*base, *extra])["time/epoch_s"]))
    med = {k: statistics.median(v) for k, v in seen.items()}
    plain = med["plain PyTorch loop"]
    quiet = med["nnlab, no step logging"]
    rows = [f"| {k} | {v:.3f} | {v / plain:.3f} | {' '.join(f'{s:.3f}' for s in seen[k])} |"
            for k, v in med.items()]
    log_cost = (med["nnlab, log every step"] - quiet) / quiet
    return [
        f"### Overhead and logging (CPU, MNIST, LeNet-5, batch 64, SGD; epoch {epochs} of {epochs}"
        f"{f', {batches} batches' if batches else ''} + validation; median of {repeats})", "",
        "| variant | epoch s | ratio to plain | each repeat |", "|---|---|---|---|", *rows, "",
        f"- **overhead ratio** nnlab/plain: "
        f"**{med['nnlab (default logging, every 10 steps)'] / plain:.3f}** (target <= 1.05)",
        f"- **per-step MLflow logging cost**: **{100 * log_cost:+.1f}%** of epoch time (every step "
        "vs never; target <= 2%)",
    ]


def first_step_seconds(args: list[str], cwd: str) -> float:
    """Wall clock from spawning the CLI to its first training step."""
    mark = Path(cwd) / "first"
    start = time.time()
    subprocess.run([PY, "-c", FIRST_STEP, *args, *QUIET], cwd=cwd, check=True,
                   capture_output=True, env={**os.environ, "FIRST_STEP_FILE": str(mark),
                                             "PYTHONPATH": str(REPO)})
    return float(mark.read_text()) - start


def startup(root: str, repeats: int) -> list[str]:
    rows = []
    for label, args in {"digits (default config)": [],
                        "mnist": ["dataset=mnist", f"dataset.root={root}"]}.items():
        fresh, existing = [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:  # the first run creates the sqlite store
                fresh.append(first_step_seconds(args, tmp))
                existing.append(first_step_seconds(args, tmp))
        rows.append(f"| command -> first training step, {label}, new store | "
                    f"{statistics.median(fresh):.2f} |")
        rows.append(f"| command -> first training step, {label}, existing store | "
                    f"{statistics.median(existing):.2f} |")
    for label, code in {"python -c pass": "pass", "import torch": "import torch",
                        "import mlflow": "import mlflow",
                        "import lightning.pytorch": "import lightning.pytorch",
                        "import torchvision": "import torchvision",
                        "import torchmetrics": "import torchmetrics",
                        "import torch, torch._dynamo (Lightning's Trainer needs both)":
                            "import torch, torch._dynamo",
                        "import torch, torch._dynamo, mlflow (the floor of any run)":
                            "import torch, torch._dynamo, mlflow",
                        "import lightning.pytorch, mlflow": "import lightning.pytorch, mlflow",
                        }.items():
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([PY, "-c", code], check=True)
            seconds.append(time.perf_counter() - start)
        rows.append(f"| {label} (whole process) | {statistics.median(seconds):.2f} |")
    start = time.perf_counter()
    subprocess.run([PY, "-m", "nnlab", "--help"], check=True, capture_output=True, cwd=REPO)
    rows.append(f"| python -m nnlab --help | {time.perf_counter() - start:.2f} |")
    return [f"### Start-up (median of {repeats}; target <= 5 s to the first step)", "",
            "| what | seconds |", "|---|---|", *rows]


PEAK_RSS = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, capture_output=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_mib(command: list[str], cwd: str) -> float:
    """Peak resident memory (MiB) of one command, run as the only child of a fresh process."""
    out = subprocess.run([PY, "-c", PEAK_RSS, *command], cwd=cwd, check=True,
                         capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return int(out.stdout.strip()) / 1024


def memory() -> list[str]:
    """Peak RSS of the default job (digits, LeNet-5, 10 epochs) against the import floor."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, command in {
            "import torch, lightning.pytorch, mlflow (floor)":
                [PY, "-c", "import torch, lightning.pytorch, mlflow"],
            "python -m nnlab (default job, instruments on)": [PY, "-m", "nnlab", *QUIET],
            "python -m nnlab instruments.enabled=false": [PY, "-m", "nnlab", *QUIET,
                                                          "instruments.enabled=false"],
        }.items():
            rows.append(f"| {label} | {peak_mib(command, tmp):.0f} |")
    return ["### Peak memory (resident set, MiB)", "", "| what | MiB |", "|---|---|", *rows]


def median(runs: list[dict], key: str) -> float:
    """The median of one figure over repeated nnlab_run results."""
    return statistics.median(r[key] for r in runs)


def sweep(repeats: int, epochs: int = 10) -> list[str]:
    args = ["-m", "seed=0,1,2,3,4,5,6,7", f"trainer.max_epochs={epochs}", *instruments_off()]
    seq, par = [], []
    for _ in range(repeats):
        seq.append(nnlab_run(args))
        par.append(nnlab_run([*args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]))
    s, p, js, jp = (median(seq, "wall_s"), median(par, "wall_s"), median(seq, "span_s"),
                    median(par, "span_s"))
    return [f"### Sweep: 8 jobs (digits, LeNet-5, {epochs} epochs each; median of {repeats})", "",
            "| launcher | wall s | jobs span s |", "|---|---|---|",
            f"| basic (one after another) | {s:.1f} | {js:.1f} |",
            f"| joblib, n_jobs=2 | {p:.1f} | {jp:.1f} |", "",
            f"- **speed-up** joblib/basic, wall clock: **{s / p:.2f}x** (target >= 1.6x, 2 cores)",
            f"- speed-up of the jobs alone (first run's start to last run's end in MLflow, leaving "
            f"out the process start-up each launcher pays once): {js / jp:.2f}x"]


def ddp(root: str, batches: int, devices: int = 2) -> list[str]:
    """One LeNet-5 MNIST epoch (the second: warm) on 1 process vs `devices` DDP processes."""
    base = ["dataset=mnist", f"dataset.root={root}", "trainer.max_epochs=2",
            f"trainer.limit_train_batches={batches}", "trainer.limit_val_batches=20",
            "trainer.limit_test_batches=20", *instruments_off()]
    rows, seconds = [], {}
    for n in (1, devices):
        found = nnlab_run([*base, "accelerator=cpu", f"accelerator.devices={n}"])
        seconds[n] = found["time/epoch_s"][-1]
        rows.append(f"| {n} | {seconds[n]:.2f} | {found['wall_s']:.1f} | "
                    f"{found['test/acc'][-1]:.4f} |")
    import torch

    gpus = torch.cuda.device_count()
    return [f"### DDP on the CPU (gloo): LeNet-5, MNIST, {batches} global batches of 64", "",
            "| processes | epoch s | whole command s | test/acc |", "|---|---|---|---|", *rows,
            "", f"- {devices} processes / 1 process, epoch time: "
            f"**{seconds[devices] / seconds[1]:.2f}x** on {os.cpu_count()} cores, "
            f"{gpus} CUDA devices; load average {os.getloadavg()[0]:.1f} at the end. Each rank "
            "computes half of each batch, but one process already uses every core (intra-op "
            "threads), so on a CPU DDP adds a gradient all-reduce per step and a second "
            "process's overhead; expect no speed-up here, and distrust figures taken under load."]


def gpu(root: str, epochs: int) -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return ["### GPU", "", "- skipped: no CUDA device here."]
    name = torch.cuda.get_device_name(0)
    base = ["dataset=mnist", f"dataset.root={root}", "accelerator=gpu", *GPU_OPT,
            f"trainer.max_epochs={epochs}", *instruments_off()]
    rows = []
    for label, extra in {"nnlab, in-memory GPU data": ["dataset.in_memory=true"],
                         "nnlab, DataLoader": ["dataset.in_memory=false"]}.items():
        got = nnlab_run([*base, *extra])
        steady = statistics.median(got["time/epoch_s"][1:] or got["time/epoch_s"])
        rows.append((label, got["time/epoch_s"][0], steady, got["test/acc"][-1]))
    plain = plain_subprocess(root, epochs, 0, "cuda", lr=0.001, adam=True)
    rows.append(("plain PyTorch loop, GPU tensors", plain["epoch_s"][0],
                 statistics.median(plain["epoch_s"][1:] or plain["epoch_s"]), plain["test_acc"]))
    lines = [f"### GPU: {name} (LeNet-5, MNIST, Adam 1e-3, batch 64, {epochs} epochs)", "",
             "| path | first epoch s | steady epoch s | test acc |", "|---|---|---|---|"]
    lines += [f"| {a} | {b:.2f} | {c:.3f} | {d:.4f} |" for a, b, c, d in rows]
    lines += ["", "- target: <= 0.5 s per epoch on an H100 (in-memory path), test acc >= 0.990"]
    if (REPO / "bench" / "data_path.py").exists():
        sys.path.insert(0, str(REPO / "bench"))
        import data_path

        with tempfile.TemporaryDirectory() as tmp:
            lines += ["", "bench/data_path.py (training epochs only, no validation):", "",
                      data_path.main([root, str(Path(tmp) / "r.md"), "--epochs", "3"]).strip()]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="overhead,startup,memory,ddp,sweep,gpu")
    parser.add_argument("--data", default=os.environ.get("NNLAB_DATA",
                                                         str(REPO.parent / "shared" / "data")))
    parser.add_argument("--batches", type=int, default=200,
                        help="training batches per CPU epoch (0: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu-epochs", type=int, default=GPU_EPOCHS)
    parser.add_argument("--out", default=str(REPO / "bench" / "results.md"))
    args = parser.parse_args(argv)
    root = str(Path(args.data).resolve())
    only = set(args.only.split(","))
    import torch

    load = os.getloadavg()[0]
    lines = [f"## Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
             f"- machine: {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads; load average at start {load:.1f}", ""]
    sections = {"overhead": lambda: overhead(root, args.batches, args.repeats),
                "startup": lambda: startup(root, args.repeats),
                "memory": memory,
                "ddp": lambda: ddp(root, args.batches),
                "sweep": lambda: sweep(max(1, args.repeats - 1)),
                "gpu": lambda: gpu(root, args.gpu_epochs)}
    for name, section in sections.items():
        if name in only:
            part = section()
            print("\n".join(part), "\n", flush=True)
            lines += [*part, ""]
    lines.append(f"- load average at end {os.getloadavg()[0]:.1f}")
    out = Path(args.out)
    with out.open("a") as handle:
        handle.write("\n".join(lines) + "\n\n")
    print(f"appended to {out}")


if __name__ == "__main__":
    main()
