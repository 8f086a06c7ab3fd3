"""Compiled (numba) twin of :func:`lin2net.dynamics.gd.reference.integrate` on the reduced map.

Same map on (ε, S, P), same stopping rule, same diagnostics as the NumPy
reference driver (read that module first; this one only explains how it is
made fast):

* every trajectory is an independent 2-D map, so one worker per thread
  (``prange``) takes the next ``CLAIM`` unclaimed trajectories from a shared
  atomic counter whenever it runs out: no thread waits on a slower one, and
  since trajectories never interact the results do not depend on the thread
  count. η and Φ are per trajectory, so one call may hold many grid cells;
* a compiled loop that advances one trajectory at a time is latency bound
  (each step waits on the previous one). Instead each thread advances
  ``LANES`` trajectories in lock-step with branch-free masked updates, so the
  compiler puts the lanes into SIMD registers (``LANES`` is four registers'
  worth for the CPU it compiles for, twice the kit's: 32 with AVX-512, 16 with
  AVX2; see :data:`LANES`). Every ``STEPS_PER_REFILL`` steps the lanes that
  stopped are written out and refilled, and the ``cancel`` flag is polled;
* a lane that stops keeps its state frozen at its stopping time T; status,
  sharpness and the outputs are read back from the frozen state with the
  same expressions as the reference, in the same order of operations.

The state, the stopping decisions and every output but one are bitwise equal
to the NumPy driver (IEEE arithmetic in the same order, no fast-math, no
contraction into FMA). The one difference is ``log_q_ratio``: the reference
sums T logarithms (compensated), this kernel multiplies the T exact factors
in double-double and takes one logarithm at T (see :func:`_run_lanes`); they
agree to ~1e-15 relative.

Lane sizing, the claim of trajectories, the double-double Q product, the
stop rule, the status write-out, the cancel flag and the launcher (a worker
thread, so Ctrl-C or a signal handler cancels the kernel within a fraction of
a second) are the kernel kit's (:mod:`lin2net.kernels.kit`); this module holds
GD's step and its lane loop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from lin2net.dynamics.gd.reference import TrajectoryResults, parameter_rows
from lin2net.dynamics.protocol import StopRule
from lin2net.kernels import kit
from lin2net.kernels.kit import (
    JIT,
    KernelCancelled,
    available_threads,
    cancel_flag,
    claim_next,
    exact_factor,
    fetch_add,
    launch,
    log_product,
    poll,
    power_of_two,
    renormalize,
    running,
    stop_status,
    times_factor,
    vector_width,
)
from lin2net.theory.closed_forms import FloatArray, split_scale

__all__ = ["LANES", "KernelCancelled", "available_threads", "integrate_compiled", "vector_width"]

# Trajectories a thread advances in lock-step: four vector registers per lane quantity
# (twice the kit's two), 32 with AVX-512, 16 with AVX2. With two registers (the kit's
# LANES) LLVM keeps every lane quantity in registers across the 16 steps of a block and
# spills a third of them to the stack every step; with four it runs the lane loop over
# the lane array in memory, one vector at a time, whose stores are long done when the
# next step loads them, and takes 1.3x less time per step on AVX-512 and on AVX2
# (issue 19; docs/performance.md, "Threads"). Trajectories never interact, so the
# results do not depend on it.
LANES = 2 * kit.LANES
STEPS_PER_REFILL = 16  # steps between write-out and refill of stopped lanes (and cancel polls)
# Offsets of the lane quantities in the kernel's one lane-state array.
_QUANTITIES = 13
_EPS, _S, _P, _ETA, _PHI, _T, _Q_HI, _Q_LO, _Q_EXP, _SUM_EPS2, _MAX_ETA_SHARP, _MAX_ABS_EPS, _EOS = (
    k * LANES for k in range(_QUANTITIES)
)
_BIG_FACTOR = 2.0**60  # a Q factor above this (|ηε| > 2³⁰) sends the trajectory to _replay_log_q


@njit(inline="always", **JIT)
def _eta_sharpness(eps: float, lam: float, eta: float, phi: float) -> float:
    """η·S(ε, λ), the same operations in the same order as closed_forms.sharpness."""
    disc = lam * lam + 8.0 * eps * (eps + phi) + 4.0 * eps * eps
    disc = 0.0 if disc < 0.0 else disc  # np.maximum(disc, 0): keeps NaN
    return eta * (0.5 * (lam + math.sqrt(disc)))


def converged_bound(loss_tol: float) -> float:
    """The largest double e >= 0 with ½e² <= ``loss_tol`` as the reference computes it,
    fl(fl(0.5·e)·e) (−1 when there is none, +inf when every e qualifies).

    That expression is even in e and non-decreasing on [0, ∞] (each rounding is
    monotone), so ``0.5 * eps * eps <= loss_tol`` holds exactly when
    ``abs(eps) <= converged_bound(loss_tol)``, NaN included (false either way):
    the lane loop tests convergence with one comparison on |ε| it needs anyway."""

    def converged(bits: int) -> bool:
        e = float(np.int64(bits).view(np.float64))
        return 0.5 * e * e <= loss_tol

    infinity = int(np.float64(np.inf).view(np.int64))
    if not converged(0):
        return -1.0
    if converged(infinity):
        return math.inf
    low, high = 0, infinity  # converged(low), not converged(high); doubles >= 0 order as their bits
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if converged(middle) else (low, middle)
    return float(np.int64(low).view(np.float64))


@njit(inline="always", **JIT)
def rederive(eps: float, s: float, p: float, phi: float) -> tuple[float, float, float]:
    """gd.reference.rederive for one lane, branch-free: the largest of S, P, 4|ε|
    re-derived from the other two by S − P = 4(ε + Φ). Shared with the SGD kernel."""
    four_eps = 4.0 * abs(eps)
    derive_eps = (four_eps >= s) & (four_eps >= p)
    s_larger = s >= p
    derive_s = ~derive_eps & s_larger
    derive_p = ~derive_eps & ~s_larger
    four_product = 4.0 * (eps + phi)
    eps_fixed = 0.25 * (s - p) - phi if derive_eps else eps
    s_fixed = p + four_product if derive_s else s
    p_fixed = s - four_product if derive_p else p
    return eps_fixed, s_fixed, p_fixed


@njit(inline="always", **JIT)
def _map_step(
    eps: float, s: float, p: float, lam: float, u: float, eta: float, phi: float
) -> tuple[float, float, float]:
    """One step of the reduced map on (ε, S, P), u = ηε: the same operations in the
    same order as ReducedState.step, re-deriving the largest of S, P, 4|ε|."""
    eps_next = eps + eps * (u * (eta * (eps + phi)) - eta * lam)
    s_next = s + s * (u * (u - 2.0))
    p_next = p + p * (u * (u + 2.0))
    eps_fixed, s_fixed, p_fixed = rederive(eps_next, s_next, p_next, phi)
    return eps_fixed, s_fixed, p_fixed


@njit(inline="always", **JIT)
def _load(lane: Any, row: Any, j: int, r: int, eps0: Any, s0: Any, p0: Any, eta_rows: Any, phi_rows: Any) -> None:
    """Put trajectory ``r`` into lane ``j``: its start, its η and Φ, step 0."""
    lane[_EPS + j], lane[_S + j], lane[_P + j] = eps0[r], s0[r], p0[r]
    lane[_ETA + j], lane[_PHI + j], lane[_T + j] = eta_rows[r], phi_rows[r], 0.0
    row[j] = r


@njit(**JIT)
def _replay_log_q(eps: float, s: float, p: float, eta: float, phi: float, steps: int) -> float:
    """log Q(T)/Q(0) of one trajectory, replayed from its start with the lane loop's
    arithmetic (so through the same states) and each Q factor scaled by an exact
    power of two: for the rare trajectory with a factor too large for the lane
    loop's unscaled product (one with |ηε| > 2³⁰ at some step)."""
    hi, lo, exponent = 1.0, 0.0, 0.0
    for _ in range(steps):
        lam = 0.5 * (s + p)
        u = eta * eps
        factor, error = exact_factor(u * u)
        inverse, k = power_of_two(factor)  # 2^−k for factor's 2^k (0 → 2^1023)
        exponent += k
        hi, lo = times_factor(hi, lo, factor * inverse, error * inverse)
        eps, s, p = _map_step(eps, s, p, lam, u, eta, phi)
    if hi < 0.0:
        hi, lo = -hi, -lo
    return float(log_product(hi, lo, exponent))


@njit(**JIT)
def _run_lanes(
    counter: Any,
    cancel: Any,
    eps0: FloatArray,
    s0: FloatArray,
    p0: FloatArray,
    eta_rows: FloatArray,
    phi_rows: FloatArray,
    loss_tol: float,
    converged_eps: float,
    max_steps: int,
    threshold: float,
    status: Any,
    steps: Any,
    out: FloatArray,
    eos_out: Any,
) -> None:
    """Integrate trajectories of the batch, taking each next one from ``counter``,
    until none is left or ``cancel[0]`` is nonzero (polled at every refill).

    ``out`` has shape (7, n): eps_T, lambda_T, sharpness_T, log_q_ratio,
    sum_eps2, max_eta_sharpness, max_abs_eps. ``converged_eps`` is
    :func:`converged_bound` of ``loss_tol``: the step loop's ½ε² <= tol is |ε| <= it.

    Q(T)/Q(0) = Π_{t<T} |1 − x_t|, x = (ηε)², is kept as an unevaluated
    double-double product (q_hi + q_lo) · 2^q_exp (the kit's). Each factor enters
    exactly: f = fl(1 − x) plus its rounding error r (Fast2Sum), so the product
    is that of the exact |1 − x_t| (to ~2⁻¹⁰⁰ per step) and one logarithm is taken
    at T. A tiny η loses nothing to the rounding of 1 − x, and q_hi is brought back
    to [1, 2) by an exact power of two at every refill. A factor 0 propagates
    through q_hi (log 0 = −inf, as in the reference); a factor above 2⁶⁰, inf
    or NaN makes q_hi NaN and :func:`_replay_log_q` recomputes that one
    trajectory's Q with every factor scaled.
    """
    n = eps0.shape[0]
    # Lane state (residual, S, P, the trajectory's η and Φ, step count, running
    # diagnostics) in one array at constant offsets: the compiler sees that the
    # quantities never overlap, so the lane loop needs no runtime alias checks
    # (with a dozen separate arrays it may refuse to vectorize at all).
    lane = np.zeros(_QUANTITIES * LANES)
    lane[_T : _T + LANES] = max_steps  # an empty lane never steps
    lane[_Q_HI : _Q_HI + LANES] = 1.0
    lane[_MAX_ETA_SHARP : _MAX_ETA_SHARP + LANES] = -np.inf
    row = np.full(LANES, -1, dtype=np.int64)  # trajectory held by the lane, -1 when empty
    stopped = np.zeros(LANES)  # 1.0 for a lane whose trajectory stopped (set at each refill)

    following, claimed_end, finished = 0, 0, 0
    lanes_running = 0
    for j in range(LANES):
        following, claimed_end = claim_next(counter, following, claimed_end, n)
        if following < n:
            _load(lane, row, j, following, eps0, s0, p0, eta_rows, phi_rows)
            following += 1
            lanes_running += 1

    while lanes_running > 0:
        if poll(cancel) != 0:
            break
        for _ in range(STEPS_PER_REFILL):
            # Branch-free lock-step over the lanes: the compiler vectorizes this loop.
            # A lane that stopped keeps its state, so `go` stays False for it.
            for j in range(LANES):
                eps = lane[_EPS + j]
                s = lane[_S + j]
                p = lane[_P + j]
                eta = lane[_ETA + j]
                phi = lane[_PHI + j]
                tj = lane[_T + j]
                lam = 0.5 * (s + p)
                eta_sharp = _eta_sharpness(eps, lam, eta, phi)
                m = lane[_MAX_ETA_SHARP + j]
                lane[_MAX_ETA_SHARP + j] = eta_sharp if eta_sharp > m else m  # np.fmax: NaN never wins
                a = abs(eps)
                # The kit's `running`, with ½ε² <= tol as |ε| <= converged_eps (the same test).
                go = (a > converged_eps) & (a <= threshold) & (abs(lam) <= threshold) & (tj < max_steps)
                count = lane[_EOS + j]
                lane[_EOS + j] = count + 1.0 if (go & (eta_sharp > 2.0)) else count
                lane[_SUM_EPS2 + j] += eps * eps if go else 0.0
                mx = lane[_MAX_ABS_EPS + j]
                lane[_MAX_ABS_EPS + j] = a if (go & (a > mx)) else mx
                u = eta * eps
                # The Q factor 1 − x, x = u², signed (only |Q| is read). Factors lie in
                # [2⁻⁵³, 2⁶⁰] (or are 0), so the product cannot leave the range of doubles
                # within a block; a larger one makes it NaN, and the trajectory's Q is
                # replayed exactly at write-out.
                x = u * u if go else 0.0  # a stopped lane multiplies by exactly 1
                factor, error = exact_factor(x)
                factor = math.nan if x > _BIG_FACTOR else factor
                product, lo = times_factor(lane[_Q_HI + j], lane[_Q_LO + j], factor, error)
                lane[_Q_LO + j] = lo
                lane[_Q_HI + j] = product
                eps_next, s_fixed, p_fixed = _map_step(eps, s, p, lam, u, eta, phi)
                lane[_EPS + j] = eps_next if go else eps
                lane[_S + j] = s_fixed if go else s
                lane[_P + j] = p_fixed if go else p
                lane[_T + j] = tj + 1 if go else tj
        # Branch-free over the lanes again: bring q_hi back into [1, 2) by an exact power
        # of two (it moves by < 2^±61 per step), and mark the lanes that stopped.
        for j in range(LANES):
            lane[_Q_HI + j], lane[_Q_LO + j], lane[_Q_EXP + j] = renormalize(
                lane[_Q_HI + j], lane[_Q_LO + j], lane[_Q_EXP + j]
            )
            lam = 0.5 * (lane[_S + j] + lane[_P + j])
            running_lane = running(lane[_EPS + j], lam, lane[_T + j], loss_tol, max_steps, threshold)
            stopped[j] = 0.0 if running_lane else 1.0
        for j in range(LANES):
            if stopped[j] == 0.0 or row[j] < 0:
                continue
            eps = lane[_EPS + j]
            lam = 0.5 * (lane[_S + j] + lane[_P + j])
            # The lane stopped (its state is frozen at T): write it out and refill it.
            r = row[j]
            status[r] = stop_status(eps, lam, loss_tol, threshold)
            steps[r] = np.int64(lane[_T + j])
            out[0, r] = eps
            out[1, r] = lam
            eta_sharp = _eta_sharpness(eps, lam, lane[_ETA + j], lane[_PHI + j])
            out[2, r] = eta_sharp / lane[_ETA + j]
            negative = lane[_Q_HI + j] < 0.0
            hi, lo = (-lane[_Q_HI + j], -lane[_Q_LO + j]) if negative else (lane[_Q_HI + j], lane[_Q_LO + j])
            if hi != hi:  # NaN: a factor above _BIG_FACTOR (or a NaN one, which the replay finds again)
                out[3, r] = _replay_log_q(eps0[r], s0[r], p0[r], eta_rows[r], phi_rows[r], steps[r])
            else:
                out[3, r] = log_product(hi, lo, lane[_Q_EXP + j])
            out[4, r] = lane[_SUM_EPS2 + j]
            # The state at T may not have been observed yet (stopped on the last step of a block).
            out[5, r] = eta_sharp if eta_sharp > lane[_MAX_ETA_SHARP + j] else lane[_MAX_ETA_SHARP + j]
            out[6, r] = lane[_MAX_ABS_EPS + j]
            eos_out[r] = np.int64(lane[_EOS + j])
            finished += 1
            following, claimed_end = claim_next(counter, following, claimed_end, n)
            lane[_Q_HI + j] = 1.0
            lane[_Q_LO + j] = lane[_SUM_EPS2 + j] = lane[_MAX_ABS_EPS + j] = lane[_EOS + j] = 0.0
            lane[_Q_EXP + j] = 0.0
            lane[_MAX_ETA_SHARP + j] = -np.inf
            if following < n:
                _load(lane, row, j, following, eps0, s0, p0, eta_rows, phi_rows)
                following += 1
            else:
                lane[_EPS + j] = lane[_S + j] = lane[_P + j] = 0.0
                row[j], lane[_T + j] = -1, float(max_steps)
                lanes_running -= 1
    fetch_add(counter, 1, finished)  # counter[1]: rows written out, n once every thread is done


@njit(parallel=True, **JIT)
def _run_all(
    counter: Any,
    cancel: Any,
    eps0: FloatArray,
    s0: FloatArray,
    p0: FloatArray,
    eta: FloatArray,
    phi: FloatArray,
    loss_tol: float,
    converged_eps: float,
    max_steps: int,
    threshold: float,
    workers: int,
    status: Any,
    steps: Any,
    out: FloatArray,
    eos_out: Any,
) -> None:
    for _ in prange(workers):
        _run_lanes(
            counter, cancel, eps0, s0, p0, eta, phi, loss_tol, converged_eps, max_steps, threshold,
            status, steps, out, eos_out,
        )  # fmt: skip


def integrate_compiled(
    eps0: FloatArray,
    lam0: FloatArray,
    eta: float | FloatArray,
    phi: float | FloatArray,
    rule: StopRule,
    threads: int | None = None,
    *,
    s0: FloatArray | None = None,
    p0: FloatArray | None = None,
    cancel: NDArray[np.int64] | None = None,
) -> TrajectoryResults:
    """Run every trajectory (ε0, λ0), each of shape (n,), to its stopping time.

    Same semantics and outputs as ``integrate(ReducedState(eps0, lam0, s0, p0),
    eta, phi, rule)``. ``eta`` and ``phi`` are scalars or arrays of shape (n,)
    (one value per trajectory: one call may hold many grid cells; each row is
    bitwise what a call with that row's scalars gives). ``s0``, ``p0`` are
    ‖a + b‖², ‖a − b‖² measured from the vectors; by default λ0 ± 2(ε0 + Φ).
    ``threads`` (default: all cores) sets how many threads share the batch; the
    results do not depend on it. ``cancel``: see :func:`lin2net.kernels.kit.launch`
    (:class:`KernelCancelled` once it is set).
    """
    eps0 = np.ascontiguousarray(eps0, dtype=np.float64)
    lam0 = np.ascontiguousarray(lam0, dtype=np.float64)
    if eps0.ndim != 1 or eps0.shape != lam0.shape:
        raise ValueError(f"eps0 and lam0 must be 1-D of equal length, got shapes {eps0.shape} and {lam0.shape}")
    n = eps0.shape[0]
    eta_rows = parameter_rows(eta, n, "eta")
    phi_rows = parameter_rows(phi, n, "phi")
    if s0 is None or p0 is None:
        s0, p0 = split_scale(eps0, lam0, phi_rows)
    s0 = np.ascontiguousarray(s0, dtype=np.float64)
    p0 = np.ascontiguousarray(p0, dtype=np.float64)
    if s0.shape != eps0.shape or p0.shape != eps0.shape:
        raise ValueError(f"s0 and p0 must have the shape of eps0 {eps0.shape}, got {s0.shape} and {p0.shape}")
    cancel = cancel_flag(cancel)
    status = np.empty(n, dtype=np.int8)
    steps = np.empty(n, dtype=np.int64)
    eos_steps = np.empty(n, dtype=np.int64)
    out = np.empty((7, n))  # every entry is written by the kernel
    arguments = (
        cancel,
        eps0,
        s0,
        p0,
        eta_rows,
        phi_rows,
        float(rule.loss_tol),
        converged_bound(float(rule.loss_tol)),
        int(rule.max_steps),
        float(rule.divergence_threshold),
    )
    launch(
        lambda counter: _run_lanes(counter, *arguments, status, steps, out, eos_steps),
        lambda counter, workers: _run_all(counter, *arguments, workers, status, steps, out, eos_steps),
        n,
        threads,
        cancel,
    )
    eps_t, lambda_t, sharpness_t, log_q_ratio, sum_eps2, max_eta_sharpness, max_abs_eps = out
    return TrajectoryResults(
        status=status,
        steps=steps,
        eps_T=eps_t,
        lambda_T=lambda_t,
        sharpness_T=sharpness_t,
        log_q_ratio=log_q_ratio,
        sum_eps2=sum_eps2,
        max_eta_sharpness=max_eta_sharpness,
        eos_steps=eos_steps,
        max_abs_eps=max_abs_eps,
    )
