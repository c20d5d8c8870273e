"""A user's own activation: any nn.Module class. nnlab takes its derivative from autograd."""

import torch
from torch import nn


class Swish(nn.Module):
    """x * sigmoid(beta * x) (Ramachandran et al. 2017); beta = 1 is SiLU."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)
