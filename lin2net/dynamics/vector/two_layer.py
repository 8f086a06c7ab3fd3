"""What the two data families (``vector``: f = bᵀAx, ``relu``: f = Σ_j b_j relu(a_jᵀx)) share.

Both are two-layer networks of width d on m inputs: θ (n, D) holds the first
layer's d rows of m weights (row-major) and then the output weights b, D = dm + d.
Both fit the square loss L = (1/2N) Σ_i r_i², r_i = f(x_i) − y_i, on one data set
X (N, m), y (N,), or on each trajectory's mini-batch of it; both conserve, under
gradient flow, each neuron's ‖a_j‖² − b_j², whose sum of magnitudes is the
imbalance Q; and both report the top eigenvalue of their (symmetric) Hessian.
"""

from __future__ import annotations

import math

import numpy as np

from lin2net.dynamics.family import FloatArray, IntArray
from lin2net.dynamics.vector.flow import FlowTolerances


def data_arrays(inputs: int, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(X (N, m), y (N,)) as contiguous float64; ValueError unless they have the same N ≥ 1 rows."""
    x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1, inputs)
    y = np.ascontiguousarray(y, dtype=np.float64).reshape(-1)
    if x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ValueError(f"data: X has {x.shape[0]} rows, y has {y.shape[0]} labels")
    return x, y


def split(theta: FloatArray, width: int, inputs: int) -> tuple[FloatArray, FloatArray]:
    """(first layer (n, d, m), b (n, d)) as views of θ (n, D)."""
    return theta[:, : width * inputs].reshape(-1, width, inputs), theta[:, width * inputs :]


def batch_rows(x: FloatArray, y: FloatArray, batch: IntArray | None) -> tuple[FloatArray, FloatArray]:
    """(X rows (1 or n, B, m), y rows (1 or n, B)) of the full set or of each trajectory's batch."""
    if batch is None:
        return x[None], y[None]
    rows = np.sort(np.asarray(batch), axis=1)
    return x[rows], y[rows]


def square_loss(r: FloatArray) -> FloatArray:
    """L = (1/2N) Σ_i r_i² per row of the residuals r (n, N)."""
    loss: FloatArray = np.sum(r * r, axis=1) / (2 * r.shape[1])
    return loss


def symmetric(hess: FloatArray) -> FloatArray:
    """½(H + Hᵀ) of each (D, D) matrix: exactly symmetric, whatever the order its sums ran in."""
    out: FloatArray = 0.5 * (hess + np.transpose(hess, (0, 2, 1)))
    return out


def top_eigenvalue(hess: FloatArray) -> FloatArray:
    """The top eigenvalue of each symmetric (D, D) matrix, shape (n,) (eigvalsh)."""
    top: FloatArray = np.asarray(np.linalg.eigvalsh(hess)[:, -1], dtype=np.float64)
    return top


def imbalance(first: FloatArray, b: FloatArray) -> FloatArray:
    """Q = Σ_j |‖a_j‖² − b_j²| from the first layer's rows a_j (n, d, m) and b (n, d)."""
    return neuron_imbalance(np.sqrt(np.sum(first * first, axis=2)), np.abs(b))


def neuron_imbalance(row_norms: FloatArray, out_abs: FloatArray) -> FloatArray:
    """Σ_j |(‖a_j‖ − |b_j|)(‖a_j‖ + |b_j|)| per row of (n, d) arrays: Σ_j |‖a_j‖² − b_j²|
    without cancellation (at m = 1 the same bits as closed_forms.imbalance)."""
    q: FloatArray = np.abs((row_norms - out_abs) * (row_norms + out_abs)).sum(axis=1)
    return q


class TwoLayerModel:
    """What ``VectorModel`` and ``ReluModel`` share as models: width d, m inputs, the
    data (X (N, m), y (N,)), the layout of θ, ε = √(2L), the sharpness and Q. A
    subclass gives the loss, its derivatives and the gradient-flow sharpness."""

    def __init__(self, width: int, inputs: int, x: FloatArray, y: FloatArray, tolerances: FlowTolerances) -> None:
        self.width, self.inputs = int(width), int(inputs)
        self.x, self.y = data_arrays(self.inputs, x, y)
        self.n = int(self.x.shape[0])
        self.label_scale = math.sqrt(float(np.mean(self.y * self.y)))
        self.tolerances = tolerances

    @property
    def size(self) -> int:
        return self.width * self.inputs + self.width

    def split(self, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(first layer (n, d, m): the rows a_j, b (n, d)) as views of θ (n, D)."""
        return split(theta, self.width, self.inputs)

    def _data(self, batch: IntArray | None) -> tuple[FloatArray, FloatArray]:
        """(X rows (1 or n, B, m), y rows (1 or n, B)) of the full set or of each trajectory's batch."""
        return batch_rows(self.x, self.y, batch)

    def loss(self, theta: FloatArray) -> FloatArray:
        raise NotImplementedError

    def hessian(self, theta: FloatArray) -> FloatArray:
        raise NotImplementedError

    def residual(self, theta: FloatArray) -> FloatArray:
        """√(2L), the ε of the stop rule (L includes any loss floor of the data)."""
        eps: FloatArray = np.sqrt(2.0 * self.loss(theta))
        return eps

    def sharpness(self, theta: FloatArray) -> FloatArray:
        """The Hessian's top eigenvalue, shape (n,) (eigvalsh)."""
        return top_eigenvalue(self.hessian(theta))

    def imbalance(self, theta: FloatArray) -> FloatArray:
        """Q = Σ_j |‖a_j‖² − b_j²| as Σ_j |(‖a_j‖ − |b_j|)(‖a_j‖ + |b_j|)| (no cancellation)."""
        return imbalance(*self.split(theta))
