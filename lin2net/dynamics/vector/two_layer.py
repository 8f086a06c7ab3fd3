"""What the two data families (``vector``: f = bᵀAx, ``relu``: f = Σ_j b_j relu(a_jᵀx)) share.

Both are two-layer networks of width d on m inputs: θ (n, D) holds the first
layer's d rows of m weights (row-major) and then the output weights b, D = dm + d.
Both fit the square loss L = (1/2N) Σ_i r_i², r_i = f(x_i) − y_i, on one data set
X (N, m), y (N,), or on each trajectory's mini-batch of it; both conserve, under
gradient flow, each neuron's ‖a_j‖² − b_j², whose sum of magnitudes is the
imbalance Q; and both report the top eigenvalue of their (symmetric) Hessian.
"""

from __future__ import annotations

import numpy as np

from lin2net.dynamics.family import FloatArray, IntArray


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
