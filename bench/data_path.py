"""Time LeNet-5 training epochs on MNIST with the in-memory data path vs a torch DataLoader.

    python bench/data_path.py [ROOT] RESULTS.md [--epochs 3] [--batch-size 64] [--limit-batches N]

ROOT (default $NNLAB_DATA) holds MNIST/raw with the IDX files or only their .gz files. Runs on
CUDA when present, else the CPU; prints a Markdown table and appends it to RESULTS.md. The first
epoch is reported apart (warm-up: CUDA kernels, caches); "epoch s" is the median of the others.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from nnlab.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def time_epochs(root: str, in_memory: bool, args: argparse.Namespace) -> list[float]:
    """Seconds of each training epoch (no validation) for one data path."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback

    from nnlab.engine.build import build

    class Timer(Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._sync()
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self._sync()
            self.seconds.append(time.perf_counter() - self.start)

        @staticmethod
        def _sync() -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()

    cfg = compose(["model=lenet5", "dataset=mnist", f"dataset.root={root}",
                   "dataset.download=false", f"dataset.in_memory={str(in_memory).lower()}",
                   f"dataset.num_workers={0 if in_memory else args.workers}",
                   f"batch_size={args.batch_size}", "seed=0"])
    pl.seed_everything(0, verbose=False)
    datamodule, module = build(cfg)
    timer = Timer()
    trainer = pl.Trainer(
        accelerator="auto", devices=1, max_epochs=args.epochs, logger=False,
        limit_train_batches=args.limit_batches or 1.0, limit_val_batches=0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.seconds


def steady(seconds: list[float]) -> float:
    return statistics.median(seconds[1:] or seconds)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", metavar="[ROOT] RESULTS.md")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit-batches", type=int, default=0, help="0: whole epochs")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    args = parser.parse_args(argv)
    if len(args.paths) > 2:
        parser.error("give at most ROOT and RESULTS.md")
    root = args.paths[0] if len(args.paths) == 2 else os.environ.get("NNLAB_DATA")
    if not root:
        parser.error("give the data ROOT or set $NNLAB_DATA")
    out = Path(args.paths[-1])

    fast = time_epochs(root, True, args)
    slow = time_epochs(root, False, args)
    batches = f"{args.limit_batches} batches" if args.limit_batches else "full (54,000 samples)"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = ("| date | device | epoch | batch | in_memory=true s/epoch (first) | "
              "in_memory=false s/epoch (first) | speed-up |\n|---|---|---|---|---|---|---|\n")
    row = (f"| {when} | {device_name()} | {batches} | {args.batch_size} | "
           f"{steady(fast):.3f} ({fast[0]:.3f}) | {steady(slow):.3f} ({slow[0]:.3f}) | "
           f"{steady(slow) / steady(fast):.2f}x |\n")
    table = header + row
    print(f"LeNet-5 on MNIST, {args.epochs} epochs each, torch {torch.__version__}")
    print(table, end="")
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists() or not out.read_text().strip()
    with out.open("a") as f:
        f.write(table if new else row)
    return table


if __name__ == "__main__":
    main()
