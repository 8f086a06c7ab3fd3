"""The ``vector`` family: f(x) = bᵀAx, A ∈ R^{d×m}, b ∈ R^d, on a data set (X, y).

θ = (A.ravel() row-major, b), D = dm + d; at m = 1, θ = (A[:, 0], b) = (a, b).
Everything goes through the end-to-end vector w = Aᵀb ∈ R^m (w_k = Σ_j A_jk b_j):

    r_i = wᵀx_i − y_i,   L = (1/2n) Σ_i r_i²,   g = ∇_w L = (1/n) Σ_i r_i x_i,
    ∇_A L = b gᵀ,   ∇_b L = A g.

With Σ = XᵀX/n and direction v = (V, u), δw = Vᵀb + Aᵀu, the Hessian-vector product is

    H v = (b (Σ δw)ᵀ + u gᵀ,  A Σ δw + V g),

i.e. H = JᵀΣJ + G with J = ∂w/∂θ (J_{k,(A_jl)} = δ_kl b_j, J_{k,b_j} = A_jk) and
G pairing A_jk with b_j by g_k. A mini-batch (``batch``: rows of the data set) replaces
the means over all n points by means over its rows, summed in sorted row order (so
a batch holding every row once gives the full gradient bit for bit).

Imbalance: gradient flow conserves C = AAᵀ − bbᵀ (d×d). Q is the ℓ1 norm of its
diagonal, Q = Σ_j |‖A_j‖² − b_j²| (A_j the j-th row): at m = 1 it is the shallow
Q = Σ_j |a_j² − b_j²| of lin2net.theory.closed_forms.imbalance (bit for bit: the
same products), and it is exactly the relu family's per-neuron Q on the same θ.
(Like the shallow Q it is not invariant under θ → (UA, Ub) for orthogonal U; GD
on whitened data at m = 1 multiplies all of C by 1 − η²ε², so every norm of C
gives the same q_ratio there.)

Gradient-flow sharpness: closed forms where the limit is fixed by C (the least-squares
w* = Σ⁻¹Xᵀy/n is reached): at m = 1 the flow is the shallow flow with target w* run
s = Σ times faster (λ_GF = s·√(4w*² + S0P0)); at d = 1 the limit has b² from
b⁴ + Cb² = ‖w*‖² and a = w*/b, and H = JᵀΣJ's top eigenvalue is that of
Σ^{1/2}(b²I + aaᵀ)Σ^{1/2}. Elsewhere the flow is integrated to rest
(:mod:`lin2net.dynamics.vector.flow`) and the Hessian's top eigenvalue taken there.
"""

from __future__ import annotations

import numpy as np

from lin2net.dynamics.family import FloatArray, IntArray
from lin2net.dynamics.vector import two_layer
from lin2net.dynamics.vector.data import least_squares
from lin2net.dynamics.vector.flow import TOLERANCES, FlowTolerances, flow_to_rest
from lin2net.theory.closed_forms import gradient_flow_sharpness as shallow_gradient_flow_sharpness


class VectorModel(two_layer.TwoLayerModel):
    """f(x) = bᵀAx of width d and m inputs on the data (X (n, m), y (n,)); see the module doc."""

    def __init__(
        self, width: int, inputs: int, x: FloatArray, y: FloatArray, tolerances: FlowTolerances = TOLERANCES
    ) -> None:
        super().__init__(width, inputs, x, y, tolerances)
        self.gram: FloatArray = np.sum(self.x[:, :, None] * self.x[:, None, :], axis=0) / self.n
        self.moment: FloatArray = np.sum(self.x * self.y[:, None], axis=0) / self.n
        self.target, self.loss_floor = least_squares(self.x, self.y)

    def end_to_end(self, theta: FloatArray) -> FloatArray:
        """w = Aᵀb, shape (n, m)."""
        a, b = self.split(theta)
        w: FloatArray = np.sum(a * b[:, :, None], axis=1)
        return w

    @staticmethod
    def _residuals(w: FloatArray, x: FloatArray, y: FloatArray) -> FloatArray:
        r: FloatArray = np.sum(x * w[:, None, :], axis=2) - y
        return r

    def residuals(self, theta: FloatArray) -> FloatArray:
        """r_i = f(x_i) − y_i, shape (n, N data)."""
        x, y = self._data(None)
        return self._residuals(self.end_to_end(theta), x, y)

    def loss(self, theta: FloatArray) -> FloatArray:
        r = self.residuals(theta)
        return two_layer.square_loss(r)

    def output_gradient(self, theta: FloatArray, batch: IntArray | None = None) -> FloatArray:
        """g = ∇_w L = mean_i r_i x_i over the data (or each trajectory's batch), shape (n, m)."""
        x, y = self._data(batch)
        r = self._residuals(self.end_to_end(theta), x, y)
        g: FloatArray = np.sum(x * r[:, :, None], axis=1) / x.shape[1]
        return g

    def gradient(self, theta: FloatArray, batch: IntArray | None = None) -> FloatArray:
        a, b = self.split(theta)
        g = self.output_gradient(theta, batch)
        return _chain(a, b, g)

    def _gram_times(self, dw: FloatArray) -> FloatArray:
        """Σ δw = mean_i x_i (x_iᵀ δw), over the data rows, shape (n, m)."""
        projection = np.sum(self.x[None] * dw[:, None, :], axis=2)
        out: FloatArray = np.sum(self.x[None] * projection[:, :, None], axis=1) / self.n
        return out

    def hvp(self, theta: FloatArray, v: FloatArray) -> FloatArray:
        a, b = self.split(theta)
        va, vb = self.split(v)
        g = self.output_gradient(theta)
        dw = np.sum(va * b[:, :, None], axis=1) + np.sum(a * vb[:, :, None], axis=1)
        sdw = self._gram_times(dw)
        out_a = b[:, :, None] * sdw[:, None, :] + vb[:, :, None] * g[:, None, :]
        out_b = np.sum(a * sdw[:, None, :], axis=2) + np.sum(va * g[:, None, :], axis=2)
        product: FloatArray = np.concatenate([out_a.reshape(theta.shape[0], -1), out_b], axis=1)
        return product

    def jacobian(self, theta: FloatArray) -> FloatArray:
        """J = ∂w/∂θ, shape (n, m, D)."""
        d, m = self.width, self.inputs
        a, b = self.split(theta)
        count = theta.shape[0]
        jac = np.zeros((count, m, self.size), dtype=theta.dtype)
        eye = np.eye(m)
        jac[:, :, : d * m] = (eye[None, :, None, :] * b[:, None, :, None]).reshape(count, m, d * m)
        jac[:, :, d * m :] = np.transpose(a, (0, 2, 1))
        return jac

    def hessian(self, theta: FloatArray) -> FloatArray:
        d, m = self.width, self.inputs
        jac = self.jacobian(theta)
        hess: FloatArray = np.swapaxes(jac, 1, 2) @ (self.gram @ jac)  # JᵀΣJ by batched BLAS (einsum: ~40× slower)
        g = self.output_gradient(theta)
        rows = np.arange(d * m)
        columns = d * m + rows // m
        hess[:, rows, columns] += g[:, rows % m]
        hess[:, columns, rows] += g[:, rows % m]
        return two_layer.symmetric(hess)

    def conserved(self, theta: FloatArray) -> FloatArray:
        """C = AAᵀ − bbᵀ, shape (n, d, d): what gradient flow conserves."""
        a, b = self.split(theta)
        c: FloatArray = np.einsum("njk,nlk->njl", a, a) - b[:, :, None] * b[:, None, :]
        return c

    def gradient_flow_sharpness(self, theta: FloatArray) -> FloatArray:
        theta = np.asarray(theta, dtype=np.float64)
        if self.inputs == 1 and self.gram[0, 0] > 0:
            return self._scalar_input_flow_sharpness(theta)
        if self.width == 1 and _positive_definite(self.gram) and np.any(self.target != 0):
            return self._single_unit_flow_sharpness(theta)
        return self.integrated_flow_sharpness(theta)

    def integrated_flow_sharpness(self, theta: FloatArray) -> FloatArray:
        """The Hessian's top eigenvalue where the integrated flow comes to rest (NaN if it does not)."""
        scale = np.sum(theta * theta, axis=1) + self.label_scale
        end, at_rest = flow_to_rest(self._flow_gradient, self.sharpness, self.loss, theta, scale, self.tolerances)
        top = np.full(theta.shape[0], np.nan)
        if np.any(at_rest):
            top[at_rest] = self.sharpness(end[at_rest])
        return top

    def _flow_gradient(self, theta: FloatArray) -> FloatArray:
        """∇L through the moments (g = Σw − Xᵀy/n): the same gradient, O(m²) per trajectory."""
        a, b = self.split(theta)
        w = self.end_to_end(theta)
        g = w @ self.gram - self.moment[None, :]
        return _chain(a, b, g)

    def _scalar_input_flow_sharpness(self, theta: FloatArray) -> FloatArray:
        """m = 1: L = ½s(a·b − w*)² + floor, the shallow flow with target w* in time s·t."""
        a, b = self.split(theta)
        a = a[:, :, 0]
        s = float(self.gram[0, 0])
        target = float(self.target[0])
        total, difference = a + b, a - b
        s0 = np.sum(total * total, axis=1)
        p0 = np.sum(difference * difference, axis=1)
        eps0 = np.sum(a * b, axis=1) - target
        lam0 = np.sum(a * a, axis=1) + np.sum(b * b, axis=1)
        top: FloatArray = s * shallow_gradient_flow_sharpness(eps0, lam0, target, s0=s0, p0=p0)
        return top

    def _single_unit_flow_sharpness(self, theta: FloatArray) -> FloatArray:
        """d = 1: the flow keeps C = ‖a‖² − b² and ends at ab = w*, so b² solves
        b⁴ + Cb² − ‖w*‖² = 0 and a aᵀ = w*w*ᵀ/b²; the top eigenvalue of
        Σ^{1/2}(b²I + aaᵀ)Σ^{1/2} (the nonzero spectrum of JᵀΣJ)."""
        a, b = self.split(theta)
        c = np.sum(a[:, 0, :] ** 2, axis=1) - b[:, 0] ** 2
        target = self.target
        t2 = float(np.sum(target * target))
        root = np.sqrt(c * c + 4.0 * t2)
        b2 = np.where(c >= 0, 2.0 * t2 / np.maximum(c + root, np.finfo(np.float64).tiny), 0.5 * (root - c))
        cholesky = np.linalg.cholesky(self.gram)
        m = self.inputs
        kernel = b2[:, None, None] * np.eye(m)[None] + np.outer(target, target)[None] / b2[:, None, None]
        sandwich = np.einsum("kl,nkp,pq->nlq", cholesky, kernel, cholesky)
        top: FloatArray = np.linalg.eigvalsh(sandwich)[:, -1]
        return top


def _chain(a: FloatArray, b: FloatArray, g: FloatArray) -> FloatArray:
    """∇L = (∇_A L = b gᵀ, ∇_b L = A g) as θ's layout, from g = ∇_w L (n, m)."""
    grad_a = b[:, :, None] * g[:, None, :]
    grad_b = np.sum(a * g[:, None, :], axis=2)
    gradient: FloatArray = np.concatenate([grad_a.reshape(a.shape[0], -1), grad_b], axis=1)
    return gradient


def _positive_definite(matrix: FloatArray) -> bool:
    return bool(np.linalg.eigvalsh(matrix)[0] > 1e-12 * max(float(np.trace(matrix)), np.finfo(np.float64).tiny))
