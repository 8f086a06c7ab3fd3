"""The deep linear network f = W_N ⋯ W_1, L(θ) = ½(f − Φ)² (model family ``deep``).

Layers: W_1 ∈ R^{d×1}, W_k ∈ R^{d×d} for 1 < k < N, W_N ∈ R^{1×d}, so f is a
scalar. θ = concat(W_1.ravel(), …, W_N.ravel()) (row-major), D = 2d + (N − 2)d².
At N = 2, θ = (a, b) with a = W_1[:, 0], b = W_2[0, :]: the shallow model's
(a, b), f = a·b.

Derivatives, with the prefix products P_k = W_k ⋯ W_1 (a column, P_0 = 1) and
suffix products S_k = W_N ⋯ W_k (a row, S_{N+1} = 1), so f = S_{k+1} W_k P_{k−1}:

* gradient: ∂f/∂W_k = S_{k+1}ᵀ P_{k−1}ᵀ (an outer product) and ∇L = ε∇f, with
  the residual ε = f − Φ;
* Hessian: ∇²L = ∇f ∇fᵀ + ε ∇²f. f is linear in each layer, so ∇²f has zero
  diagonal blocks; for i < j, ∂²f/∂(W_i)_{ab} ∂(W_j)_{ce} = (S_{j+1})_c
  (W_{j−1} ⋯ W_{i+1})_{ea} (P_{i−1})_b (the middle product is I when j = i + 1);
* Hessian-vector product: ∇²L v = ∇f (∇f·v) + ε Ḋ∇f, where Ḋ∇f is the
  directional derivative of ∂f/∂W_k = S_{k+1}ᵀP_{k−1}ᵀ along v = (V_1, …, V_N),
  from the recursions Ṗ_k = V_k P_{k−1} + W_k Ṗ_{k−1}, Ṡ_k = Ṡ_{k+1} W_k + S_{k+1} V_k.
  It never forms the D × D matrix (O(N d²) per trajectory, as the gradient).

Every method is pure NumPy on a batch θ of shape (n, D) and works on complex θ
as well (only the imbalance and the gradient-flow sharpness need real input), so
the tests check gradient and HVP by complex-step differences.

Imbalance. Gradient flow conserves each C_k = W_{k+1}ᵀW_{k+1} − W_k W_kᵀ
(k = 1…N−1, a d×d matrix). Q is the sum over the hidden neurons of the absolute
value of the diagonal of these matrices:

    Q = Σ_{k=1}^{N−1} Σ_{i=1}^{d} | (C_k)_{ii} |,
    (C_k)_{ii} = ‖W_{k+1}[:, i]‖² − ‖W_k[i, :]‖²,

the per-neuron imbalance (outgoing minus incoming squared weight norm of neuron
i of hidden layer k, the quantity Du, Hu and Lee (2018) show is conserved for
homogeneous activations as well). At N = 2 it is Σ_i |b_i² − a_i²|, exactly the
shallow model's Q = Σ_i |a_i² − b_i²| of
:func:`lin2net.theory.closed_forms.imbalance`, and it is computed there as that
function computes it (|(a − b)(a + b)|), so the two agree bit for bit. Neither the
Frobenius norm of C_k (‖bbᵀ − aaᵀ‖_F ≠ Σ|a_i² − b_i²|) nor the trace
(‖W_{k+1}‖² − ‖W_k‖², which can vanish for unbalanced layers) reduces to it. It is
a seminorm of (C_1, …, C_{N−1}): Q = 0 says every neuron is balanced, not that
every C_k vanishes (for d > 1 their off-diagonal entries are not counted).

Gradient-flow sharpness λ_GF (:meth:`DeepModel.gradient_flow_sharpness`): the
top Hessian eigenvalue at the minimizer gradient flow θ' = −∇L reaches from θ.
At a minimizer ε = 0, so ∇²L = ∇f ∇fᵀ and λ_GF = ‖∇f(θ*)‖². θ* is found

* for N = 2 by the shallow closed form
  (:func:`lin2net.theory.closed_forms.gradient_flow_sharpness`, exact);
* for scalar networks (d = 1) exactly, by a 1-D root find
  (:func:`scalar_flow_limit`);
* otherwise by integrating the flow along its path to f = Φ
  (:func:`integrate_flow`, relative tolerance :data:`FLOW_RTOL`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lin2net.dynamics import dormand_prince
from lin2net.dynamics.family import FloatArray, IntArray
from lin2net.theory import closed_forms

Array = NDArray[Any]  # float64 or complex128: the derivative methods work on both

FLOW_RTOL = 1e-12
"""Per-step relative error tolerance of :func:`integrate_flow`'s Dormand–Prince
5(4) steps; λ_GF from it agrees with the exact values to better than 1e-10
relative (tests/families/test_deep_flow.py)."""

MAX_FLOW_STEPS = 20_000
"""Steps after which :func:`integrate_flow` gives up on a trajectory (λ_GF = NaN)."""


def layer_shapes(depth: int, width: int) -> tuple[tuple[int, int], ...]:
    """The shapes (rows, columns) of W_1, …, W_N."""
    return ((width, 1), *((width, width),) * (depth - 2), (1, width))


def parameter_count(depth: int, width: int) -> int:
    """D = 2d + (N − 2)d²."""
    return 2 * width + (depth - 2) * width * width


def layers(theta: Array, depth: int, width: int) -> list[Array]:
    """The layers W_1, …, W_N of a batch θ (n, D), each of shape (n, rows, columns)
    (views of θ where its memory allows)."""
    theta = np.asarray(theta)
    n = theta.shape[0]
    out: list[Array] = []
    offset = 0
    for rows, cols in layer_shapes(depth, width):
        out.append(theta[:, offset : offset + rows * cols].reshape(n, rows, cols))
        offset += rows * cols
    if offset != theta.shape[1]:
        raise ValueError(f"θ has {theta.shape[1]} parameters; depth {depth}, width {width} needs {offset}")
    return out


def flatten(weights: Sequence[Array]) -> Array:
    """θ (n, D) from the layers W_1, …, W_N, each of shape (n, rows, columns): the inverse of :func:`layers`."""
    n = weights[0].shape[0]
    return np.concatenate([np.reshape(w, (n, -1)) for w in weights], axis=1)


def _prefixes(weights: Sequence[Array]) -> list[Array]:
    """P_0 = 1, P_k = W_k ⋯ W_1 (n, rows_k, 1), k = 0…N (P_N = f)."""
    n = weights[0].shape[0]
    out = [np.ones((n, 1, 1), dtype=weights[0].dtype)]
    for w in weights:
        out.append(w @ out[-1])
    return out


def _suffixes(weights: Sequence[Array]) -> list[Array]:
    """S_k = W_N ⋯ W_k (n, 1, cols_k) at list index k − 1 for k = 1…N + 1 (S_{N+1} = 1)."""
    n = weights[0].shape[0]
    out = [np.ones((n, 1, 1), dtype=weights[0].dtype)]
    for w in reversed(weights):
        out.append(out[-1] @ w)
    out.reverse()
    return out


def _output_gradient(weights: Sequence[Array]) -> tuple[Array, list[Array]]:
    """(f, [∂f/∂W_k]): the output (n,) and its gradient layer by layer."""
    prefix, suffix = _prefixes(weights), _suffixes(weights)
    grads = [np.swapaxes(suffix[k + 1], 1, 2) @ np.swapaxes(prefix[k], 1, 2) for k in range(len(weights))]
    return prefix[-1][:, 0, 0], grads


@dataclass(frozen=True)
class DeepModel:
    """f = W_N ⋯ W_1 with L = ½(f − Φ)², batched over trajectories (see module doc).

    Satisfies :class:`lin2net.dynamics.family.Model`.
    """

    depth: int
    width: int
    phi: float

    def __post_init__(self) -> None:
        if self.depth < 2:
            raise ValueError(f"depth must be at least 2, got {self.depth}")
        if self.width < 1:
            raise ValueError(f"width must be at least 1, got {self.width}")

    @property
    def size(self) -> int:
        return parameter_count(self.depth, self.width)

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        return layer_shapes(self.depth, self.width)

    def layers(self, theta: Array) -> list[Array]:
        """W_1, …, W_N of θ (n, D), each (n, rows, columns)."""
        return layers(theta, self.depth, self.width)

    def flatten(self, weights: Sequence[Array]) -> Array:
        return flatten(weights)

    def output(self, theta: Array) -> Array:
        """f(θ) = W_N ⋯ W_1 per trajectory, shape (n,)."""
        return _prefixes(self.layers(theta))[-1][:, 0, 0]

    def residual(self, theta: Array) -> Array:
        """ε = f − Φ (signed, as the shallow model's)."""
        return self.output(theta) - self.phi

    def loss(self, theta: Array) -> Array:
        eps = self.residual(theta)
        return 0.5 * eps * eps

    def output_gradient(self, theta: Array) -> tuple[Array, Array]:
        """(f (n,), ∇f (n, D))."""
        f, grads = _output_gradient(self.layers(theta))
        return f, flatten(grads)

    def gradient(self, theta: Array, batch: IntArray | None = None) -> Array:
        """∇L = ε∇f. ``batch`` must be None: the deep family has no data set."""
        if batch is not None:
            raise ValueError("the deep family has no data set: batch must be None")
        f, grad = self.output_gradient(theta)
        out: Array = (f - self.phi)[:, None] * grad
        return out

    def hvp(self, theta: Array, v: Array) -> Array:
        """∇²L v = ∇f (∇f·v) + ε Ḋ∇f (see module doc), without forming the Hessian."""
        weights, directions = self.layers(theta), self.layers(v)
        prefix, suffix = _prefixes(weights), _suffixes(weights)
        n, count = len(theta), self.depth
        dtype = np.result_type(weights[0], directions[0])
        d_prefix = [np.zeros((n, 1, 1), dtype=dtype)]
        for k in range(count):
            d_prefix.append(directions[k] @ prefix[k] + weights[k] @ d_prefix[k])
        d_suffix = [np.zeros((n, 1, 1), dtype=dtype)]  # built from S_{N+1} down to S_1
        for k in reversed(range(count)):
            d_suffix.append(d_suffix[-1] @ weights[k] + suffix[k + 1] @ directions[k])
        d_suffix.reverse()  # d_suffix[k] is the derivative of suffix[k]
        grads, d_grads = [], []
        for k in range(count):
            s_t, p_t = np.swapaxes(suffix[k + 1], 1, 2), np.swapaxes(prefix[k], 1, 2)
            grads.append(s_t @ p_t)
            d_grads.append(np.swapaxes(d_suffix[k + 1], 1, 2) @ p_t + s_t @ np.swapaxes(d_prefix[k], 1, 2))
        grad, d_grad = flatten(grads), flatten(d_grads)
        eps = prefix[-1][:, 0, 0] - self.phi
        directional = np.einsum("nd,nd->n", grad, np.asarray(v))
        out: Array = grad * directional[:, None] + eps[:, None] * d_grad
        return out

    def output_hessian(self, theta: Array) -> Array:
        """∇²f (n, D, D) from its blocks (see module doc); zero on the diagonal blocks."""
        weights = self.layers(theta)
        prefix, suffix = _prefixes(weights), _suffixes(weights)
        n, size = len(theta), self.size
        shapes = self.shapes
        offsets = np.concatenate([[0], np.cumsum([r * c for r, c in shapes])])
        out = np.zeros((n, size, size), dtype=weights[0].dtype)
        for i in range(self.depth):
            rows_i, cols_i = shapes[i]
            middle = np.broadcast_to(np.eye(rows_i, dtype=weights[0].dtype), (n, rows_i, rows_i))
            for j in range(i + 1, self.depth):
                if j > i + 1:
                    middle = weights[j - 1] @ middle  # W_{j−1} ⋯ W_{i+1}: (n, cols_j, rows_i)
                rows_j, cols_j = shapes[j]
                block = np.einsum("nc,nea,nb->nabce", suffix[j + 1][:, 0, :], middle, prefix[i][:, :, 0])
                block = block.reshape(n, rows_i * cols_i, rows_j * cols_j)
                out[:, offsets[i] : offsets[i + 1], offsets[j] : offsets[j + 1]] = block
                out[:, offsets[j] : offsets[j + 1], offsets[i] : offsets[i + 1]] = np.swapaxes(block, 1, 2)
        return out

    def hessian(self, theta: Array) -> Array:
        """∇²L = ∇f ∇fᵀ + ε ∇²f, shape (n, D, D)."""
        f, grad = self.output_gradient(theta)
        eps = f - self.phi
        out: Array = np.einsum("ni,nj->nij", grad, grad) + eps[:, None, None] * self.output_hessian(theta)
        return out

    def sharpness(self, theta: FloatArray) -> FloatArray:
        """The top eigenvalue of ∇²L per trajectory (eigvalsh of :meth:`hessian`)."""
        top: FloatArray = np.linalg.eigvalsh(self.hessian(theta))[:, -1]
        return top

    def imbalance(self, theta: FloatArray) -> FloatArray:
        """Q = Σ_k Σ_i |‖W_{k+1}[:, i]‖² − ‖W_k[i, :]‖²| (see module doc)."""
        weights = self.layers(np.asarray(theta, dtype=np.float64))
        if self.depth == 2:
            # Σ_i |a_i² − b_i²| exactly as the shallow model computes it.
            return closed_forms.imbalance(weights[0][:, :, 0], weights[1][:, 0, :])
        q = np.zeros(len(theta))
        for lower, upper in zip(weights[:-1], weights[1:], strict=True):
            outgoing = np.einsum("nri,nri->ni", upper, upper)  # ‖W_{k+1}[:, i]‖²
            incoming = np.einsum("nij,nij->ni", lower, lower)  # ‖W_k[i, :]‖²
            q += np.abs(outgoing - incoming).sum(axis=1)
        return q

    def scale(self, theta: FloatArray) -> FloatArray:
        """λ = ‖θ‖² = Σ_k ‖W_k‖²_F, the initial-scale convention of every family."""
        value: FloatArray = np.einsum("nd,nd->n", theta, theta)
        return value

    def gradient_flow_sharpness(self, theta: FloatArray) -> FloatArray:
        """λ_GF = the top Hessian eigenvalue at the minimizer gradient flow reaches
        from θ: the shallow closed form at N = 2, the exact root find for d = 1,
        the integrated flow (:data:`FLOW_RTOL`) otherwise; NaN where the flow
        could not be followed (it runs into a saddle)."""
        theta = np.asarray(theta, dtype=np.float64)
        if self.depth == 2:
            a, b = theta[:, : self.width], theta[:, self.width :]
            eps0, lam0, _ = closed_forms.reduced_coordinates(a, b, self.phi)
            s0, p0 = closed_forms.sum_and_difference_norms(a, b)
            return closed_forms.gradient_flow_sharpness(eps0, lam0, self.phi, s0, p0)
        if self.width == 1:
            return scalar_flow_sharpness(theta, self.phi)
        limit = integrate_flow(self, theta)
        _, grad = self.output_gradient(limit)
        value: FloatArray = np.einsum("nd,nd->n", grad, grad)
        return value


# ---------------------------------------------------------------- scalar networks


def scalar_flow_limit(w: FloatArray, phi: float) -> tuple[FloatArray, NDArray[np.bool_]]:
    """The point gradient flow reaches from scalar weights w (n, N) (d = 1), exactly.

    The flow conserves w_k² − w_j², so with m the layer of smallest |w_m| and
    c_k = w_k² − w_m² ≥ 0 (computed as (|w_k| − |w_m|)(|w_k| + |w_m|)), the path
    is w_k = s_k √(u² + c_k) (k ≠ m, signs s_k fixed: w_k² ≥ c_k > 0) with u = w_m.
    On it f = σ g(u), σ = Π_{k≠m} s_k, g(u) = u Π_{k≠m} √(u² + c_k) strictly
    increasing, so f moves monotonically to Φ and u to the unique root of
    σ g(u) = Φ: u* = sign(σΦ) x* with x Π√(x² + c_k) = |Φ|. In y = log x,
    h(y) = y + ½ Σ log(e^{2y} + c_k) − log|Φ| is increasing (slope in [1, N]) and
    convex, so Newton's method started above the root (at the smaller of the
    bounds |Φ|^{1/N} and |Φ|/Π√c_k) descends monotonically to it; it runs until y
    stops decreasing, i.e. to machine precision.

    The flow stalls only if it must move u through 0 (u0 and u* of opposite signs)
    while another layer ties with m (c_k = 0): at u = 0 two layers vanish, ∇L = 0,
    and the flow ends in that saddle. The second result flags those rows, whose
    limit is the saddle point (u = 0).
    """
    w = np.asarray(w, dtype=np.float64)
    n, depth = w.shape
    absw = np.abs(w)
    m = np.argmin(absw, axis=1)
    rows = np.arange(n)
    smallest = absw[rows, m][:, None]
    c = (absw - smallest) * (absw + smallest)
    c[rows, m] = 0.0
    signs = np.where(w >= 0, 1.0, -1.0)
    signs[rows, m] = 1.0
    sigma = np.prod(signs, axis=1)
    others = np.ones((n, depth), dtype=bool)
    others[rows, m] = False
    c_others = c[others].reshape(n, depth - 1)
    target = abs(phi)
    x = np.zeros(n)
    if target > 0:
        log_target = math.log(target)
        with np.errstate(divide="ignore"):
            log_c = np.log(c_others)
        bound_power = np.full(n, log_target / depth)
        bound_scale = np.where(np.all(c_others > 0, axis=1), log_target - 0.5 * log_c.sum(axis=1), np.inf)
        y = np.minimum(bound_power, bound_scale)
        active = np.ones(n, dtype=bool)
        for _ in range(200):
            if not active.any():
                break
            ya, lc = y[active], log_c[active]
            log_terms = np.logaddexp(2.0 * ya[:, None], lc)
            h = ya + 0.5 * log_terms.sum(axis=1) - log_target
            slope = 1.0 + np.exp(2.0 * ya[:, None] - log_terms).sum(axis=1)
            y_new = ya - h / slope
            moved = y_new < ya
            index = np.flatnonzero(active)
            y[index[moved]] = y_new[moved]
            active[index[~moved]] = False
        x = np.exp(y)
    u_star = np.sign(sigma * phi) * x
    u0 = w[rows, m]
    tied = np.sum(c_others == 0.0, axis=1) > 0
    saddle: NDArray[np.bool_] = tied & ((u0 == 0.0) | (np.sign(u0) * np.sign(u_star) < 0))
    u = np.where(saddle, 0.0, u_star)
    limit = signs * np.sqrt(u[:, None] ** 2 + c)
    limit[rows, m] = u
    return limit, saddle


def scalar_flow_sharpness(w: FloatArray, phi: float) -> FloatArray:
    """λ_GF of scalar networks (d = 1, any depth N ≥ 2), from :func:`scalar_flow_limit`.

    At the limit ε = 0 and λ_GF = ‖∇f‖² = Σ_k Π_{j≠k} w_j² (a sum of products of
    non-negative terms: no cancellation); at a saddle limit, the top eigenvalue
    of the Hessian there."""
    limit, saddle = scalar_flow_limit(w, phi)
    squares = limit * limit
    depth = w.shape[1]
    value = np.zeros(len(w))
    for k in range(depth):
        value += np.prod(np.delete(squares, k, axis=1), axis=1)
    if saddle.any():
        model = DeepModel(depth, 1, phi)
        value[saddle] = model.sharpness(limit[saddle])
    return value


# ---------------------------------------------------------------- the flow for d > 1


def integrate_flow(model: DeepModel, theta: FloatArray, rtol: float = FLOW_RTOL) -> FloatArray:
    """The point θ* (n, D) gradient flow θ' = −∇L reaches from θ, by following its path.

    Along the flow ε' = −ε‖∇f‖², so f moves monotonically to Φ and the path is
    that of dθ/df = ∇f/‖∇f‖² (the flow's velocity −ε∇f divided by df/dt =
    −ε‖∇f‖²). With f = f0 + s(Φ − f0) this is an ODE on the finite interval
    s ∈ [0, 1] (no integration to t = ∞, no stopping rule), integrated with
    adaptive Dormand–Prince 5(4) steps, each row with its own step size, each
    step accepted when its error estimate is below rtol·max(|θ|, rms θ)
    componentwise. Two Newton steps θ ← θ + (Φ − f)∇f/‖∇f‖² then put f on Φ to
    rounding. The path is regular wherever ∇f ≠ 0; by Euler's identity
    θ·∇f = N f, ∇f vanishes only where f = 0, and a path through such a point
    (a saddle, e.g. two zero layers) makes the step size collapse: those rows
    come back as NaN after :data:`MAX_FLOW_STEPS` steps.
    """
    theta = np.array(theta, dtype=np.float64)
    n = len(theta)
    f0, _ = model.output_gradient(theta)
    span = model.phi - f0

    def velocity(x: FloatArray, rows: NDArray[np.intp]) -> FloatArray:
        _, grad = model.output_gradient(x)
        norm2 = np.einsum("nd,nd->n", grad, grad)
        with np.errstate(divide="ignore", invalid="ignore"):
            out: FloatArray = (span[rows] / norm2)[:, None] * grad
        return out

    s = np.zeros(n)
    scale = np.sqrt(np.einsum("nd,nd->n", theta, theta) / theta.shape[1])
    h = np.full(n, 0.01)
    failed = np.logical_not(np.all(np.isfinite(theta), axis=1))
    active = (span != 0) & ~failed
    steps = np.zeros(n, dtype=np.int64)
    k_first = np.zeros_like(theta)
    if active.any():
        rows = np.flatnonzero(active)
        k_first[rows] = velocity(theta[rows], rows)
    while active.any():
        rows = np.flatnonzero(active)
        x, hh = theta[rows], np.minimum(h[rows], 1.0 - s[rows])
        step = dormand_prince.attempt(functools.partial(velocity, rows=rows), x, hh, k_first[rows])
        tolerance = rtol * np.maximum(np.maximum(np.abs(x), np.abs(step.new)), scale[rows][:, None])
        ratio = dormand_prince.error_ratio(step.error, tolerance)
        accept = np.isfinite(ratio) & (ratio <= 1.0)
        accepted = rows[accept]
        theta[accepted] = step.new[accept]
        s[accepted] = np.where(hh[accept] >= 1.0 - s[accepted], 1.0, s[accepted] + hh[accept])
        k_first[accepted] = step.last[accept]  # first-same-as-last
        h[rows] = dormand_prince.next_step(hh, ratio)
        steps[rows] += 1
        done = s[rows] >= 1.0
        stuck = (steps[rows] >= MAX_FLOW_STEPS) | (h[rows] <= 1e-14)
        failed[rows[stuck & ~done]] = True
        active[rows[done | stuck]] = False
    for _ in range(2):
        f, grad = model.output_gradient(theta)
        norm2 = np.einsum("nd,nd->n", grad, grad)
        with np.errstate(divide="ignore", invalid="ignore"):
            correction = np.where(norm2 > 0, (model.phi - f) / norm2, 0.0)
        theta += correction[:, None] * grad
    theta[failed] = np.nan
    return theta
