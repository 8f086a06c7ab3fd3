"""Mini-batch and label-noise SGD on the scalar data set, exactly, on the 2-D map.

A batch B_t of the data set (:mod:`lin2net.dynamics.sgd.data`) gives the gradients g_t·b
for a and g_t·a for b, with g_t = s_t (a·b) − c_t, s_t = mean_{B_t} x², c_t =
mean_{B_t} x (y + ξ). With m = a·b, ε = m − Φ, λ = ‖a‖² + ‖b‖² one step is

    ε' = ε − η g λ + η² g² m,   λ' = (1 + η² g²) λ − 4 η g m,   Q_i' = (1 − η² g²) Q_i,

and g = s_t ε − r_t with r_t = mean_{B_t} x ν + mean_{B_t} x ξ: O(1) per step
after the batch sums, whatever d. Like GD (see :class:`lin2net.dynamics.gd.reference.ReducedState`)
the step multiplies a + b by 1 − u and a − b by 1 + u, now with u = ηg, so the
state is carried as GD's (ε, S, P), S = ‖a + b‖², P = ‖a − b‖², with GD's
increment updates and re-derivation (:class:`SGDReducedState`), and the Q factors
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
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from lin2net.dynamics.gd.reference import (
    IntArray,
    SplitState,
    Status,
    StopRule,
    TrajectoryResults,
    compensated_add,
    compensated_value,
    log_q_term,
    rederive,
)
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
from lin2net.theory.closed_forms import FloatArray, imbalance, reduced_coordinates

SAMPLINGS = ("without_replacement", "with_replacement")
WINDOW_COLUMNS = ("q_ratio_window", "log_q_ratio_window", "sharpness_window", "loss_window", "lambda_window")


@dataclass(frozen=True)
class SGDParameters:
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
        return SGDParameters(*(getattr(self, name)[rows] for name in self.__dataclass_fields__))


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


def finish(base: TrajectoryResults, window_sums: FloatArray, window_count: IntArray, noise_floor: float) -> SGDResults:
    """SGDResults from GD's columns and the window sums of (Q/Q0, log Q/Q0, S, loss, λ), shape (5, n)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        means = window_sums / window_count[None, :]  # 0/0 = NaN: stopped before the window
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


class SGDState(Protocol):
    """A batch of trajectories that the SGD driver can observe, step and shrink."""

    def start(self, phi: FloatArray) -> None:
        """Called once by the driver before the first observation, with Φ per trajectory."""

    def residual_and_scale(self) -> tuple[FloatArray, FloatArray]:
        """Current full-batch residual ε and scale λ, each of shape (k,)."""

    def gradient_factor(self, batch: Batch, phi: FloatArray) -> FloatArray:
        """g with gradients g·b for a and g·a for b, shape (k,)."""

    def step(self, g: FloatArray, eta: FloatArray, phi: FloatArray, s: FloatArray, r: FloatArray) -> None:
        """a ← a − η g b, b ← b − η g a for every trajectory (g = sε − r: the batch's s and r)."""

    def keep(self, mask: NDArray[np.bool_]) -> None:
        """Drop the trajectories where ``mask`` is False."""

    def measured_log_q_ratio(self, rows: NDArray[np.bool_]) -> FloatArray | None:
        """log Q(t)/Q(0) from the vectors, or None (then the product formula is used)."""


class SGDReducedState(SplitState):
    """(ε, S, P) stepped with the exact map of the module doc: GD's state and updates
    (:class:`lin2net.dynamics.gd.reference.ReducedState`) with u = ηg in place of ηε.

    With u = ηg and m = ε + Φ one step is

        S' = S + S·u(u − 2),   P' = P + P·u(u + 2),   λ = (S + P)/2,
        ε' = ε + (ε·(s·k − ηs·λ) + r·(ηλ − k)),   k = u·ηm

    (= ε − ηgλ + η²g²m with g = sε − r), then the largest in magnitude of S, P
    and 4|ε| is re-derived from the other two by S − P = 4(ε + Φ). With s = 1 and
    r = 0 these are ReducedState.step's operations, bit for bit. The state, its
    start from ``s0``/``p0`` and the rest are :class:`lin2net.dynamics.gd.reference.SplitState`'s.
    """

    def gradient_factor(self, batch: Batch, phi: FloatArray) -> FloatArray:
        g: FloatArray = batch.s * self.eps - (batch.r + batch.noise)
        return g

    def step(self, g: FloatArray, eta: FloatArray, phi: FloatArray, s: FloatArray, r: FloatArray) -> None:
        self.start(phi)
        assert self.s is not None and self.p is not None
        eps, lam = self.eps, self.lam
        u = eta * g
        s_next = self.s + self.s * (u * (u - 2.0))
        p_next = self.p + self.p * (u * (u + 2.0))
        k = u * (eta * (eps + phi))
        # ε' − ε = u(u·m − λ), written with g = sε − r so that for s = 1, r = 0 the
        # operations are GD's: ε·(k − ηλ), plus r·(…) = 0, which adds nothing.
        eps_next = eps + (eps * (s * k - (eta * s) * lam) + r * (eta * lam - k))
        self.eps, self.s, self.p = rederive(eps_next, s_next, p_next, phi)


class SGDFullState:
    """The vectors a, b of shape (k, d), with g computed from the batch's own data:
    g = mean_{i∈B} x_i (a·b x_i − y_i) − mean_B x ξ, y_i = Φ x_i + ν_i."""

    def __init__(self, a: FloatArray, b: FloatArray, phi: FloatArray, data: DataSet) -> None:
        self.a = np.array(a, dtype=np.float64)
        self.b = np.array(b, dtype=np.float64)
        self.phi = np.asarray(phi, dtype=np.float64)
        self.data = data
        self.q0 = imbalance(self.a, self.b)

    def start(self, phi: FloatArray) -> None:
        pass

    def residual_and_scale(self) -> tuple[FloatArray, FloatArray]:
        eps, lam, _ = reduced_coordinates(self.a, self.b, 0.0)
        return eps - self.phi, lam

    def gradient_factor(self, batch: Batch, phi: FloatArray) -> FloatArray:
        m = np.einsum("kd,kd->k", self.a, self.b)
        x = self.data.x[batch.index]
        y = phi[:, None] * x + self.data.nu[batch.index]
        per_example = np.where(batch.valid, x * (m[:, None] * x - y), 0.0)
        g: FloatArray = per_example.sum(axis=1) / batch.valid.sum(axis=1) - batch.noise
        return g

    def step(self, g: FloatArray, eta: FloatArray, phi: FloatArray, s: FloatArray, r: FloatArray) -> None:
        scale = (eta * g)[:, None]
        self.a, self.b = self.a - scale * self.b, self.b - scale * self.a

    def keep(self, mask: NDArray[np.bool_]) -> None:
        self.a, self.b, self.q0, self.phi = self.a[mask], self.b[mask], self.q0[mask], self.phi[mask]

    def measured_log_q_ratio(self, rows: NDArray[np.bool_]) -> FloatArray | None:
        log_ratio: FloatArray = np.log(imbalance(self.a[rows], self.b[rows]) / self.q0[rows])
        return log_ratio


def integrate_sgd(
    state: SGDState,
    params: SGDParameters,
    data: DataSet,
    sampling: str,
    rule: StopRule,
    window: int,
) -> SGDResults:
    """Run every trajectory of ``state`` to its stopping time (see module doc)."""
    eps, _ = state.residual_and_scale()
    n = eps.shape[0]
    out = TrajectoryResults.empty(n)
    sums = np.zeros((5, n))
    count = np.zeros(n, dtype=np.int64)
    index = np.arange(n)
    state.start(params.phi)
    log_q = np.zeros(n)
    log_q_error = np.zeros(n)  # Neumaier's running compensation of the log_q sum
    sum_eps2 = np.zeros(n)
    max_eta_sharp = np.full(n, -np.inf)
    eos_steps = np.zeros(n, dtype=np.int64)
    max_abs_eps = np.zeros(n)
    first = window_start(rule.max_steps, window)
    tolerance = stopping_tolerance(params, data, sampling, rule.loss_tol)
    t = 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while index.size:
            p = params.take(index)
            eps, lam = state.residual_and_scale()
            sharp = full_sharpness(eps, lam, p.phi)
            eta_sharp = p.eta * sharp
            np.fmax(max_eta_sharp, eta_sharp, out=max_eta_sharp)
            if t > first:
                measured = state.measured_log_q_ratio(np.ones(index.size, dtype=np.bool_))
                current = compensated_value(log_q, log_q_error) if measured is None else measured
                for row, value in enumerate((np.exp(current), current, sharp, 0.5 * eps * eps + data.noise_floor, lam)):
                    sums[row, index] += value
                count[index] += 1
            converged = 0.5 * eps * eps <= tolerance[index]
            diverged = ~converged & ~(
                (np.abs(eps) <= rule.divergence_threshold) & (np.abs(lam) <= rule.divergence_threshold)
            )
            done = converged | diverged if t < rule.max_steps else np.ones_like(converged)
            if done.any():
                status = np.where(converged, Status.CONVERGED, np.where(diverged, Status.DIVERGED, Status.MAX_STEPS))
                rows = index[done]
                out.status[rows] = status[done]
                out.steps[rows] = t
                out.eps_T[rows] = eps[done]
                out.lambda_T[rows] = lam[done]
                out.sharpness_T[rows] = sharp[done]
                measured = state.measured_log_q_ratio(done)
                total = compensated_value(log_q[done], log_q_error[done])
                out.log_q_ratio[rows] = total if measured is None else measured
                out.sum_eps2[rows] = sum_eps2[done]
                out.max_eta_sharpness[rows] = max_eta_sharp[done]
                out.eos_steps[rows] = eos_steps[done]
                out.max_abs_eps[rows] = max_abs_eps[done]
                running = ~done
                if not running.any():
                    break
                state.keep(running)
                index, log_q, log_q_error = index[running], log_q[running], log_q_error[running]
                sum_eps2 = sum_eps2[running]
                max_eta_sharp, eos_steps = max_eta_sharp[running], eos_steps[running]
                max_abs_eps = max_abs_eps[running]
                eps, eta_sharp = eps[running], eta_sharp[running]
                p = params.take(index)
            batch = sample_batch(data, p, t, sampling)
            g = state.gradient_factor(batch, p.phi)
            eta_g = p.eta * g
            eos_steps += eta_sharp > 2.0
            log_q, log_q_error = compensated_add(log_q, log_q_error, log_q_term(eta_g))
            sum_eps2 += eps * eps
            np.fmax(max_abs_eps, np.abs(eps), out=max_abs_eps)
            state.step(g, p.eta, p.phi, batch.s, batch.r + batch.noise)
            t += 1
    return finish(out, sums, count, data.noise_floor)


@dataclass(frozen=True)
class SGDTrace:
    """One trajectory step by step, arrays of shape (T + 1,) over states t = 0…T
    (``g``, ``s``, ``r`` of shape (T,): the step taken from state t)."""

    t: IntArray
    eps: FloatArray
    lam: FloatArray
    loss: FloatArray
    log_q_ratio: FloatArray
    sharpness: FloatArray
    g: FloatArray
    s: FloatArray
    r: FloatArray
    status: Status


def trace_sgd(
    eps0: float,
    lam0: float,
    params: SGDParameters,
    data: DataSet,
    sampling: str,
    rule: StopRule,
    *,
    s0: float | None = None,
    p0: float | None = None,
) -> SGDTrace:
    """Re-simulate one trajectory (``params`` of length 1) and keep every state.

    Uses the same batches and map as :func:`integrate_sgd` (and the same S0, P0:
    by default λ0 ± 2(ε0 + Φ), as :class:`SGDReducedState`), so its final state is
    that row of a sweep.
    """
    state = SGDReducedState(
        np.array([eps0]),
        np.array([lam0]),
        None if s0 is None else np.array([s0]),
        None if p0 is None else np.array([p0]),
    )
    state.start(params.phi)
    tolerance = float(stopping_tolerance(params, data, sampling, rule.loss_tol)[0])
    log_q, log_q_error = np.zeros(1), np.zeros(1)
    eps_list, lam_list, log_q_list = [float(state.eps[0])], [float(state.lam[0])], [0.0]
    g_list: list[float] = []
    s_list: list[float] = []
    r_list: list[float] = []
    status = Status.MAX_STEPS
    t = 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while True:
            eps, lam = state.residual_and_scale()
            if 0.5 * eps[0] * eps[0] <= tolerance:
                status = Status.CONVERGED
                break
            if not (abs(eps[0]) <= rule.divergence_threshold and abs(lam[0]) <= rule.divergence_threshold):
                status = Status.DIVERGED
                break
            if t >= rule.max_steps:
                break
            batch = sample_batch(data, params, t, sampling)
            g = state.gradient_factor(batch, params.phi)
            log_q, log_q_error = compensated_add(log_q, log_q_error, log_q_term(params.eta * g))
            log_q_list.append(float(compensated_value(log_q, log_q_error)[0]))
            state.step(g, params.eta, params.phi, batch.s, batch.r + batch.noise)
            g_list.append(float(g[0]))
            s_list.append(float(batch.s[0]))
            r_list.append(float((batch.r + batch.noise)[0]))
            eps_list.append(float(state.eps[0]))
            lam_list.append(float(state.lam[0]))
            t += 1
    eps_arr, lam_arr = np.array(eps_list), np.array(lam_list)
    return SGDTrace(
        t=np.arange(len(eps_list), dtype=np.int64),
        eps=eps_arr,
        lam=lam_arr,
        loss=0.5 * eps_arr * eps_arr + data.noise_floor,
        log_q_ratio=np.array(log_q_list),
        sharpness=full_sharpness(eps_arr, lam_arr, np.full(eps_arr.shape, params.phi[0])),
        g=np.array(g_list),
        s=np.array(s_list),
        r=np.array(r_list),
        status=status,
    )
