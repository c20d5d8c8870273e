"""`python -m nnlab.plot activations [--out FILE]`: each activation and its derivative, by autograd.

One panel per activation in nnlab.activations.ACTIVATIONS (elementwise ones), as the courses
draw them: f(x) and f'(x) on [-5, 5], the derivative computed by torch.autograd.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from nnlab.activations import ACTIVATIONS
from nnlab.figures import activation_panels, png_bytes

NOT_ELEMENTWISE = ("softmax",)


def activation_curves(lo: float = -5.0, hi: float = 5.0, steps: int = 401
                      ) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """name -> (x, f(x), f'(x)) with f' from autograd."""
    curves = {}
    for name, spec in ACTIVATIONS.items():
        if name in NOT_ELEMENTWISE:
            continue
        x = torch.linspace(lo, hi, steps, dtype=torch.float64, requires_grad=True)
        y = spec.module()(x)
        (grad,) = torch.autograd.grad(y.sum(), x)
        curves[name] = (x.detach(), y.detach(), grad)
    return curves


def plot_activations(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png_bytes(activation_panels(activation_curves()), dpi=100))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnlab.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="figure", required=True)
    acts = sub.add_parser("activations", help="each activation and its autograd derivative")
    acts.add_argument("--out", "-o", type=Path, default=Path("activations.png"),
                      help="PNG file to write (default: activations.png)")
    args = parser.parse_args(argv)
    print(f"nnlab.plot: wrote {plot_activations(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
