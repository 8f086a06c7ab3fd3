"""GD and SGD on a flat parameter vector θ over any :class:`~lin2net.dynamics.family.Model`.

One model is one grid cell's (width, depth or inputs, Φ, data set); the state
holds every trajectory's θ (shape (n, D)). Written once for every family, on
the dynamics protocol (:mod:`lin2net.dynamics.protocol`), run by the one driver:

* GD: θ ← θ − η ∇L(θ);
* SGD (data families): θ ← θ − η ∇L_B(θ), with L_B the loss averaged over a
  mini-batch of B rows of the data set, drawn per trajectory and step without
  replacement from the counter-based stream of today's SGD
  (:mod:`lin2net.kernels.counter_rng`: key of trajectory r from the root seed
  and r, draws 2, 3, … of step t are the first B positions of a partial
  Fisher–Yates shuffle of the n rows). A batch of B = n is the full batch: GD.

Observation at θ: ε = model.residual(θ), λ = ‖θ‖², the loss, the sharpness S
(the top eigenvalue of ∇²L(θ)) and η·S. log Q(t)/Q(0) is measured from θ:
log(model.imbalance(θ_t)/Q(θ_0)).

Sharpness (:func:`top_eigenvalue`): for D <= :data:`EXACT_SIZE` the exact top
eigenvalue of ``model.hessian`` (batched ``eigvalsh``); beyond, a Lanczos
iteration of :data:`LANCZOS_STEPS` steps on Hessian-vector products with full
reorthogonalization, warm-started from the previous state's top Ritz vector
(kept in the state), so it converges in few steps along a trajectory. The test
(tests/families/test_parameter_vector_core.py) holds it to 1e-10 relative of
eigvalsh on random and trajectory points.

Stop rule: the driver's, with the tolerance loss_floor + loss_tol (:func:`loss_floor`:
the vector family's least-squares floor, 0 for the others), so rows on noisy labels
converge within loss_tol of the least loss they can reach.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from lin2net.dynamics.family import Model
from lin2net.dynamics.protocol import FloatArray, Observation, Step, StopRule
from lin2net.kernels import counter_rng

EXACT_SIZE = 48
"""Up to this D the sharpness is eigvalsh of the full Hessian (n·D³ per step stays small)."""
LANCZOS_STEPS = 24
"""Krylov dimension of one sharpness evaluation beyond :data:`EXACT_SIZE` (min(D, this))."""
UIntArray = NDArray[np.uint64]


class ThetaState(NamedTuple):
    """Per trajectory: θ (n, D), Q(θ_0) (n,), the top Hessian eigenvector estimate
    (n, D, warm start of the next Lanczos; zeros until known) and S(θ) (n,)."""

    theta: FloatArray
    q0: FloatArray
    direction: FloatArray
    sharpness: FloatArray


class ThetaParams(NamedTuple):
    """Per trajectory: η, the batch size (0: full batch) and the SGD stream key."""

    eta: FloatArray
    batch_size: NDArray[np.int64]
    keys: UIntArray


def start_state(model: Model, theta: FloatArray) -> ThetaState:
    """The state at θ_0 (sharpness and direction filled by the dynamics' ``start``)."""
    n = theta.shape[0]
    return ThetaState(theta, model.imbalance(theta), np.zeros_like(theta), np.full(n, np.nan))


def _random_unit(shape: tuple[int, int], salt: int) -> FloatArray:
    """A fixed pseudo-random unit vector per row (a Lanczos start independent of the data)."""
    z = np.random.default_rng(np.random.SeedSequence(20240617, spawn_key=(salt,))).standard_normal(shape)
    unit: FloatArray = z / np.linalg.norm(z, axis=1, keepdims=True)
    return unit


def lanczos_top(model: Model, theta: FloatArray, start: FloatArray, steps: int) -> tuple[FloatArray, FloatArray]:
    """(top Ritz value, its unit Ritz vector) of ∇²L(θ) per row, from a Krylov space of
    dimension min(D, ``steps``) started at ``start`` (rows of zeros: a fixed random start).

    Full reorthogonalization; on breakdown (the Krylov space is invariant) the next
    basis vector is a fresh random one orthogonal to the basis, with a zero coupling,
    so the tridiagonal matrix's blocks are exact eigenvalues of invariant subspaces."""
    n, size = theta.shape
    k = min(size, steps)
    norms = np.linalg.norm(start, axis=1, keepdims=True)
    fresh = _random_unit((n, size), size)
    q = np.where(norms > 0, start / np.where(norms > 0, norms, 1.0), fresh)
    basis = np.zeros((k, n, size))
    alpha = np.zeros((n, k))
    beta = np.zeros((n, k))
    scale = np.zeros(n)
    for j in range(k):
        basis[j] = q
        w = model.hvp(theta, q)
        alpha[:, j] = np.einsum("nd,nd->n", w, q)
        scale = np.maximum(scale, np.abs(alpha[:, j]))
        for _ in range(2):  # twice is enough (Kahan): w ⟂ every basis vector to rounding
            w = w - np.einsum("kn,knd->nd", np.einsum("knd,nd->kn", basis[: j + 1], w), basis[: j + 1])
        if j == k - 1:
            break
        b = np.linalg.norm(w, axis=1)
        broke = ~(b > 1e-13 * np.maximum(scale, 1e-300))
        if broke.any():
            extra = _random_unit((n, size), size + j + 1)
            for _ in range(2):
                extra = extra - np.einsum("kn,knd->nd", np.einsum("knd,nd->kn", basis[: j + 1], extra), basis[: j + 1])
            extra /= np.linalg.norm(extra, axis=1, keepdims=True)
            w = np.where(broke[:, None], extra, w / np.where(broke, 1.0, b)[:, None])
            b = np.where(broke, 0.0, b)
        else:
            w = w / b[:, None]
        beta[:, j] = b
        q = w
    tridiagonal = np.zeros((n, k, k))
    index = np.arange(k)
    tridiagonal[:, index, index] = alpha
    tridiagonal[:, index[:-1], index[1:]] = beta[:, : k - 1]
    tridiagonal[:, index[1:], index[:-1]] = beta[:, : k - 1]
    values, vectors = np.linalg.eigh(tridiagonal)
    top = values[:, -1]
    ritz = np.einsum("nk,knd->nd", vectors[:, :, -1], basis)
    ritz /= np.linalg.norm(ritz, axis=1, keepdims=True)
    return top, ritz


def top_eigenvalue(model: Model, theta: FloatArray, warm: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(S(θ), a unit top eigenvector estimate) per row: exact eigvalsh for D <= EXACT_SIZE,
    warm-started Lanczos beyond (see module doc). Non-finite θ gives NaN (a diverged row)."""
    n, size = theta.shape
    finite = np.isfinite(theta).all(axis=1)
    out = np.full(n, np.nan)
    direction = warm.copy()
    if not finite.any():
        return out, direction
    rows = np.flatnonzero(finite)
    with np.errstate(all="ignore"):
        if size <= EXACT_SIZE:
            hessian = model.hessian(theta[rows])
            ok = np.isfinite(hessian).all(axis=(1, 2))
            if ok.any():
                out[rows[ok]] = np.linalg.eigvalsh(hessian[ok])[:, -1]
            return out, direction
        top, ritz = lanczos_top(model, theta[rows], warm[rows], LANCZOS_STEPS)
    out[rows] = top
    direction[rows] = np.where(np.isfinite(ritz), ritz, 0.0)
    return out, direction


def minibatch_rows(keys: UIntArray, t: int, batch: int, n_data: int) -> NDArray[np.int64]:
    """Rows of the data set in step ``t``'s mini-batch of each trajectory, shape (n, batch):
    the first ``batch`` positions of a partial Fisher–Yates shuffle of 0 … n_data − 1 driven
    by draws 2, 3, … of the trajectory's counter-based stream (today's SGD's draws)."""
    n = keys.shape[0]
    order = np.tile(np.arange(n_data, dtype=np.int64), (n, 1))
    counter = counter_rng.step_counter(np.full(n, t, dtype=np.uint64))
    lanes = np.arange(n)
    for i in range(batch):
        draw = counter_rng.word(keys, counter, np.full(n, counter_rng.NOISE_DRAWS + i, dtype=np.uint64))
        j = i + counter_rng.below(draw, np.full(n, n_data - i, dtype=np.uint64)).astype(np.int64)
        swap = order[lanes, j].copy()
        order[lanes, j] = order[:, i]
        order[:, i] = swap
    batch_rows: NDArray[np.int64] = order[:, :batch]
    return batch_rows


def loss_floor(model: Model) -> float:
    """The least loss the model can reach on its data, where it is known (the vector
    family's ``loss_floor``, ½ mean of the least-squares residual: label noise, or
    labels no linear map fits), else 0 (deep: L = ½(f − Φ)² reaches 0; relu: no known floor)."""
    return float(getattr(model, "loss_floor", 0.0))


class ParameterVectorDynamics:
    """GD (``batch_size`` 0 or n) or mini-batch SGD on θ over ``model`` (see module doc)."""

    def __init__(self, model: Model, data_size: int | None = None) -> None:
        self.model = model
        self.data_size = data_size  # n of a data family's data set (for mini-batches); None: GD only

    @property
    def name(self) -> str:
        return "parameter-vector"

    def start(self, state: ThetaState, params: ThetaParams) -> ThetaState:
        sharpness, direction = top_eigenvalue(self.model, state.theta, state.direction)
        return state._replace(sharpness=sharpness, direction=direction)

    def observe(self, state: ThetaState, params: ThetaParams) -> Observation:
        theta = state.theta
        loss = self.model.loss(theta)
        eps = self.model.residual(theta)
        lam = np.einsum("nd,nd->n", theta, theta)
        return Observation(eps, lam, loss, state.sharpness, params.eta * state.sharpness)

    def _gradient(self, theta: FloatArray, params: ThetaParams, t: int) -> FloatArray:
        n_data = self.data_size
        if n_data is None or params.batch_size.size == 0:
            return self.model.gradient(theta)
        batch = int(params.batch_size[0])  # one cell per dynamics: one batch size
        if batch <= 0 or batch >= n_data:
            return self.model.gradient(theta)
        return self.model.gradient(theta, minibatch_rows(params.keys, t, batch, n_data))

    def step(self, state: ThetaState, params: ThetaParams, t: int, obs: Observation) -> tuple[ThetaState, Step]:
        theta = state.theta - params.eta[:, None] * self._gradient(state.theta, params, t)
        sharpness, direction = top_eigenvalue(self.model, theta, state.direction)
        u = np.zeros(theta.shape[0])  # unused: Q is measured from θ (measured_log_q)
        return ThetaState(theta, state.q0, direction, sharpness), Step(u, {})

    def tolerance(self, params: ThetaParams, rule: StopRule) -> FloatArray:
        """loss_floor(model) + loss_tol per trajectory: a model with a loss floor (the vector
        family on noisy labels) converges when L is within loss_tol of the floor, which
        L = ½ε² never goes below (without it such a row would always end at max_steps)."""
        return np.full(len(params.eta), loss_floor(self.model) + rule.loss_tol)

    def measured_log_q(self, state: ThetaState, product: FloatArray | None = None) -> FloatArray | None:
        """log Q(θ_t)/Q(θ_0), measured; where Q(θ_0) = 0 (0/0) the driver's ``product`` (0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            q = self.model.imbalance(state.theta)
            fallback = np.zeros_like(state.q0) if product is None else product
            log_ratio: FloatArray = np.where(state.q0 > 0, np.log(q) - np.log(state.q0), fallback)
        return log_ratio

    def window(self, rule: StopRule) -> int | None:
        return None


def run_parameters(eta: float, n: int, batch_size: int = 0, keys: UIntArray | None = None) -> ThetaParams:
    """ThetaParams of n trajectories of one cell."""
    return ThetaParams(
        np.full(n, float(eta)),
        np.full(n, int(batch_size), dtype=np.int64),
        np.zeros(n, dtype=np.uint64) if keys is None else keys,
    )


__all__: list[Any] = [
    "EXACT_SIZE",
    "LANCZOS_STEPS",
    "ParameterVectorDynamics",
    "ThetaParams",
    "ThetaState",
    "lanczos_top",
    "loss_floor",
    "minibatch_rows",
    "run_parameters",
    "start_state",
    "top_eigenvalue",
]
