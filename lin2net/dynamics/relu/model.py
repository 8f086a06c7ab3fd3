"""The ``relu`` family: f(x) = Σ_j b_j relu(a_jᵀx) over d neurons a_j ∈ R^m, on a data set (X, y).

θ = (a_1, …, a_d, b) (the d×m matrix of rows a_j, row-major, then b ∈ R^d), the
vector family's layout. With pre-activations z_ij = a_jᵀx_i, h_ij = relu(z_ij),
s_ij = relu'(z_ij) and r_i = f(x_i) − y_i:

    L = (1/2n) Σ_i r_i²,   ∇_{a_j} L = (1/n) Σ_i r_i b_j s_ij x_i,   ∇_{b_j} L = (1/n) Σ_i r_i h_ij.

relu'(0) = 0 (a neuron exactly at its kink counts as off: s = 1[z > 0]), and
relu'' = 0 off the kinks, so the Hessian is the piecewise one of the current
activation pattern: with φ_i = ∇_θ f(x_i) (φ_i[a_j] = b_j s_ij x_i, φ_i[b_j] = h_ij),

    H = (1/n) Σ_i φ_i φ_iᵀ + G,   G pairs a_j with b_j by G_j = (1/n) Σ_i r_i s_ij x_i,

and H v = (1/n) Σ_i φ_i (φ_iᵀ v) + G v. Where every z_ij > 0 this is the vector
family's f = bᵀAx with A = (a_1; …; a_d): same loss, gradient and Hessian. The code
accepts complex θ (the activation pattern read from Re z) so complex-step
differences test it.

Imbalance: gradient flow conserves each ‖a_j‖² − b_j² (since relu'(z)z = relu(z),
d/dt ‖a_j‖² = d/dt b_j²). Q = Σ_j |‖a_j‖² − b_j²|, the ℓ1 norm of that vector:
exactly the vector family's Q (the diagonal of AAᵀ − bbᵀ) on the same θ, hence at
m = 1 the shallow Q.

Gradient-flow sharpness: the flow integrated to rest (:mod:`lin2net.dynamics.vector.flow`),
then the top eigenvalue of the Hessian of the activation pattern there. This is
best effort: ReLU flows on finite data often run into a kink (a_jᵀx_i = 0) and
slide along it, or approach their limit sublinearly; within the step caps of
:data:`RELU_TOLERANCES` many do not come to rest, and their λ_GF is NaN. Where
every pre-activation stays positive the flow is the vector family's and is
integrated as accurately as there.
"""

from __future__ import annotations

import numpy as np

from lin2net.dynamics.family import FloatArray, IntArray
from lin2net.dynamics.vector import two_layer
from lin2net.dynamics.vector.flow import FlowTolerances, flow_to_rest

RELU_TOLERANCES = FlowTolerances(rk_steps=500, max_steps=2_000)
"""The flow's step caps for ReLU nets, tighter than the vector family's: the flow
often reaches a kink and slides along it (or approaches its limit sublinearly),
and each of its steps costs O(n·d·m) per trajectory; a trajectory not at rest
within them gets λ_GF = NaN (recorded, not an error)."""


class ReluModel(two_layer.TwoLayerModel):
    """f(x) = Σ_j b_j relu(a_jᵀx) of width d and m inputs on the data (X (n, m), y (n,)); see the module doc."""

    def __init__(
        self, width: int, inputs: int, x: FloatArray, y: FloatArray, tolerances: FlowTolerances = RELU_TOLERANCES
    ) -> None:
        super().__init__(width, inputs, x, y, tolerances)

    def _forward(
        self, theta: FloatArray, batch: IntArray | None = None
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """(x rows, s, h, r): inputs (1 or n, B, m), relu' and relu of z (n, B, d), residuals (n, B)."""
        a, b = self.split(theta)
        x, y = self._data(batch)
        z = np.sum(x[:, :, None, :] * a[:, None, :, :], axis=3)
        s = (z.real > 0).astype(np.float64)
        h = s * z
        r = np.sum(h * b[:, None, :], axis=2) - y
        return x, s, h, r

    def activations(self, theta: FloatArray) -> FloatArray:
        """The pre-activations z_ij = a_jᵀx_i, shape (n, N data, d)."""
        a, _ = self.split(theta)
        z: FloatArray = np.sum(self.x[None, :, None, :] * a[:, None, :, :], axis=3)
        return z

    def loss(self, theta: FloatArray) -> FloatArray:
        _, _, _, r = self._forward(theta)
        return two_layer.square_loss(r)

    def gradient(self, theta: FloatArray, batch: IntArray | None = None) -> FloatArray:
        _, b = self.split(theta)
        x, s, h, r = self._forward(theta, batch)
        count = x.shape[1]
        # G_j = mean_i r_i s_ij x_i, so ∇_{a_j} L = b_j G_j.
        weights = s * r[:, :, None]
        paired = np.sum(weights[:, :, :, None] * x[:, :, None, :], axis=1) / count
        grad_a = b[:, :, None] * paired
        grad_b = np.sum(h * r[:, :, None], axis=1) / count
        gradient: FloatArray = np.concatenate([grad_a.reshape(theta.shape[0], -1), grad_b], axis=1)
        return gradient

    def features(self, theta: FloatArray) -> FloatArray:
        """φ_i = ∇_θ f(x_i), shape (n, N data, D)."""
        x, s, h, _ = self._forward(theta)
        return self._features(theta, x, s, h)

    def _features(self, theta: FloatArray, x: FloatArray, s: FloatArray, h: FloatArray) -> FloatArray:
        """:meth:`features` from the forward pass' x, s, h (so a Hessian runs it once)."""
        _, b = self.split(theta)
        count, d, m = theta.shape[0], self.width, self.inputs
        features: FloatArray = np.empty((count, self.n, self.size), dtype=np.result_type(theta, x))
        # filled in place (no broadcast copy, no concatenate): φ_i[a_j] = b_j s_ij x_i, φ_i[b_j] = h_ij
        weighted = (b[:, None, :] * s)[:, :, :, None] * x[:, :, None, :]
        features[:, :, : d * m] = weighted.reshape(count, self.n, d * m)
        features[:, :, d * m :] = h
        return features

    def _pairing(self, s: FloatArray, r: FloatArray, x: FloatArray) -> FloatArray:
        """G_j = mean_i r_i s_ij x_i, shape (n, d, m)."""
        weights = s * r[:, :, None]
        paired: FloatArray = (np.swapaxes(weights, 1, 2) @ x) / self.n  # Σ_i over the data by BLAS
        return paired

    def hvp(self, theta: FloatArray, v: FloatArray) -> FloatArray:
        x, s, h, r = self._forward(theta)
        features = self._features(theta, x, s, h)
        va, vb = self.split(v)
        df = np.sum(features * v[:, None, :], axis=2)
        gauss_newton = np.sum(features * df[:, :, None], axis=1) / self.n
        paired = self._pairing(s, r, x)
        extra_a = paired * vb[:, :, None]
        extra_b = np.sum(paired * va, axis=2)
        product: FloatArray = gauss_newton + np.concatenate([extra_a.reshape(theta.shape[0], -1), extra_b], axis=1)
        return product

    def hessian(self, theta: FloatArray) -> FloatArray:
        d, m = self.width, self.inputs
        x, s, h, r = self._forward(theta)
        features = self._features(theta, x, s, h)
        hess: FloatArray = (np.swapaxes(features, 1, 2) @ features) / self.n  # batched BLAS (einsum: ~10× slower)
        paired = self._pairing(s, r, x).reshape(theta.shape[0], -1)
        rows = np.arange(d * m)
        columns = d * m + rows // m
        hess[:, rows, columns] += paired
        hess[:, columns, rows] += paired
        return two_layer.symmetric(hess)

    def conserved(self, theta: FloatArray) -> FloatArray:
        """‖a_j‖² − b_j², shape (n, d): what gradient flow conserves."""
        a, b = self.split(theta)
        c: FloatArray = np.sum(a * a, axis=2) - b * b
        return c

    def gradient_flow_sharpness(self, theta: FloatArray) -> FloatArray:
        theta = np.asarray(theta, dtype=np.float64)
        scale = np.sum(theta * theta, axis=1) + self.label_scale
        end, at_rest = flow_to_rest(self.gradient, self.sharpness, self.loss, theta, scale, self.tolerances)
        top = np.full(theta.shape[0], np.nan)
        if np.any(at_rest):
            top[at_rest] = self.sharpness(end[at_rest])
        return top
