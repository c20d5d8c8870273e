"""The courses' 2-2-1 sigmoid network from scratch in NumPy, with backprop written by hand.

h = sigmoid(W1 x + b1) (2 units), p = sigmoid(W2 h + b2), loss = (y - p)^2, plain SGD on one
sample at a time, as in "Machine learning for beginners: an introduction to neural networks".
"""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class NumpyNetwork:
    """2 inputs -> 2 sigmoid hidden units -> 1 sigmoid output; every weight and bias = `value`."""

    def __init__(self, value: float = 0.1, n_in: int = 2, n_hidden: int = 2) -> None:
        self.w1 = np.full((n_hidden, n_in), value)
        self.b1 = np.full(n_hidden, value)
        self.w2 = np.full((1, n_hidden), value)
        self.b2 = np.full(1, value)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """p for each row of x."""
        return sigmoid(sigmoid(x @ self.w1.T + self.b1) @ self.w2.T + self.b2)[:, 0]

    def step(self, x: np.ndarray, y: float, lr: float) -> float:
        """One SGD step on one sample; returns the loss before the update."""
        h = sigmoid(self.w1 @ x + self.b1)
        p = sigmoid(self.w2 @ h + self.b2)[0]
        d_p = -2.0 * (y - p)  # dL/dp
        d_z2 = d_p * p * (1 - p)  # through the output sigmoid
        d_h = d_z2 * self.w2[0]  # before w2 changes
        d_z1 = d_h * h * (1 - h)  # through the hidden sigmoids
        self.w2 -= lr * d_z2 * h[None, :]
        self.b2 -= lr * d_z2
        self.w1 -= lr * np.outer(d_z1, x)
        self.b1 -= lr * d_z1
        return float((y - p) ** 2)

    def train(self, x: np.ndarray, y: np.ndarray, lr: float = 0.1,
              epochs: int = 1000) -> tuple[list[float], list[float]]:
        """Per epoch: (mean loss over the epoch's steps, mean loss over x after the epoch)."""
        running, after = [], []
        for _ in range(epochs):
            losses = [self.step(xi, float(yi), lr) for xi, yi in zip(x, y, strict=True)]
            running.append(float(np.mean(losses)))
            after.append(float(np.mean((y - self.predict(x)) ** 2)))
        return running, after
