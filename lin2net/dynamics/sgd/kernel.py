"""Compiled (numba) twin of :func:`lin2net.dynamics.sgd.reference.integrate_sgd` on the reduced map.

Same batches, map, stopping rule and columns as the NumPy reference (read
:mod:`lin2net.dynamics.sgd.reference` first); the lane scheme, the claim, the Q
product, the stop rule, the cancel flag and the launcher are the kernel kit's
(:mod:`lin2net.kernels.kit`), as for GD: threads claim trajectories from a shared
atomic counter and each advances ``LANES`` of them in lock-step, so the results
do not depend on the thread count; Ctrl-C or SIGTERM cancel it within a fraction
of a second. Every parameter is per trajectory (η, Φ, batch size, label-noise std,
RNG key), so one call can run trajectories of many cells.

A step has two parts. First the batch sums of every lane (drawn for the live
lanes whatever their stopping decision: a draw depends on the trajectory and
the step only): the hashes, the Box–Muller normals and the divisions are
branch-free lane loops (vectorized); the gathers and, for batches of more than
one without replacement, the Fisher–Yates swaps are scalar, one lane's whole
batch at a time with its sums in registers (LLVM does not vectorize gathers
on every CPU, and a lane's sum must run in batch order). Then one
branch-free pass observes the state (stop or not), steps the map and updates
the diagnostics. With no batch to draw the first part vanishes and the step is
GD's single pass with the full-batch moments: every trajectory of the call on
the full batch without replacement, or data whose every batch has the moments
s = 1, r = 0 exactly (x² = 1 and x ν = 0 at every point: ``x: ones`` without
data noise), in both cases without label noise. Data with x ν = 0 at every
point (no data noise) skip the x ν gather: r = 0 exactly. In the final window
the observation comes first in a pass of its own (the window sums read it),
then the batch sums for the stepping lanes, then the step.

The state is GD's (ε, S, P) with u = ηg (see :class:`lin2net.dynamics.sgd.reference.SGDReducedState`);
it, status and steps are bitwise those of the reference (the label-noise
normal uses the arithmetic ln, sin and cos of counter_rng in both).
``log_q_ratio`` is the kit's exact double-double product of the factors 1 − u²
(each entered as fl(1 − u²) plus its rounding error) with one logarithm at T,
taken by the kit's function, as GD's; here every
factor is first scaled by an exact power of two, which changes no rounding,
so no factor is too large and nothing is replayed. With s = 1 and r = 0 (x =
ones or a full batch of interpolating data, no label noise) every step,
and so every column GD has, is bitwise the GD kernel's. The window sums of Q/Q0 and
log Q/Q0 read the same product (no libm calls). log Q agrees with the
reference's compensated sum of logs to rounding (tested to 1e-12).

Without replacement, each lane keeps an index array equal to the identity
between steps: the partial Fisher–Yates of a step swaps ``batch_size``
positions; position k is never read again in its step (later picks are > k),
so only the picked positions are written, and they are reset afterwards
(O(batch_size)); a batch of one is a single uniform index (no array).
None of this changes a draw or the order of a sum: rows are bitwise those of
the NumPy reference's batches.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from lin2net.dynamics.driver import TrajectoryResults
from lin2net.dynamics.gd.kernel import rederive
from lin2net.dynamics.protocol import StopRule
from lin2net.dynamics.sgd.data import DataSet
from lin2net.dynamics.sgd.reference import SGDParameters, SGDResults, finish, stopping_tolerance, window_start
from lin2net.kernels.counter_rng import (
    NOISE_DRAWS,
    below,
    cos_kernel,
    log_reduced,
    open_unit,
    sin_kernel,
    step_counter,
    turn_parts,
    word,
)
from lin2net.kernels.kit import (
    JIT,
    LANES,
    LN2_HI,
    LN2_LO,
    bits_float,
    cancel_flag,
    claim_next,
    exact_factor,
    fetch_add,
    launch,
    log_abs_product,
    poll,
    power_of_two,
    renormalize,
    split,
    stop_status,
    times_factor,
)
from lin2net.theory.closed_forms import FloatArray, split_scale

STEPS_PER_REFILL = 8  # steps between write-out and refill of stopped lanes (and cancel polls)

# Offsets of the persistent lane quantities in the kernel's one lane-state array.
_QUANTITIES = 13
_EPS, _NORM_S, _NORM_P, _ETA, _PHI, _TOL, _Q_HI, _Q_LO, _Q_EXP, _SUM_EPS2, _MAX_ETA_SHARP, _MAX_ABS_EPS, _EOS = (
    k * LANES for k in range(_QUANTITIES)
)
_NOISE0 = np.uint64(0)
_NOISE1 = np.uint64(1)
_ONE_U64 = np.uint64(1)
_THREE_U64 = np.uint64(3)


@njit(inline="always", **JIT)
def _window_log_q(hi: float, lo: float, exponent: float) -> float:
    """log |(hi + lo) · 2^exponent| (−inf for 0, inf or NaN as hi is), branch-free and
    without libm calls (counter_rng's log): the window's log Q/Q0. At T the GD
    kernel's own function (libm log) gives ``log_q_ratio``."""
    a = abs(hi)
    normal = (a > 0.0) & (a < np.inf)
    special = 0.0 if normal else (-np.inf if a == 0.0 else a)
    a = a if normal else 1.0
    lo = (-lo if hi < 0.0 else lo) if normal else 0.0
    m, k = split(a)
    lo = lo * (m / a)
    k += exponent
    return float((k * LN2_HI + (log_reduced(m, 0.0) + (lo / m + k * LN2_LO))) + special)


@njit(inline="always", **JIT)
def _power_of_two(e: float) -> float:
    """2^e for an integer-valued e in [−1022, 1023]."""
    result: float = bits_float((np.int64(e) + 1023) << 52)
    return result


@njit(inline="always", **JIT)
def _window_q(hi: float, lo: float, exponent: float) -> float:
    """|(hi + lo) · 2^exponent| (0, inf or NaN as hi is): exp of :func:`_window_log_q`
    without a call to exp (one rounding in the scaling, subnormals included)."""
    a = abs(hi)
    normal = (a > 0.0) & (a < np.inf)
    first = min(max(exponent, -1022.0), 1023.0)
    second = min(max(exponent - first, -1022.0), 1023.0)
    value = abs(((hi + lo) * _power_of_two(first)) * _power_of_two(second))
    result: float = value if normal else (0.0 if a == 0.0 else a)
    return result


@njit(inline="always", **JIT)
def _normal_pair(word1: Any, word2: Any) -> tuple[float, float]:
    """sgd.standard_normal for one pair of words, cosine and sine, branch-free (selects only)."""
    m, k = split(open_unit(word1))
    radius = math.sqrt(-2.0 * log_reduced(m, k))
    octant, x = turn_parts(word2)
    cos_x = cos_kernel(x)
    sin_x = sin_kernel(x)
    odd = (octant & _ONE_U64) == _ONE_U64
    cos_phi = sin_x if odd else cos_x
    sin_phi = cos_x if odd else sin_x
    quadrant = (octant >> _ONE_U64) & _THREE_U64
    cosine = sin_phi
    cosine = -cos_phi if quadrant == 2 else cosine
    cosine = -sin_phi if quadrant == 1 else cosine
    cosine = cos_phi if quadrant == 0 else cosine
    sine = -cos_phi
    sine = -sin_phi if quadrant == 2 else sine
    sine = cos_phi if quadrant == 1 else sine
    sine = sin_phi if quadrant == 0 else sine
    return radius * cosine, radius * sine


@njit(inline="always", **JIT)
def _sharpness(eps: float, lam: float, phi: float) -> float:
    """sgd.full_sharpness, same operations in the same order."""
    disc = lam * lam + 8.0 * eps * (eps + phi) + 4.0 * eps * eps
    disc = 0.0 if disc < 0.0 else disc
    return 0.5 * (lam + math.sqrt(disc))


# Pass-2 pieces as functions of their own: each lane loop is then compiled (and
# vectorized) apart from the big kernel, whose array arguments LLVM cannot tell apart.


@njit(inline="always", **JIT)
def _draw_positions(key: Any, sk: Any, kk: Any, span: Any, offset: int, out: Any, row: int) -> None:
    """out[row, j] = offset + below(word(key[j], sk[j], kk), span) for every lane (no row
    views: each would cost an atomic reference count)."""
    for j in range(LANES):
        out[row, j] = np.int32(offset + np.int64(below(word(key[j], sk[j], kk), span)))


@njit(inline="always", **JIT)
def _accumulate(index: Any, sampled: Any, size: Any, k: int, x2: FloatArray, x_nu: FloatArray, s: Any, r: Any) -> None:
    """s[j] += x2[index[k, j]], r[j] += x_nu[index[k, j]] for the lanes with batch position k
    (the sums start at 0 for k = 0; 0 + x is x)."""
    for j in range(LANES):
        use = sampled[j] & (k < size[j])
        at = index[k, j] if use else 0
        s_k = x2[at] if k == 0 else s[j] + x2[at]
        r_k = x_nu[at] if k == 0 else r[j] + x_nu[at]
        s[j] = s_k if use else s[j]
        r[j] = r_k if use else r[j]


@njit(inline="always", **JIT)
def _accumulate_x2(index: Any, sampled: Any, size: Any, k: int, x2: FloatArray, s: Any, r: Any) -> None:
    """:func:`_accumulate` for data whose x ν are all zero: r is 0 (the sum of zeros from 0)."""
    for j in range(LANES):
        use = sampled[j] & (k < size[j])
        at = index[k, j] if use else 0
        s_k = x2[at] if k == 0 else s[j] + x2[at]
        s[j] = s_k if use else s[j]
        r[j] = 0.0 if use else r[j]


@njit(inline="always", **JIT)
def _pick_sums(picks: Any, sampled: Any, size: Any, x2: FloatArray, x_nu: FloatArray, s: Any, r: Any) -> None:
    """The batch sums s[j] = Σ x², r[j] = Σ x ν (in batch order) of every sampling lane
    with replacement: position k is the data index picks[k, j]. The sums of a lane stay
    in registers (its batch in one loop): the gathers are scalar either way."""
    for j in range(LANES):
        if not sampled[j]:
            continue
        first = picks[0, j]
        sj = x2[first]
        rj = x_nu[first]
        for k in range(1, size[j]):
            i = picks[k, j]
            sj += x2[i]
            rj += x_nu[i]
        s[j] = sj
        r[j] = rj


@njit(inline="always", **JIT)
def _pick_sums_x2(picks: Any, sampled: Any, size: Any, x2: FloatArray, s: Any, r: Any) -> None:
    """:func:`_pick_sums` for data whose x ν are all zero: r is 0 (the sum of zeros from 0)."""
    for j in range(LANES):
        if not sampled[j]:
            continue
        sj = x2[picks[0, j]]
        for k in range(1, size[j]):
            sj += x2[picks[k, j]]
        s[j] = sj
        r[j] = 0.0


@njit(inline="always", **JIT)
def _swap_sums(
    picks: Any, sampled: Any, size: Any, perm: Any, x2: FloatArray, x_nu: FloatArray, s: Any, r: Any
) -> None:
    """The batch sums s[j] = Σ x², r[j] = Σ x ν (in batch order) of every sampling lane
    without replacement: the partial Fisher–Yates shuffle of the lane's index array (the
    identity between steps), position k swapped with position picks[k, j], then the
    array back to the identity. Position k is never read again in the step (later picks
    are > k), so only the picked positions are written, and only they are reset."""
    for j in range(LANES):
        if not sampled[j]:
            continue
        sj = 0.0
        rj = 0.0
        for k in range(size[j]):
            pick = picks[k, j]
            i = perm[j, pick]
            perm[j, pick] = perm[j, k]
            sj += x2[i]
            rj += x_nu[i]
        for k in range(size[j]):
            perm[j, picks[k, j]] = picks[k, j]
        s[j] = sj
        r[j] = rj


@njit(inline="always", **JIT)
def _swap_sums_x2(picks: Any, sampled: Any, size: Any, perm: Any, x2: FloatArray, s: Any, r: Any) -> None:
    """:func:`_swap_sums` for data whose x ν are all zero: r is 0 (the sum of zeros from 0)."""
    for j in range(LANES):
        if not sampled[j]:
            continue
        sj = 0.0
        for k in range(size[j]):
            pick = picks[k, j]
            i = perm[j, pick]
            perm[j, pick] = perm[j, k]
            sj += x2[i]
        for k in range(size[j]):
            perm[j, picks[k, j]] = picks[k, j]
        s[j] = sj
        r[j] = 0.0


@njit(inline="always", **JIT)
def _add_noise(
    key: Any,
    t: Any,
    go: Any,
    sigma: FloatArray,
    s: FloatArray,
    size: Any,
    full: Any,
    r_full: float,
    spare: FloatArray,
    z: FloatArray,
    r: FloatArray,
) -> None:
    """r[j] ← r_j + σ_j z √(s_j / B_j) (z the step's standard normal) where σ_j > 0, with
    r_j = r_full on a full batch (whose r is otherwise kept from step to step).

    Steps 2i and 2i + 1 share a Box–Muller pair: when every noisy stepping lane is at
    an odd step, each takes the sine its even step left in ``spare``; otherwise the
    pairs are computed (sine kept in ``spare``) and odd lanes take their sine."""
    all_odd = True
    for j in range(LANES):
        all_odd &= ~(go[j] & (sigma[j] > 0.0)) | ((t[j] & 1) == 1)
    if not all_odd:
        for j in range(LANES):  # few arrays per loop: LLVM vectorizes it without alias doubts
            tj = t[j]
            counter = step_counter(np.uint64(tj - (tj & 1)))
            cosine, sine = _normal_pair(word(key[j], counter, _NOISE0), word(key[j], counter, _NOISE1))
            z[j] = sine if (tj & 1) == 1 else cosine
            spare[j] = sine
    normal = spare if all_odd else z
    for j in range(LANES):
        base = r_full if full[j] else r[j]
        r[j] = base + sigma[j] * normal[j] * math.sqrt(s[j] / size[j]) if sigma[j] > 0.0 else base


@njit(inline="always", **JIT)
def _sgd_map_step(
    eps: float, sn: float, pn: float, lam: float, u: float, eta: float, phi: float, sj: float, rj: float
) -> tuple[float, float, float]:
    """One SGD step of (ε, S, P), u = ηg, batch moments (s, r): the same operations in
    the same order as SGDReducedState.step and gd.reference.rederive (with s = 1, r = 0
    those of the GD kernel's _map_step)."""
    s_next = sn + sn * (u * (u - 2.0))
    p_next = pn + pn * (u * (u + 2.0))
    k = u * (eta * (eps + phi))
    eps_next = eps + (eps * (sj * k - (eta * sj) * lam) + rj * (eta * lam - k))
    eps_fixed, s_fixed, p_fixed = rederive(eps_next, s_next, p_next, phi)
    return eps_fixed, s_fixed, p_fixed


@njit(inline="always", **JIT)
def _step_lane(j: int, ok: bool, es: float, sj: float, rj: float, lane: FloatArray, t: Any, live: Any) -> None:
    """Lane j after its observation (go on: ``ok``; η·sharpness: ``es``): update the
    diagnostics and step the map with the batch moments (sj, rj) if it goes on."""
    e = lane[_EPS + j]
    sn = lane[_NORM_S + j]
    pn = lane[_NORM_P + j]
    lj = 0.5 * (sn + pn)
    eta = lane[_ETA + j]
    g = sj * e - rj
    u = eta * g
    lane[_EOS + j] += 1.0 if (ok & (es > 2.0)) else 0.0
    # The Q factor 1 − x, x = u², entered exactly as GD's kernel does (factor plus its
    # rounding error, signed), each first scaled by the exact power of two 2^−k that
    # brings it to [1, 2) (k added to q_exp): that changes no rounding, and no factor,
    # however large, can overflow the product. A stopped lane multiplies by exactly 1;
    # a factor 0 zeroes q_hi (log Q = −inf), an infinite or NaN one makes it inf or NaN.
    ug = u if ok else 0.0
    x = ug * ug
    factor, error = exact_factor(x)
    inverse, k = power_of_two(factor)  # 2^−k for factor's 2^k (0 → 2^1023)
    lane[_Q_EXP + j] += k
    lane[_Q_HI + j], lane[_Q_LO + j] = times_factor(lane[_Q_HI + j], lane[_Q_LO + j], factor * inverse, error * inverse)
    lane[_SUM_EPS2 + j] += e * e if ok else 0.0
    a = abs(e)
    mx = lane[_MAX_ABS_EPS + j]
    lane[_MAX_ABS_EPS + j] = a if (ok & (a > mx)) else mx
    e_next, s_fixed, p_fixed = _sgd_map_step(e, sn, pn, lj, u, eta, lane[_PHI + j], sj, rj)
    lane[_EPS + j] = e_next if ok else e
    lane[_NORM_S + j] = s_fixed if ok else sn
    lane[_NORM_P + j] = p_fixed if ok else pn
    t[j] += 1 if ok else 0
    live[j] = ok


@njit(inline="always", **JIT)
def _observe_and_step(
    j: int, sj: float, rj: float, lane: FloatArray, live: Any, t: Any, max_steps: int, threshold: float
) -> None:
    """Pass 1 and pass 3 of lane j in one (the same operations): observe state t, and
    step it with the batch moments (sj, rj) if the lane goes on. Outside the window."""
    e = lane[_EPS + j]
    lj = 0.5 * (lane[_NORM_S + j] + lane[_NORM_P + j])
    alive = live[j]
    es = lane[_ETA + j] * _sharpness(e, lj, lane[_PHI + j])
    m = lane[_MAX_ETA_SHARP + j]
    lane[_MAX_ETA_SHARP + j] = es if (alive & (es > m)) else m
    converged = 0.5 * e * e <= lane[_TOL + j]
    bounded = (abs(e) <= threshold) & (abs(lj) <= threshold)
    ok = alive & ~converged & bounded & (t[j] < max_steps)
    _step_lane(j, ok, es, sj, rj, lane, t, live)


@njit(**JIT)
def _run_lanes(
    counter: Any,
    cancel: Any,
    eps0: FloatArray,
    s0: FloatArray,
    p0: FloatArray,
    eta_in: FloatArray,
    phi_in: FloatArray,
    size_in: Any,
    sigma_in: FloatArray,
    key_in: Any,
    x2: FloatArray,
    x_nu: FloatArray,
    s_full: float,
    r_full: float,
    with_replacement: bool,
    loss_tol: FloatArray,
    max_steps: int,
    threshold: float,
    first: int,
    noise_floor: float,
    status: Any,
    steps: Any,
    out: FloatArray,
    eos_out: Any,
    count_out: Any,
) -> None:
    """Integrate trajectories, taking each next one from ``counter``, until none is
    left or ``cancel[0]`` is nonzero (polled at every refill, as GD's kernel does).

    ``out`` has shape (12, n): eps_T, lambda_T, sharpness_T, log_q_ratio,
    sum_eps2, max_eta_sharpness, max_abs_eps, then the window sums of
    Q/Q0, log Q/Q0, sharpness, loss and λ.
    """
    n = eps0.shape[0]
    n_data = x2.shape[0]
    # The persistent lane state (residual, S, P, η, Φ, stop tolerance, Q product,
    # running diagnostics) in one array at constant offsets, as in GD's kernel: the
    # compiler sees that the quantities never overlap. The batch's parameters, window
    # sums and per-step temporaries follow as arrays of their own.
    lane = np.zeros(_QUANTITIES * LANES)
    lane[_ETA : _ETA + LANES] = 1.0
    lane[_Q_HI : _Q_HI + LANES] = 1.0
    lane[_MAX_ETA_SHARP : _MAX_ETA_SHARP + LANES] = -np.inf
    sigma = np.zeros(LANES)
    size = np.ones(LANES, dtype=np.int64)
    key = np.zeros(LANES, dtype=np.uint64)
    window = np.zeros((5, LANES))
    in_window = np.zeros(LANES, dtype=np.int64)
    t = np.zeros(LANES, dtype=np.int64)
    live = np.zeros(LANES, dtype=np.bool_)
    go = np.zeros(LANES, dtype=np.bool_)
    eta_sharp = np.zeros(LANES)
    s = np.zeros(LANES)
    r = np.zeros(LANES)
    full = np.zeros(LANES, dtype=np.bool_)
    row = np.full(LANES, -1, dtype=np.int64)
    width = 1
    for i in range(n):
        width = max(width, size_in[i])
    perm = np.empty((LANES, n_data if width > 1 else 1), dtype=np.int32)
    for j in range(LANES):
        for i in range(perm.shape[1]):
            perm[j, i] = i
    picks = np.zeros((width, LANES), dtype=np.int32)
    sampled = np.zeros(LANES, dtype=np.bool_)
    spare = np.zeros(LANES)  # the sine of the lane's last Box–Muller pair: the next odd step's normal
    z = np.zeros(LANES)  # the step's normal
    sk = np.zeros(LANES, dtype=np.uint64)
    # Data with x² = 1 and x ν = 0 at every point (x: ones without data noise, or x = ±1)
    # give every batch the moments s = 1, r = 0 exactly (a sum of b ones is b): no batch
    # is drawn and every lane steps with the full-batch moments. Data with x ν = 0 at
    # every point (no data noise) give r = 0 exactly: the x ν gather is skipped.
    with_nu = False
    unit = True
    for i in range(n_data):
        with_nu |= x_nu[i] != 0.0
        unit &= x2[i] == 1.0
    constant = unit & ~with_nu
    noisy = False
    sampling = False
    for i in range(n):
        noisy |= sigma_in[i] > 0.0
        sampling |= (with_replacement or size_in[i] < n_data) and not constant

    following, claimed_end, finished = 0, 0, 0
    running = 0
    for j in range(LANES):
        following, claimed_end = claim_next(counter, following, claimed_end, n)
        if following < n:
            lane[_EPS + j], lane[_NORM_S + j], lane[_NORM_P + j] = eps0[following], s0[following], p0[following]
            row[j], live[j] = following, True
            lane[_ETA + j], lane[_PHI + j], sigma[j] = eta_in[following], phi_in[following], sigma_in[following]
            lane[_TOL + j] = loss_tol[following]
            size[j], key[j] = size_in[following], key_in[following]
            full[j] = ((size[j] == n_data) & ~with_replacement) | constant
            s[j], r[j] = s_full, r_full  # constant for a full batch; overwritten otherwise
            following += 1
            running += 1

    while running > 0:
        if poll(cancel) != 0:
            break
        # Outside the final window, the batches are drawn first, for every live lane
        # (draws depend on the trajectory and the step only), and one pass observes
        # and steps; in the window the three passes below take turns.
        fast = True
        for j in range(LANES):
            fast &= ~live[j] | (t[j] + STEPS_PER_REFILL <= first)
        for _ in range(STEPS_PER_REFILL):
            if fast and not sampling and not noisy:  # GD's single pass with the full-batch moments
                for j in range(LANES):
                    _observe_and_step(j, s_full, r_full, lane, live, t, max_steps, threshold)
                continue
            if not fast:
                # Pass 1: observe state t and decide whether to step (branch-free).
                windowed = False
                for j in range(LANES):
                    e = lane[_EPS + j]
                    lj = 0.5 * (lane[_NORM_S + j] + lane[_NORM_P + j])
                    alive = live[j]
                    sharp = _sharpness(e, lj, lane[_PHI + j])
                    es = lane[_ETA + j] * sharp
                    m = lane[_MAX_ETA_SHARP + j]
                    lane[_MAX_ETA_SHARP + j] = es if (alive & (es > m)) else m
                    eta_sharp[j] = es
                    converged = 0.5 * e * e <= lane[_TOL + j]
                    bounded = (abs(e) <= threshold) & (abs(lj) <= threshold)
                    go[j] = alive & ~converged & bounded & (t[j] < max_steps)
                    windowed |= alive & (t[j] > first)
                if windowed:  # only in the final window of the step budget
                    for j in range(LANES):  # branch-free, no libm calls
                        inside = live[j] & (t[j] > first)
                        e = lane[_EPS + j]
                        lj = 0.5 * (lane[_NORM_S + j] + lane[_NORM_P + j])
                        hi, lo, exponent = lane[_Q_HI + j], lane[_Q_LO + j], lane[_Q_EXP + j]
                        log_q = _window_log_q(hi, lo, exponent)
                        q = _window_q(hi, lo, exponent)
                        window[0, j] += q if inside else 0.0
                        window[1, j] += log_q if inside else 0.0
                        window[2, j] += _sharpness(e, lj, lane[_PHI + j]) if inside else 0.0
                        window[3, j] += 0.5 * e * e + noise_floor if inside else 0.0
                        window[4, j] += lj if inside else 0.0
                        in_window[j] += 1 if inside else 0
            # Pass 2: the batch sums s = mean_B x², r = mean_B x ν + mean_B x ξ. The draws,
            # the divisions and the noise are branch-free lane loops (vectorized); the
            # gathers and swaps run lane by lane, each lane's batch in order.
            depth = 0  # batch positions to draw: the largest sampled batch among the lanes
            divide = False  # some sampled lane has a batch of more than one
            if sampling:  # some trajectory of the call draws batches
                for j in range(LANES):
                    b = size[j]
                    draws = (live[j] if fast else go[j]) & ~full[j]
                    sampled[j] = draws
                    depth = max(depth, b if draws else 0)
                    divide |= draws & (b > 1)
            if depth > 0:
                for j in range(LANES):
                    sk[j] = step_counter(np.uint64(t[j]))
            if with_replacement:
                for k in range(depth):
                    _draw_positions(key, sk, np.uint64(NOISE_DRAWS + k), np.uint64(n_data), 0, picks, k)
                if with_nu:
                    _pick_sums(picks, sampled, size, x2, x_nu, s, r)
                else:
                    _pick_sums_x2(picks, sampled, size, x2, s, r)
            elif depth == 1:  # a batch of one: Fisher-Yates' first pick is a uniform index
                _draw_positions(key, sk, np.uint64(NOISE_DRAWS), np.uint64(n_data), 0, picks, 0)
                if with_nu:
                    _accumulate(picks, sampled, size, 0, x2, x_nu, s, r)
                else:
                    _accumulate_x2(picks, sampled, size, 0, x2, s, r)
            elif depth > 1:  # the swaps on a per-lane index array (kept at the identity between steps)
                for k in range(depth):
                    _draw_positions(key, sk, np.uint64(NOISE_DRAWS + k), np.uint64(n_data - k), k, picks, k)
                if with_nu:
                    _swap_sums(picks, sampled, size, perm, x2, x_nu, s, r)
                else:
                    _swap_sums_x2(picks, sampled, size, perm, x2, s, r)
            if divide:  # a batch of one needs no division (x / 1 = x), a full batch has its own moments
                for j in range(LANES):
                    s[j] = s[j] / size[j] if sampled[j] else s[j]
                    r[j] = r[j] / size[j] if sampled[j] else r[j]
            if noisy:
                _add_noise(key, t, live if fast else go, sigma, s, size, full, r_full, spare, z, r)
            if fast:  # observe and step in one pass (the batch was drawn for every live lane)
                for j in range(LANES):
                    _observe_and_step(j, s[j], r[j], lane, live, t, max_steps, threshold)
                continue
            # Pass 3: step the map and the diagnostics (branch-free).
            for j in range(LANES):
                _step_lane(j, go[j], eta_sharp[j], s[j], r[j], lane, t, live)
        for j in range(LANES):  # q_hi back to [1, 2) by an exact power of two (GD's refill)
            lane[_Q_HI + j], lane[_Q_LO + j], lane[_Q_EXP + j] = renormalize(
                lane[_Q_HI + j], lane[_Q_LO + j], lane[_Q_EXP + j]
            )
        for j in range(LANES):
            if live[j] or row[j] < 0:
                continue
            rr = row[j]
            e = lane[_EPS + j]
            lj = 0.5 * (lane[_NORM_S + j] + lane[_NORM_P + j])
            status[rr] = stop_status(e, lj, lane[_TOL + j], threshold)
            steps[rr] = t[j]
            out[0, rr] = e
            out[1, rr] = lj
            out[2, rr] = _sharpness(e, lj, lane[_PHI + j])
            out[3, rr] = log_abs_product(lane[_Q_HI + j], lane[_Q_LO + j], lane[_Q_EXP + j])  # log(hi) for 0, inf, NaN
            out[4, rr] = lane[_SUM_EPS2 + j]
            out[5, rr] = lane[_MAX_ETA_SHARP + j]
            out[6, rr] = lane[_MAX_ABS_EPS + j]
            for c in range(5):
                out[7 + c, rr] = window[c, j]
            eos_out[rr] = np.int64(lane[_EOS + j])
            count_out[rr] = in_window[j]
            finished += 1
            following, claimed_end = claim_next(counter, following, claimed_end, n)
            if following < n:
                lane[_EPS + j], lane[_NORM_S + j], lane[_NORM_P + j] = eps0[following], s0[following], p0[following]
                row[j], live[j] = following, True
                lane[_ETA + j], lane[_PHI + j], sigma[j] = eta_in[following], phi_in[following], sigma_in[following]
                lane[_TOL + j] = loss_tol[following]
                size[j], key[j] = size_in[following], key_in[following]
                full[j] = ((size[j] == n_data) & ~with_replacement) | constant
                s[j], r[j] = s_full, r_full
                lane[_Q_HI + j] = 1.0
                lane[_Q_LO + j] = lane[_Q_EXP + j] = lane[_SUM_EPS2 + j] = lane[_MAX_ABS_EPS + j] = lane[_EOS + j] = 0.0
                for c in range(5):
                    window[c, j] = 0.0
                in_window[j] = 0
                lane[_MAX_ETA_SHARP + j] = -np.inf
                t[j] = 0
                following += 1
            else:
                row[j] = -1
                running -= 1
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
    size: Any,
    sigma: FloatArray,
    key: Any,
    x2: FloatArray,
    x_nu: FloatArray,
    s_full: float,
    r_full: float,
    with_replacement: bool,
    loss_tol: FloatArray,
    max_steps: int,
    threshold: float,
    first: int,
    noise_floor: float,
    workers: int,
    status: Any,
    steps: Any,
    out: FloatArray,
    eos_out: Any,
    count_out: Any,
) -> None:
    for _ in prange(workers):
        _run_lanes(
            counter,
            cancel,
            eps0,
            s0,
            p0,
            eta,
            phi,
            size,
            sigma,
            key,
            x2,
            x_nu,
            s_full,
            r_full,
            with_replacement,
            loss_tol,
            max_steps,
            threshold,
            first,
            noise_floor,
            status,
            steps,
            out,
            eos_out,
            count_out,
        )


def integrate_sgd_compiled(
    eps0: FloatArray,
    lam0: FloatArray,
    params: SGDParameters,
    data: DataSet,
    sampling: str,
    rule: StopRule,
    window: int,
    threads: int | None = None,
    *,
    s0: FloatArray | None = None,
    p0: FloatArray | None = None,
    cancel: NDArray[np.int64] | None = None,
) -> SGDResults:
    """Run every trajectory (ε0, λ0), each of shape (n,), to its stopping time.

    Same semantics and outputs as ``integrate_sgd(ReducedState(eps0, lam0, s0, p0),
    params, data, sampling, rule, window)``; ``s0``, ``p0`` are ‖a + b‖², ‖a − b‖²
    measured from the vectors (by default λ0 ± 2(ε0 + Φ)); ``threads`` (default:
    all numba threads) does not change the results. ``cancel``: see
    :func:`lin2net.kernels.kit.launch` (:class:`~lin2net.kernels.kit.KernelCancelled`
    once it is set).
    """
    eps0 = np.ascontiguousarray(eps0, dtype=np.float64)
    lam0 = np.ascontiguousarray(lam0, dtype=np.float64)
    n = eps0.shape[0]
    arrays = (
        np.ascontiguousarray(params.eta, dtype=np.float64),
        np.ascontiguousarray(params.phi, dtype=np.float64),
        np.ascontiguousarray(params.batch_size, dtype=np.int64),
        np.ascontiguousarray(params.label_noise, dtype=np.float64),
        np.ascontiguousarray(params.key, dtype=np.uint64),
    )
    if eps0.ndim != 1 or lam0.shape != eps0.shape or any(a.shape != eps0.shape for a in arrays):
        raise ValueError("eps0, lam0 and every parameter array must be 1-D of equal length")
    if n and not (1 <= int(arrays[2].min()) and int(arrays[2].max()) <= data.n):
        raise ValueError(f"batch sizes must be between 1 and n = {data.n}")
    if s0 is None or p0 is None:
        s0, p0 = split_scale(eps0, lam0, arrays[1])
    s0 = np.ascontiguousarray(s0, dtype=np.float64)
    p0 = np.ascontiguousarray(p0, dtype=np.float64)
    if s0.shape != eps0.shape or p0.shape != eps0.shape:
        raise ValueError(f"s0 and p0 must have the shape of eps0 {eps0.shape}, got {s0.shape} and {p0.shape}")
    cancel = cancel_flag(cancel)
    status = np.empty(n, dtype=np.int8)
    steps = np.empty(n, dtype=np.int64)
    eos_steps = np.empty(n, dtype=np.int64)
    count = np.empty(n, dtype=np.int64)
    out = np.empty((12, n))
    s_full, r_full = data.full_moments
    arguments = (
        cancel,
        eps0,
        s0,
        p0,
        *arrays,
        np.ascontiguousarray(data.x2),
        np.ascontiguousarray(data.x_nu),
        s_full,
        r_full,
        sampling == "with_replacement",
        stopping_tolerance(params, data, sampling, rule.loss_tol),
        int(rule.max_steps),
        float(rule.divergence_threshold),
        int(window_start(rule.max_steps, window)),
        float(data.noise_floor),
    )
    launch(
        lambda counter: _run_lanes(counter, *arguments, status, steps, out, eos_steps, count),
        lambda counter, workers: _run_all(counter, *arguments, workers, status, steps, out, eos_steps, count),
        n,
        threads,
        cancel,
    )
    base = TrajectoryResults(
        status=status,
        steps=steps,
        eps_T=out[0],
        lambda_T=out[1],
        sharpness_T=out[2],
        log_q_ratio=out[3],
        sum_eps2=out[4],
        max_eta_sharpness=out[5],
        eos_steps=eos_steps,
        max_abs_eps=out[6],
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        means = out[7:] / count[None, :]  # 0/0 = NaN: stopped before the window
    return finish(base, means, data.noise_floor)
