"""Mini-batch and label-noise SGD on the scalar data set, exactly, on the 2-D map.

A batch B_t of the data set (:mod:`lin2net.dynamics.sgd.data`) gives the gradients g_t·b
for a and g_t·a for b, with g_t = s_t (a·b) − c_t, s_t = mean_{B_t} x², c_t =
mean_{B_t} x (y + ξ). With m = a·b, ε = m − Φ, λ = ‖a‖² + ‖b‖² one step is

    ε' = ε − η g λ + η² g² m,   λ' = (1 + η² g²) λ − 4 η g m,   Q_i' = (1 − η² g²) Q_i,

and g = s_t ε − r_t with r_t = mean_{B_t} x ν + mean_{B_t} x ξ: O(1) per step
after the batch sums, whatever d. Like GD (see :class:`lin2net.dynamics.gd.reference.ReducedState`)
the step multiplies a + b by 1 − u and a − b by 1 + u, now with u = ηg, so the
state is carried as GD's (ε, S, P), S = ‖a + b‖², P = ‖a − b‖², with GD's
increment updates and re-derivation (:func:`sgd_map`), and the Q factors
|1 − u²| enter log Q as GD's do (:func:`lin2net.dynamics.gd.reference.log_q_term`, summed
with Neumaier's compensation). With s_t = 1 and r_t = 0 (x = ones, or a full
batch of interpolating data, no label noise) a step is GD's arithmetic, bit for bit.

Sampling (random numbers from :mod:`lin2net.kernels.counter_rng`, keyed by trajectory
and step):

* ``without_replacement``: the batch of step t is the first ``batch_size``
  positions of a partial Fisher–Yates shuffle of 0…n−1 (position k swapped with
  a uniform position in [k, n), draw 2 + k), started afresh from the identity
  at every step; each step's batch is a uniform random subset, independent of
  the others. ``batch_size = n`` is the full batch in index order (no draws):
  full-batch GD on the data.
* ``with_replacement``: position k is a uniform index in [0, n) (draw 2 + k).

Label noise ξ, i.i.d. N(0, σ²) per sampled example and step, enters only
through mean_B x ξ, which given the batch is exactly N(0, σ² s_t / |B|): one
standard normal per step scaled by σ √(s_t / |B|) has exactly the law of the
per-example sum. The normals come in Box–Muller pairs: draws 0 and 1 of an even
step 2i give √(−2 ln u₁) cos(2πu₂) for step 2i and √(−2 ln u₁) sin(2πu₂) for
step 2i + 1, two independent standard normals (draws 0 and 1 of odd steps are
unused), so every step's normal is still a function of (trajectory, step) alone.

Stopping is GD's (see :mod:`lin2net.dynamics.gd.reference`) on the full-batch residual ε:
converged once ½ε² <= loss_tol (the excess full-batch loss), diverged, or
max_steps; but only where the minimum is a fixed point of every step (no label
noise, and interpolating data or the full batch): a noisy trajectory that
touches loss_tol by chance leaves it again, so it runs to max_steps (or
diverges), see :func:`stopping_tolerance`. Window averages cover the states t with max_steps − window < t <= T
(NaN for a trajectory that stopped before the window).

:func:`integrate_sgd` is the NumPy reference; the reduced state steps (ε, S, P),
the full state steps the vectors (a, b) on the same batches (computing g from
the vectors and the batch's (x_i, y_i) directly) as a cross-check.
:mod:`lin2net.dynamics.sgd.kernel` is the fast twin of the reduced path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from lin2net.dynamics.driver import History, TrajectoryResults, run
from lin2net.dynamics.gd.reference import (
    FullState,
    ReducedState,
    measured_log_q,
    rederive,
    residual_and_scale,
    start_split,
    start_vectors,
)
from lin2net.dynamics.observers import WINDOW_COLUMNS
from lin2net.dynamics.protocol import Observation, Status, Step, StopRule, take
from lin2net.dynamics.sgd.data import DataSet
from lin2net.kernels.counter_rng import (
    NOISE_DRAWS,
    UIntArray,
    below,
    cos_kernel,
    log_reduced,
    open_unit,
    sin_kernel,
    step_counter,
    turn_parts,
    word,
)
from lin2net.theory.closed_forms import FloatArray

IntArray = NDArray[np.int64]
__all__ = ["WINDOW_COLUMNS", "SGD", "SGDParameters", "SGDResults", "integrate_sgd", "trace_sgd"]


class SGDParameters(NamedTuple):
    """Per-trajectory parameters, every array of shape (n,): stepsize, target,
    batch size, label-noise std and counter-RNG key (see counter_rng)."""

    eta: FloatArray
    phi: FloatArray
    batch_size: IntArray
    label_noise: FloatArray
    key: UIntArray

    @classmethod
    def broadcast(
        cls, n: int, eta: float, phi: float, batch_size: int, label_noise: float, key: UIntArray
    ) -> SGDParameters:
        """Scalars of one cell repeated over its n trajectories."""
        return cls(
            eta=np.full(n, eta, dtype=np.float64),
            phi=np.full(n, phi, dtype=np.float64),
            batch_size=np.full(n, batch_size, dtype=np.int64),
            label_noise=np.full(n, label_noise, dtype=np.float64),
            key=np.asarray(key, dtype=np.uint64),
        )

    def take(self, rows: IntArray) -> SGDParameters:
        return take(self, rows)


@dataclass
class SGDResults(TrajectoryResults):
    """GD's per-trajectory outcome plus the SGD columns, every array of shape (n,).

    ``loss_T`` is the full-batch loss at T, ½ε_T² + ½ mean(ν²); the ``*_window``
    arrays are means over the final window (see the module doc).
    """

    loss_T: FloatArray
    q_ratio_window: FloatArray
    log_q_ratio_window: FloatArray
    sharpness_window: FloatArray
    loss_window: FloatArray
    lambda_window: FloatArray


def window_start(max_steps: int, window: int) -> int:
    """States t > this value are in the window."""
    return max_steps - window


def finish(base: TrajectoryResults, means: FloatArray, noise_floor: float) -> SGDResults:
    """SGDResults from GD's columns and the window means of (Q/Q0, log Q/Q0, S, loss, λ),
    shape (5, n) (NaN for a trajectory that stopped before the window)."""
    fields = {name: getattr(base, name) for name in TrajectoryResults.__dataclass_fields__}
    return SGDResults(
        **fields,
        loss_T=0.5 * base.eps_T * base.eps_T + noise_floor,
        **{name: means[i] for i, name in enumerate(WINDOW_COLUMNS)},
    )


def stopping_tolerance(params: SGDParameters, data: DataSet, sampling: str, loss_tol: float) -> FloatArray:
    """Per trajectory: ``loss_tol`` where SGD can converge, −inf where it cannot.

    SGD stays at ε = 0 only if every batch's gradient vanishes there: no label
    noise, and the data interpolate (noise-free) or the batch is the full data
    set in index order. Elsewhere ½ε² <= −inf is never true: no chance stops.
    """
    full_batch = (params.batch_size == data.n) & (sampling == "without_replacement")
    fixed_point = (params.label_noise == 0) & (full_batch | (not np.any(data.x_nu)))
    tol: FloatArray = np.where(fixed_point, loss_tol, -np.inf)
    return tol


def full_sharpness(eps: FloatArray, lam: FloatArray, phi: FloatArray) -> FloatArray:
    """Sharpness of the full-batch loss ½ε² + const (closed_forms.sharpness with a Φ per row;
    same operations in the same order as the compiled kernel)."""
    disc = lam * lam + 8.0 * eps * (eps + phi) + 4.0 * eps * eps
    top: FloatArray = 0.5 * (lam + np.sqrt(np.maximum(disc, 0.0)))
    return top


@dataclass(frozen=True)
class Batch:
    """One step's batches for a set of trajectories: ``index`` (k, Bmax) data
    indices, valid where ``valid``; s = mean_B x², r = mean_B x ν, and the label-noise
    term mean_B x ξ, each of shape (k,)."""

    index: IntArray
    valid: NDArray[np.bool_]
    s: FloatArray
    r: FloatArray
    noise: FloatArray


_MANTISSA = np.int64(0x000FFFFFFFFFFFFF)
_ONE_BITS = np.int64(0x3FF0000000000000)


def split_unit(u: FloatArray) -> tuple[FloatArray, FloatArray]:
    """u = m · 2^k with m in [√2/2, √2), for normal u > 0 (fdlibm's reduction; as
    lin2net.dynamics.gd.kernel._split)."""
    bits = u.view(np.int64)
    mantissa = bits & _MANTISSA
    i = (mantissa + np.int64(0x00095F6400000000)) & np.int64(0x0010000000000000)
    m: FloatArray = (mantissa | (i ^ _ONE_BITS)).view(np.float64)
    k: FloatArray = ((bits >> 52) - 1023 + (i >> 52)).astype(np.float64)
    return m, k


def standard_normal(word1: UIntArray, word2: UIntArray, sine: NDArray[np.bool_] | bool = False) -> FloatArray:
    """Box–Muller √(−2 ln u₁) cos(2π u₂), or √(−2 ln u₁) sin(2π u₂) where ``sine``, from
    two words (u = open_unit(word)), with the arithmetic ln, cos and sin of counter_rng:
    the same bits as the compiled kernel. The cosine and the sine of one pair of words
    are two independent standard normals."""
    m, k = split_unit(open_unit(word1))
    radius = np.sqrt(-2.0 * log_reduced(m, k))
    octant, x = turn_parts(word2)
    cos_x, sin_x = cos_kernel(x), sin_kernel(x)
    odd = (octant & np.uint64(1)) == 1
    cos_phi = np.where(odd, sin_x, cos_x)  # φ = 2πu₂ − qπ/2 in [0, π/2)
    sin_phi = np.where(odd, cos_x, sin_x)
    quadrant = (octant >> np.uint64(1)) & np.uint64(3)
    cosine = np.select([quadrant == 0, quadrant == 1, quadrant == 2], [cos_phi, -sin_phi, -cos_phi], sin_phi)
    sin_turn = np.select([quadrant == 0, quadrant == 1, quadrant == 2], [sin_phi, cos_phi, -sin_phi], -cos_phi)
    z: FloatArray = radius * np.where(sine, sin_turn, cosine)
    return z


def _draw(keys: UIntArray, counters: UIntArray, j: int) -> UIntArray:
    """Draw j of each trajectory's step (uint64 arrays throughout: NumPy scalars warn on wrap-around)."""
    words: UIntArray = word(keys, counters, np.full(keys.shape, j, dtype=np.uint64))
    return words


def sample_batch(data: DataSet, params: SGDParameters, t: int, sampling: str) -> Batch:
    """The batch of step ``t`` of each trajectory of ``params`` (see module doc).

    Sums run over batch positions k = 0, 1, … in order, as in the kernel.
    """
    k_rows = params.key.shape[0]
    n = data.n
    size = params.batch_size
    keys = params.key
    counters = step_counter(np.full(k_rows, t, dtype=np.uint64))
    width = int(size.max()) if k_rows else 0
    index = np.zeros((k_rows, width), dtype=np.int64)
    full = (size == n) & (sampling == "without_replacement")
    if sampling == "with_replacement":
        for k in range(width):
            index[:, k] = below(_draw(keys, counters, NOISE_DRAWS + k), np.uint64(n)).astype(np.int64)
    else:
        perm = np.tile(np.arange(n, dtype=np.int64), (k_rows, 1))
        rows = np.arange(k_rows)
        for k in range(width):
            pick = k + below(_draw(keys, counters, NOISE_DRAWS + k), np.uint64(n - k)).astype(np.int64)
            pick = np.where(k < size, pick, k)
            chosen = perm[rows, pick]
            perm[rows, pick] = perm[rows, k]
            perm[rows, k] = chosen
        index = perm[:, :width]
        index[full] = np.arange(width)
    valid = np.arange(width)[None, :] < size[:, None]
    s = np.zeros(k_rows)
    r = np.zeros(k_rows)
    for k in range(width):
        s += np.where(valid[:, k], data.x2[index[:, k]], 0.0)
        r += np.where(valid[:, k], data.x_nu[index[:, k]], 0.0)
    s /= size
    r /= size
    noise = np.zeros(k_rows)
    noisy = params.label_noise > 0
    if noisy.any():
        # Steps 2i and 2i + 1 share the Box–Muller pair of words 0, 1 of step 2i: cosine, sine.
        pair = step_counter(np.full(int(noisy.sum()), t - t % 2, dtype=np.uint64))
        z = standard_normal(_draw(keys[noisy], pair, 0), _draw(keys[noisy], pair, 1), sine=t % 2 == 1)
        noise[noisy] = params.label_noise[noisy] * z * np.sqrt(s[noisy] / size[noisy])
    return Batch(index=index, valid=valid, s=s, r=r, noise=noise)


def gradient_factor(state: ReducedState | FullState, batch: Batch, phi: FloatArray, data: DataSet) -> FloatArray:
    """g with gradients g·b for a and g·a for b, shape (k,): sε − r from the reduced
    state; from the vectors, g = mean_{i∈B} x_i (a·b x_i − y_i) − mean_B x ξ,
    y_i = Φ x_i + ν_i (the batch's own data)."""
    if isinstance(state, FullState):
        m = np.einsum("kd,kd->k", state.a, state.b)
        x = data.x[batch.index]
        y = phi[:, None] * x + data.nu[batch.index]
        per_example = np.where(batch.valid, x * (m[:, None] * x - y), 0.0)
        g_full: FloatArray = per_example.sum(axis=1) / batch.valid.sum(axis=1) - batch.noise
        return g_full
    g: FloatArray = batch.s * state.eps - (batch.r + batch.noise)
    return g


def sgd_map(
    state: ReducedState, g: FloatArray, eta: FloatArray, phi: FloatArray, s: FloatArray, r: FloatArray, lam: FloatArray
) -> ReducedState:
    """(ε, S, P) stepped with the exact map of the module doc: GD's state and updates
    (:func:`lin2net.dynamics.gd.reference.gd_map`) with u = ηg in place of ηε.

    With u = ηg and m = ε + Φ one step is

        S' = S + S·u(u − 2),   P' = P + P·u(u + 2),   λ = (S + P)/2,
        ε' = ε + (ε·(s·k − ηs·λ) + r·(ηλ − k)),   k = u·ηm

    (= ε − ηgλ + η²g²m with g = sε − r), then the largest in magnitude of S, P
    and 4|ε| is re-derived from the other two by S − P = 4(ε + Φ). With s = 1 and
    r = 0 these are GD's operations, bit for bit.
    """
    assert state.s is not None and state.p is not None
    eps = state.eps
    u = eta * g
    s_next = state.s + state.s * (u * (u - 2.0))
    p_next = state.p + state.p * (u * (u + 2.0))
    k = u * (eta * (eps + phi))
    # ε' − ε = u(u·m − λ), written with g = sε − r so that for s = 1, r = 0 the
    # operations are GD's: ε·(k − ηλ), plus r·(…) = 0, which adds nothing.
    eps_next = eps + (eps * (s * k - (eta * s) * lam) + r * (eta * lam - k))
    eps_fixed, s_fixed, p_fixed = rederive(eps_next, s_next, p_next, phi)
    return ReducedState(eps_fixed, None, s_fixed, p_fixed)


@dataclass(frozen=True)
class SGD:
    """Mini-batch and label-noise SGD on ``data`` as a dynamics of the protocol: the
    batches of ``sampling``, the final window of ``window`` steps (see module doc)."""

    data: DataSet
    sampling: str
    window_length: int
    name: str = "sgd"

    def start(self, state: ReducedState | FullState, params: SGDParameters) -> ReducedState | FullState:
        return start_vectors(state) if isinstance(state, FullState) else start_split(state, params.phi)

    def observe(self, state: ReducedState | FullState, params: SGDParameters) -> Observation:
        eps, lam = residual_and_scale(state, params.phi)
        sharp = full_sharpness(eps, lam, params.phi)
        return Observation(eps, lam, 0.5 * eps * eps + self.data.noise_floor, sharp, params.eta * sharp)

    def step(
        self, state: ReducedState | FullState, params: SGDParameters, t: int, obs: Observation
    ) -> tuple[ReducedState | FullState, Step]:
        batch = sample_batch(self.data, params, t, self.sampling)
        g = gradient_factor(state, batch, params.phi, self.data)
        u = params.eta * g
        r = batch.r + batch.noise
        extras = {"g": g, "s": batch.s, "r": r}
        if isinstance(state, FullState):
            scale = u[:, None]
            return FullState(state.a - scale * state.b, state.b - scale * state.a, state.q0), Step(u, extras)
        return sgd_map(state, g, params.eta, params.phi, batch.s, r, obs.lam), Step(u, extras)

    def tolerance(self, params: SGDParameters, rule: StopRule) -> FloatArray:
        return stopping_tolerance(params, self.data, self.sampling, rule.loss_tol)

    def measured_log_q(self, state: ReducedState | FullState, product: FloatArray | None = None) -> FloatArray | None:
        return measured_log_q(state, product)

    def window(self, rule: StopRule) -> int | None:
        return window_start(rule.max_steps, self.window_length)


def integrate_sgd(
    state: ReducedState | FullState,
    params: SGDParameters,
    data: DataSet,
    sampling: str,
    rule: StopRule,
    window: int,
) -> SGDResults:
    """Run every trajectory of ``state`` to its stopping time with SGD (the driver's
    final-rows mode; see module doc)."""
    outcome = run(SGD(data, sampling, window), state, params, rule)
    assert outcome.window is not None
    return finish(outcome.results, outcome.window, data.noise_floor)


def trace_sgd(
    state: ReducedState, params: SGDParameters, data: DataSet, sampling: str, rule: StopRule, window: int
) -> tuple[History, Status]:
    """One trajectory (``params`` of length 1) step by step: the driver's every-step
    mode, so its last state is that row of a sweep."""
    outcome = run(SGD(data, sampling, window), state, params, rule, record="every")
    assert outcome.history is not None
    return outcome.history, Status(int(outcome.results.status[0]))
