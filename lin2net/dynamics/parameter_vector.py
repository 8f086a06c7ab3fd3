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

Sharpness, two modes (``sharpness=`` of :class:`ParameterVectorDynamics`):

* ``exact`` (:func:`top_eigenvalue`, the class default): at every state, for
  D <= :data:`EXACT_SIZE` the exact top eigenvalue of ``model.hessian`` (batched
  ``eigvalsh``); beyond, a Lanczos iteration of :data:`LANCZOS_STEPS` steps on
  Hessian-vector products with full reorthogonalization, warm-started from the
  previous state's top Ritz vector (kept in the state), so it converges in few
  steps along a trajectory. The test (tests/families/test_parameter_vector_core.py)
  holds it to 1e-10 relative of eigvalsh on random and trajectory points.
* ``tracked`` (what sweeps run, :func:`tracked_top`): S(θ_0) and S(θ_T) — the
  rows' ``sharpness0`` and ``sharpness_T`` — exact as above (the dynamics holds the
  run's stop rule and its step count, so it knows the state where the rule retires
  a trajectory); at every other state (used only by ``max_eta_sharpness`` and
  ``eos_steps``) a warm-started iteration: two-step Lanczos on Hessian-vector
  products, restarted from its top Ritz vector, from the previous state's
  estimate plus a nudge of :data:`TRACK_NUDGE` along a fixed pseudo-random vector,
  until the Ritz residual ‖Hy − S̃y‖ is at most :data:`TRACK_RESIDUAL` times the
  Hessian's scale (≤ :data:`TRACK_PASSES` passes; rows still above it get the exact
  value). S̃ is a Rayleigh quotient, so S̃ <= S; it is within the residual of an
  eigenvalue, and within residual²/gap of it. Measured along GD trajectories of
  every family (tests/families/test_tracked_sharpness.py) it is within
  :data:`TRACKED_RTOL` of eigvalsh, relative, at every state.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from lin2net.dynamics.family import Model
from lin2net.dynamics.protocol import RUNNING, FloatArray, Observation, Step, StopRule, stop_status
from lin2net.kernels import counter_rng

EXACT_SIZE = 48
"""Up to this D the sharpness is eigvalsh of the full Hessian (n·D³ per step stays small)."""
LANCZOS_STEPS = 24
"""Krylov dimension of one sharpness evaluation beyond :data:`EXACT_SIZE` (min(D, this))."""
TRACK_RESIDUAL = 1e-6
"""A tracked estimate S̃ is accepted when its Ritz residual ‖Hy − S̃y‖ <= this × the Hessian's scale."""
TRACK_PASSES = 6
"""Two-step Lanczos passes per state before a row falls back to the exact value."""
TRACK_OVERLAP = 0.99
"""... and when its Ritz vector y keeps |⟨y, previous estimate⟩| >= this: where the top eigenvector
turns faster (chaotic GD far past η·S = 2, a crossing) tracking is not trusted and S is exact."""
TRACK_EDGE = 1.9
"""Where the tracked η·S̃ exceeds this (near or past the edge of stability η·S = 2), S is exact."""
TRACK_NUDGE = 1e-6
"""Weight of the fixed pseudo-random vector added to the warm start (so no eigenvector is ever
missed for good by symmetry: an eigenvalue that overtakes the tracked one is found)."""
TRACKED_RTOL = 1e-9
"""The tracked per-step sharpness' relative error bound, as measured along GD trajectories of
every family (tests/families/test_tracked_sharpness.py)."""
NUDGES = 16
"""Fixed pseudo-random unit vectors the nudge cycles through (step t uses number t mod this)."""
SharpnessMode = Literal["exact", "tracked"]
UIntArray = NDArray[np.uint64]


class ThetaState(NamedTuple):
    """Per trajectory: θ (n, D), Q(θ_0) (n,), the top Hessian eigenvector estimate
    (n, D, warm start of the next Lanczos; zeros until known), S(θ) (n,) and the
    steps taken t (n,; equal across the working set, which moves in lock-step) and
    whether the step into this state raised the loss (n,)."""

    theta: FloatArray
    q0: FloatArray
    direction: FloatArray
    sharpness: FloatArray
    t: NDArray[np.int64]
    climbed: NDArray[np.bool_]


class ThetaParams(NamedTuple):
    """Per trajectory: η, the batch size (0: full batch) and the SGD stream key."""

    eta: FloatArray
    batch_size: NDArray[np.int64]
    keys: UIntArray


def start_state(model: Model, theta: FloatArray) -> ThetaState:
    """The state at θ_0 (sharpness and direction filled by the dynamics' ``start``)."""
    n = theta.shape[0]
    return ThetaState(
        theta,
        model.imbalance(theta),
        np.zeros_like(theta),
        np.full(n, np.nan),
        np.zeros(n, dtype=np.int64),
        np.zeros(n, dtype=bool),
    )


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


def exact_top(model: Model, theta: FloatArray, warm: FloatArray) -> tuple[FloatArray, FloatArray]:
    """:func:`top_eigenvalue` (the same S(θ)) with a unit top eigenvector for every finite
    row, also for D <= EXACT_SIZE (``eigh``), so that tracking can start from it."""
    top, direction = top_eigenvalue(model, theta, warm)
    size = theta.shape[1]
    if size > EXACT_SIZE:
        return top, direction
    rows = np.flatnonzero(np.isfinite(top))
    if rows.size:
        with np.errstate(all="ignore"):
            vectors = np.linalg.eigh(model.hessian(theta[rows]))[1][:, :, -1]
        direction[rows] = np.where(np.isfinite(vectors), vectors, 0.0)
    return top, direction


def two_step_lanczos(
    model: Model, theta: FloatArray, start: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """One pass of tracking per row: Rayleigh–Ritz of ∇²L(θ) on span{q, Hq} for the unit
    ``start`` q (two HVPs). Returns (top Ritz value S̃, its unit Ritz vector y, the
    residual ‖Hy − S̃y‖, the scale max(‖Hq‖, ‖Hq₂‖, |S̃|) it is measured against).

    With q₂ the unit part of Hq orthogonal to q, the projected matrix is
    T = [[α₁, β], [β, α₂]]; its top eigenvalue is S̃ = (α₁ + α₂)/2 + √(((α₁ − α₂)/2)² + β²)
    with eigenvector s ∝ (S̃ − α₂, β) (or (β, S̃ − α₁), whichever is longer), and
    Hy = s₁Hq + s₂Hq₂ by linearity, so the residual costs no third HVP."""
    q1 = start
    w1 = model.hvp(theta, q1)
    alpha1 = np.einsum("nd,nd->n", w1, q1)
    r = w1 - alpha1[:, None] * q1
    r = r - np.einsum("nd,nd->n", r, q1)[:, None] * q1  # twice: r ⟂ q1 to rounding
    beta = np.linalg.norm(r, axis=1)
    norm1 = np.linalg.norm(w1, axis=1)
    broke = ~(beta > 1e-14 * np.maximum(norm1, 1e-300))  # q1 is an eigenvector to rounding
    q2 = np.where(broke[:, None], 0.0, r / np.where(broke, 1.0, beta)[:, None])
    w2 = model.hvp(theta, q2)
    alpha2 = np.einsum("nd,nd->n", w2, q2)
    top = 0.5 * (alpha1 + alpha2) + np.hypot(0.5 * (alpha1 - alpha2), beta)
    first = alpha1 >= alpha2  # s = (S̃ − α₂, β) is then the longer form (S̃ − α₂ >= S̃ − α₁)
    s1 = np.where(first, top - alpha2, beta)
    s2 = np.where(first, beta, top - alpha1)
    top = np.where(broke, alpha1, top)
    s1, s2 = np.where(broke, 1.0, s1), np.where(broke, 0.0, s2)
    length = np.hypot(s1, s2)
    s1, s2 = s1 / length, s2 / length
    vector = s1[:, None] * q1 + s2[:, None] * q2
    product = s1[:, None] * w1 + s2[:, None] * w2
    residual = np.linalg.norm(product - top[:, None] * vector, axis=1)
    vector /= np.linalg.norm(vector, axis=1, keepdims=True)
    scale = np.maximum(np.maximum(norm1, np.linalg.norm(w2, axis=1)), np.abs(top))
    return top, vector, residual, scale


def tracked_top(model: Model, theta: FloatArray, warm: FloatArray, nudge: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(S̃(θ), its unit Ritz vector) per row, tracked from the previous state's vector
    ``warm`` (see module doc): start at warm + TRACK_NUDGE·``nudge`` (a unit vector shared
    by the rows), two-step Lanczos restarted from its Ritz vector until the residual is at
    most TRACK_RESIDUAL × scale, at most TRACK_PASSES passes; rows still above it, or
    without a usable start, get :func:`exact_top`. Non-finite θ gives NaN (a diverged row)."""
    n = theta.shape[0]
    out = np.full(n, np.nan)
    direction = warm.copy()
    finite = np.isfinite(theta).all(axis=1) & np.isfinite(warm).all(axis=1)
    rows = np.flatnonzero(finite)
    if rows.size == 0:
        return out, direction
    with np.errstate(all="ignore"):
        start = warm[rows] + TRACK_NUDGE * nudge[None, :]
        norms = np.linalg.norm(start, axis=1)
        rows_exact: list[NDArray[np.intp]] = []
        usable = norms > 0.5  # warm is a unit vector once known (zeros before: no estimate)
        start = start / np.where(usable, norms, 1.0)[:, None]
        pending = rows[usable]
        vectors = start[usable]
        previous = start[usable]
        for _ in range(TRACK_PASSES):
            if pending.size == 0:
                break
            top, vectors, residual, scale = two_step_lanczos(model, theta[pending], vectors)
            converged = np.isfinite(top) & np.isfinite(residual) & (residual <= TRACK_RESIDUAL * scale)
            turned = ~(np.abs(np.einsum("nd,nd->n", vectors, previous)) >= TRACK_OVERLAP)
            ok = converged & ~turned
            out[pending[ok]] = top[ok]
            direction[pending[ok]] = vectors[ok]
            keep = ~converged  # converged but turned: exact; not converged: another pass
            lost = pending[converged & turned]
            pending, vectors, previous = pending[keep], vectors[keep], previous[keep]
            rows_exact.append(lost)
        fallback = np.concatenate([rows[~usable], pending, *rows_exact])
    if fallback.size:
        out[fallback], direction[fallback] = exact_top(model, theta[fallback], direction[fallback])
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
    family's ``loss_floor``, ½ mean of the least-squares residual: label noise or
    labels no linear map fits), else 0 (deep: L = ½(f − Φ)² reaches 0; relu: no known floor)."""
    return float(getattr(model, "loss_floor", 0.0))


class ParameterVectorDynamics:
    """GD (``batch_size`` 0 or n) or mini-batch SGD on θ over ``model`` (see module doc).

    ``sharpness``: ``exact`` (default: the exact S at every state, whatever rule the
    driver runs) or ``tracked`` (exact at θ_0 and at the state where ``rule`` retires a
    trajectory, the tracked estimate elsewhere; sweeps run it, since the exact per-step
    eigvalsh costs ~50 GD steps). Tracked needs the run's ``rule``: the driver must run
    with the same one (checked in :meth:`tolerance`)."""

    def __init__(
        self,
        model: Model,
        data_size: int | None = None,
        *,
        sharpness: SharpnessMode = "exact",
        rule: StopRule | None = None,
    ) -> None:
        if sharpness not in ("exact", "tracked"):
            raise ValueError(f"sharpness must be exact or tracked, got {sharpness!r}")
        if sharpness == "tracked" and rule is None:
            raise ValueError("tracked sharpness needs the run's stop rule (to be exact where rows stop)")
        self.model = model
        self.data_size = data_size  # n of a data family's data set (for mini-batches); None: GD only
        self.sharpness = sharpness
        self.rule = rule
        self._nudges: FloatArray | None = None

    @property
    def name(self) -> str:
        return "parameter-vector"

    def nudge(self, t: int) -> FloatArray:
        """The fixed pseudo-random unit vector of step t (one of :data:`NUDGES`, shared by all rows)."""
        if self._nudges is None:
            self._nudges = _random_unit((NUDGES, self.model.size), 7919 + self.model.size)
        nudge: FloatArray = self._nudges[t % NUDGES]
        return nudge

    def start(self, state: ThetaState, params: ThetaParams) -> ThetaState:
        top = exact_top if self.sharpness == "tracked" else top_eigenvalue
        sharpness, direction = top(self.model, state.theta, state.direction)
        return state._replace(sharpness=sharpness, direction=direction)

    def observe(self, state: ThetaState, params: ThetaParams) -> Observation:
        theta = state.theta
        loss = self.model.loss(theta)
        eps = self.model.residual(theta)
        lam = np.einsum("nd,nd->n", theta, theta)
        sharpness = state.sharpness
        obs = Observation(eps, lam, loss, sharpness, params.eta * sharpness)
        if self.sharpness == "exact" or self.rule is None or len(eps) == 0:
            return obs
        # Tracked: the state where the rule retires a row gets the exact S (sharpness_T);
        # t is one number (the working set moves in lock-step) and the stop rule does not
        # read S, so this is the driver's own decision.
        stops = stop_status(obs, self.tolerance(params, self.rule), self.rule, int(state.t[0])) != RUNNING
        at_start = state.t == 0  # S(θ_0) is exact already
        wanted = np.flatnonzero(stops & ~at_start)
        if wanted.size == 0:
            return obs
        sharpness = sharpness.copy()
        sharpness[wanted] = top_eigenvalue(self.model, theta[wanted], state.direction[wanted])[0]
        return obs._replace(sharpness=sharpness, eta_sharpness=params.eta * sharpness)

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
        climbed = np.zeros(theta.shape[0], dtype=bool)
        if self.sharpness == "tracked":
            with np.errstate(all="ignore"):
                climbed = ~(self.model.loss(theta) <= obs.loss)
            sharpness, direction = self._tracked(theta, state.direction, params.eta, climbed | state.climbed, t)
        else:
            sharpness, direction = top_eigenvalue(self.model, theta, state.direction)
        u = np.zeros(theta.shape[0])  # unused: Q is measured from θ (measured_log_q)
        return ThetaState(theta, state.q0, direction, sharpness, state.t + 1, climbed), Step(u, {})

    def _tracked(
        self, theta: FloatArray, warm: FloatArray, eta: FloatArray, unsettled: NDArray[np.bool_], t: int
    ) -> tuple[FloatArray, FloatArray]:
        """S per row in tracked mode: :func:`tracked_top` where GD is settled (the loss fell
        on this step and the one before) and the estimate is clear of the edge of stability
        (η·S̃ <= :data:`TRACK_EDGE`); :func:`exact_top` elsewhere: where GD oscillates or
        climbs the top eigenvalues cross from step to step and a warm start can hold on
        to the wrong one, and at η·S near 2 (eos_steps) the value must be right."""
        sharpness, direction = np.full(len(theta), np.nan), warm.copy()
        calm = np.flatnonzero(~unsettled)
        if calm.size:
            sharpness[calm], direction[calm] = tracked_top(self.model, theta[calm], warm[calm], self.nudge(t))
        with np.errstate(invalid="ignore"):
            exact = np.flatnonzero(unsettled | ~(eta * sharpness <= TRACK_EDGE))
        exact = exact[np.isfinite(theta[exact]).all(axis=1)]
        if exact.size:
            sharpness[exact], direction[exact] = exact_top(self.model, theta[exact], warm[exact])
        return sharpness, direction

    def tolerance(self, params: ThetaParams, rule: StopRule) -> FloatArray:
        """loss_floor(model) + loss_tol per trajectory: a model with a loss floor (the vector
        family on noisy labels) converges when L is within loss_tol of the floor, which
        L = ½ε² never goes below (without it such a row would always end at max_steps)."""
        if self.rule is not None and rule != self.rule:
            raise ValueError(f"the dynamics tracks under {self.rule}, the driver runs {rule}")
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
    "NUDGES",
    "TRACKED_RTOL",
    "TRACK_EDGE",
    "TRACK_NUDGE",
    "TRACK_OVERLAP",
    "TRACK_PASSES",
    "TRACK_RESIDUAL",
    "ParameterVectorDynamics",
    "SharpnessMode",
    "ThetaParams",
    "ThetaState",
    "exact_top",
    "lanczos_top",
    "loss_floor",
    "minibatch_rows",
    "run_parameters",
    "start_state",
    "top_eigenvalue",
    "tracked_top",
    "two_step_lanczos",
]
