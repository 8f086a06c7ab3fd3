"""Model families: what a parameterized model gives the generic parameter-vector dynamics.

A *model family* (``model: {family: ...}`` in a config: ``deep``, ``vector``,
``relu``; ``shallow`` is today's reduced-map model and is not one of these) is a
square loss L(θ) on a flat parameter vector θ ∈ R^D. One :class:`Model` holds
one grid point's static settings (width, depth or inputs, target Φ, data set)
and works on a batch of trajectories at once: θ has shape (n, D), every result
has a leading axis n. Everything is pure NumPy on those arrays, with hand-derived
gradients and Hessian-vector products; the dynamics that steps θ (GD, SGD) is
written once over this protocol, not once per family.

A family's folder (``lin2net/dynamics/<family>/``) holds its model (a class
satisfying :class:`Model`), how θ is laid out (explicit starts), and its
registry entries.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class Model(Protocol):
    """One grid point's model, batched over trajectories (θ of shape (n, D))."""

    @property
    def size(self) -> int:
        """D, the number of parameters."""

    def loss(self, theta: FloatArray) -> FloatArray:
        """L(θ) per trajectory, shape (n,)."""

    def residual(self, theta: FloatArray) -> FloatArray:
        """ε per trajectory, shape (n,), with ½ε² = L(θ): the output error f(θ) − Φ
        for ``deep`` (signed, as the shallow model's ε), √(2L) for data families.
        The one stop rule watches it (:func:`lin2net.dynamics.protocol.stop_status`)."""

    def gradient(self, theta: FloatArray, batch: IntArray | None = None) -> FloatArray:
        """∇L(θ), shape (n, D). ``batch`` (shape (n, B), data families only): the
        rows of the data set each trajectory's mini-batch loss averages over."""

    def hvp(self, theta: FloatArray, v: FloatArray) -> FloatArray:
        """The Hessian-vector product ∇²L(θ)·v, shape (n, D)."""

    def hessian(self, theta: FloatArray) -> FloatArray:
        """∇²L(θ), shape (n, D, D) (for small D; sharpness uses eigvalsh on it)."""

    def imbalance(self, theta: FloatArray) -> FloatArray:
        """Q(θ) ≥ 0, shape (n,): the documented norm of the quantities gradient flow
        conserves (deep: W_{k+1}ᵀW_{k+1} − W_k W_kᵀ; vector: AAᵀ − bbᵀ; relu:
        ‖a_j‖² − b_j²), chosen so that it equals the shallow model's Q where the
        family reduces to it."""

    def gradient_flow_sharpness(self, theta: FloatArray) -> FloatArray:
        """The top Hessian eigenvalue at the minimizer gradient flow reaches from θ, shape (n,)."""
