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
  compiler puts the lanes into SIMD registers (``LANES`` is two registers'
  worth for the CPU it compiles for: 16 with AVX-512, 8 with AVX2). Every
  store in the lane loop is unconditional: a masked store cannot forward to
  the next step's load. Every ``STEPS_PER_REFILL`` steps the lanes that
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

:func:`integrate_compiled` runs the kernel (which releases the GIL) in a
worker thread and waits in short slices, so Ctrl-C or a signal handler in the
calling thread cancels it within a fraction of a second.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic
from numpy.typing import NDArray

from lin2net.dynamics.gd.reference import Status, StopRule, TrajectoryResults, parameter_rows
from lin2net.theory.closed_forms import FloatArray, split_scale


def vector_width() -> int:
    """Bits of the widest float64 vector register of the CPU numba compiles for:
    512 with AVX-512, 256 with AVX2 (or AVX), else 128. Follows NUMBA_CPU_NAME /
    NUMBA_CPU_FEATURES (a build for another CPU) when they are set."""
    features = numba.config.CPU_FEATURES
    if features is None:
        name = numba.config.CPU_NAME
        if name is None or name == "host":
            host = llvm_binding.get_host_cpu_features()
            enabled = {feature for feature, on in host.items() if on}
        else:
            enabled = _named_cpu_features(name)
    else:
        enabled = {item[1:] for item in features.split(",") if item.startswith("+")}
    if "avx512f" in enabled:
        return 512
    if "avx" in enabled or "avx2" in enabled:
        return 256
    return 128


def _named_cpu_features(name: str) -> set[str]:
    """The vector features of the LLVM CPU ``name`` (e.g. haswell, skylake-avx512), by family."""
    avx512 = ("avx512", "skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake", "tigerlake")
    wide = ("sapphirerapids", "graniterapids", "emeraldrapids", "znver4", "znver5", "rocketlake", "x86-64-v4")
    if name.startswith(avx512) or name.startswith(wide):
        return {"avx512f", "avx2", "avx"}
    avx2 = ("haswell", "broadwell", "skylake", "kabylake", "coffeelake", "alderlake", "znver", "x86-64-v3")
    if name.startswith(avx2):
        return {"avx2", "avx"}
    return set()


# Trajectories advanced in lock-step per thread: two vector registers per lane
# quantity on the CPU the kernel is compiled for (16 with AVX-512, 8 with AVX2).
LANES = max(4, 2 * vector_width() // 64)
STEPS_PER_REFILL = 16  # steps between write-out and refill of stopped lanes (and cancel polls)
CLAIM = 4 * LANES  # trajectories a thread takes from the shared counter at a time
# Offsets of the lane quantities in the kernel's one lane-state array.
_QUANTITIES = 13
_EPS, _S, _P, _ETA, _PHI, _T, _Q_HI, _Q_LO, _Q_EXP, _SUM_EPS2, _MAX_ETA_SHARP, _MAX_ABS_EPS, _EOS = (
    k * LANES for k in range(_QUANTITIES)
)

_CONVERGED = int(Status.CONVERGED)
_DIVERGED = int(Status.DIVERGED)
_MAX_STEPS = int(Status.MAX_STEPS)
_JIT: dict[str, Any] = {"nogil": True, "cache": True, "error_model": "numpy"}


@intrinsic
def _float_bits(typingctx: Any, x: Any) -> Any:
    """The IEEE-754 bit pattern of a float64 as an int64 (a register move, vectorizable)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _bits_float(typingctx: Any, x: Any) -> Any:
    """The float64 with bit pattern ``x`` (inverse of :func:`_float_bits`)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """a·b + c rounded once (llvm.fma): the error of a product is fma(a, b, −a·b) exactly."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fma(*args)

    return types.float64(types.float64, types.float64, types.float64), codegen


@intrinsic
def _poll(typingctx: Any, flag: Any) -> Any:
    """``flag[0]``, read with an atomic load: never hoisted out of the loop that polls it."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load_atomic(array.data, "monotonic", 8)

    return types.int64(flag), codegen


@intrinsic
def _fetch_add(typingctx: Any, counter: Any, index: Any, amount: Any) -> Any:
    """Atomically ``counter[index] += amount``; returns the value before."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", builder.gep(array.data, [args[1]]), args[2], "monotonic")

    return types.int64(counter, types.int64, types.int64), codegen


_MANTISSA = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000
_EXPONENT = 0x7FF0000000000000  # bits & _EXPONENT is the power of two 2^k ≤ |x| (normal x)
_INVERSE_POWER = 0x7FE0000000000000  # its bits minus those of 2^k are those of 2^−k


@njit(inline="always", **_JIT)
def _small_int_float(k: int) -> float:
    """float(k) for 0 <= k < 2⁵² by bit operations (AVX2 has no packed int64 → float64)."""
    return float(_bits_float(k | 0x4330000000000000) - 4503599627370496.0)


@njit(inline="always", **_JIT)
def _split(x: float) -> tuple[float, float]:
    """x = m · 2^k with m in [√2/2, √2), for x > 0 normal; returns (m, k as float)."""
    bits = _float_bits(x)
    mantissa = bits & _MANTISSA
    # fdlibm's trick: i is the exponent's lowest bit, set when the mantissa is ≥ √2.
    i = (mantissa + 0x00095F6400000000) & 0x0010000000000000
    return _bits_float(mantissa | (i ^ _ONE_BITS)), float((bits >> 52) - 1023 + (i >> 52))


# ln 2 split so that k·_LN2_HI is exact for |k| < 2²¹ (fdlibm's constants).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


@njit(inline="always", **_JIT)
def _eta_sharpness(eps: float, lam: float, eta: float, phi: float) -> float:
    """η·S(ε, λ), the same operations in the same order as closed_forms.sharpness."""
    disc = lam * lam + 8.0 * eps * (eps + phi) + 4.0 * eps * eps
    disc = 0.0 if disc < 0.0 else disc  # np.maximum(disc, 0): keeps NaN
    return eta * (0.5 * (lam + math.sqrt(disc)))


@njit(inline="always", **_JIT)
def _running(eps: float, lam: float, t: int, loss_tol: float, max_steps: int, threshold: float) -> bool:
    """The reference's stopping rule, negated: True while the trajectory takes another step."""
    converged = 0.5 * eps * eps <= loss_tol
    bounded = (abs(eps) <= threshold) & (abs(lam) <= threshold)
    return bool(~converged & bounded & (t < max_steps))


@njit(inline="always", **_JIT)
def _log_product(hi: float, lo: float, exponent: float) -> float:
    """log of the product (hi + lo) · 2^exponent; log(hi) itself when hi is 0, inf or NaN."""
    if not (0.0 < hi < np.inf):
        return math.log(hi) if hi >= 0.0 else math.nan
    m, k = _split(hi)
    lo = lo * (m / hi)  # scale lo by the same power of two as hi (exact)
    k += exponent
    return float((k * _LN2_HI + (math.log(m) + (lo / m + k * _LN2_LO))) + 0.0)


_BIG_FACTOR = 2.0**60  # a Q factor above this (|ηε| > 2³⁰) sends the trajectory to _replay_log_q


@njit(inline="always", **_JIT)
def _map_step(e: float, s: float, p: float, lam: float, u: float, h: float, f: float) -> tuple[float, float, float]:
    """One step of the reduced map on (ε, S, P), u = ηε: the same operations in the
    same order as ReducedState.step, re-deriving the largest of S, P, 4|ε|."""
    e_next = e + e * (u * (h * (e + f)) - h * lam)
    s_next = s + s * (u * (u - 2.0))
    p_next = p + p * (u * (u + 2.0))
    e_fixed, s_fixed, p_fixed = _rederive(e_next, s_next, p_next, f)
    return e_fixed, s_fixed, p_fixed


@njit(inline="always", **_JIT)
def _rederive(e: float, s: float, p: float, f: float) -> tuple[float, float, float]:
    """integrator.rederive for one lane, branch-free: the largest of S, P, 4|ε|
    re-derived from the other two by S − P = 4(ε + Φ)."""
    four_eps = 4.0 * abs(e)
    derive_eps = (four_eps >= s) & (four_eps >= p)
    s_larger = s >= p
    derive_s = ~derive_eps & s_larger
    derive_p = ~derive_eps & ~s_larger
    four_product = 4.0 * (e + f)
    e_fixed = 0.25 * (s - p) - f if derive_eps else e
    s_fixed = p + four_product if derive_s else s
    p_fixed = s - four_product if derive_p else p
    return e_fixed, s_fixed, p_fixed


@njit(inline="always", **_JIT)
def _load(lane: Any, row: Any, j: int, r: int, eps0: Any, s0: Any, p0: Any, eta_rows: Any, phi_rows: Any) -> None:
    """Put trajectory ``r`` into lane ``j``: its start, its η and Φ, step 0."""
    lane[_EPS + j], lane[_S + j], lane[_P + j] = eps0[r], s0[r], p0[r]
    lane[_ETA + j], lane[_PHI + j], lane[_T + j] = eta_rows[r], phi_rows[r], 0.0
    row[j] = r


@njit(**_JIT)
def _replay_log_q(e: float, s: float, p: float, h: float, f: float, steps: int) -> float:
    """log Q(T)/Q(0) of one trajectory, replayed from its start with the lane loop's
    arithmetic (so through the same states) and each Q factor scaled by an exact
    power of two: for the rare trajectory with a factor too large for the lane
    loop's unscaled product (one with |ηε| > 2³⁰ at some step)."""
    hi, lo, exponent = 1.0, 0.0, 0.0
    for _ in range(steps):
        lam = 0.5 * (s + p)
        u = h * e
        x = u * u
        factor = 1.0 - x
        error = (1.0 - factor) - x
        power = _float_bits(factor) & _EXPONENT
        inverse = _bits_float(_INVERSE_POWER - power)  # 2^−k for factor's 2^k (0 → 2^1023)
        factor *= inverse
        error *= inverse
        exponent += _small_int_float(power >> 52) - 1023.0
        product = hi * factor
        lo = _fma(hi, error, _fma(lo, factor, _fma(hi, factor, -product)))
        hi = product
        e, s, p = _map_step(e, s, p, lam, u, h, f)
    if hi < 0.0:
        hi, lo = -hi, -lo
    return float(_log_product(hi, lo, exponent))


@njit(**_JIT)
def _run_lanes(
    counter: Any,
    cancel: Any,
    eps0: FloatArray,
    s0: FloatArray,
    p0: FloatArray,
    eta_rows: FloatArray,
    phi_rows: FloatArray,
    loss_tol: float,
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
    sum_eps2, max_eta_sharpness, max_abs_eps.

    Q(T)/Q(0) = Π_{t<T} |1 − x_t|, x = (ηε)², is kept as an unevaluated
    double-double product (q_hi + q_lo) · 2^q_exp. Each factor enters exactly:
    f = fl(1 − x) plus its rounding error r (Fast2Sum), so the product is that
    of the exact |1 − x_t| (to ~2⁻¹⁰⁰ per step) and one logarithm is taken at T.
    A tiny η loses nothing to the rounding of 1 − x, and q_hi is brought back
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

    # Trajectories are claimed from the shared counter[0] in chunks of CLAIM rows:
    # few atomic operations, and each thread writes mostly its own output lines.
    following, claimed_end, finished = 0, 0, 0
    running = 0
    for j in range(LANES):
        if following == claimed_end:
            following = _fetch_add(counter, 0, CLAIM)
            claimed_end = min(following + CLAIM, n)
        if following < n:
            _load(lane, row, j, following, eps0, s0, p0, eta_rows, phi_rows)
            following += 1
            running += 1

    while running > 0:
        if _poll(cancel) != 0:
            break
        for _ in range(STEPS_PER_REFILL):
            # Branch-free lock-step over the lanes: the compiler vectorizes this loop.
            # A lane that stopped keeps its state, so `go` stays False for it.
            for j in range(LANES):
                e = lane[_EPS + j]
                s = lane[_S + j]
                p = lane[_P + j]
                h = lane[_ETA + j]
                f = lane[_PHI + j]
                tj = lane[_T + j]
                lam = 0.5 * (s + p)
                eta_sharp = _eta_sharpness(e, lam, h, f)
                # `+ 0.0` makes every store unconditional: LLVM turns "store (c ? x : *p), p" into
                # a masked store, which the next step's load cannot forward from (a stall).
                m = lane[_MAX_ETA_SHARP + j] + 0.0
                lane[_MAX_ETA_SHARP + j] = eta_sharp if eta_sharp > m else m  # np.fmax: NaN never wins
                go = _running(e, lam, tj, loss_tol, max_steps, threshold)
                lane[_EOS + j] += 1.0 if (go & (eta_sharp > 2.0)) else 0.0
                eps2 = e * e
                lane[_SUM_EPS2 + j] += eps2 if go else 0.0
                a = abs(e)
                mx = lane[_MAX_ABS_EPS + j] + 0.0
                lane[_MAX_ABS_EPS + j] = a if (go & (a > mx)) else mx
                u = h * e
                # Q factor 1 − x, x = u², entered exactly as factor + error (Fast2Sum; the
                # error is 0 for x >= 1/2 where 1 − x is exact, and a rounding of it for x > 2),
                # signed (only |Q| is read). Factors lie in [2⁻⁵³, 2⁶⁰] (or are 0), so the
                # product cannot leave the range of doubles within a block; a larger one
                # makes it NaN, and the trajectory's Q is replayed exactly at write-out.
                ug = u if go else 0.0  # a stopped lane multiplies by exactly 1
                x = ug * ug
                factor = 1.0 - x
                error = (1.0 - factor) - x
                factor = math.nan if x > _BIG_FACTOR else factor
                hi = lane[_Q_HI + j]
                product = hi * factor
                lane[_Q_LO + j] = _fma(hi, error, _fma(lane[_Q_LO + j], factor, _fma(hi, factor, -product)))
                lane[_Q_HI + j] = product
                e_next, s_fixed, p_fixed = _map_step(e, s, p, lam, u, h, f)
                lane[_EPS + j] = e_next if go else e
                lane[_S + j] = s_fixed if go else s
                lane[_P + j] = p_fixed if go else p
                lane[_T + j] = tj + 1 if go else tj
        # Branch-free over the lanes again: bring q_hi back into [1, 2) by an exact power
        # of two (it moves by < 2^±61 per step), and mark the lanes that stopped.
        for j in range(LANES):
            hi = abs(lane[_Q_HI + j])
            normal = (hi > 0.0) & (hi < np.inf)
            power = _float_bits(hi) & _EXPONENT
            inverse = _bits_float(_INVERSE_POWER - power) if normal else 1.0
            lane[_Q_HI + j] *= inverse
            lane[_Q_LO + j] *= inverse
            lane[_Q_EXP + j] += (_small_int_float(power >> 52) - 1023.0) if normal else 0.0
            lam = 0.5 * (lane[_S + j] + lane[_P + j])
            running_lane = _running(lane[_EPS + j], lam, lane[_T + j], loss_tol, max_steps, threshold)
            stopped[j] = 0.0 if running_lane else 1.0
        for j in range(LANES):
            if stopped[j] == 0.0 or row[j] < 0:
                continue
            e = lane[_EPS + j]
            lam = 0.5 * (lane[_S + j] + lane[_P + j])
            # The lane stopped (its state is frozen at T): write it out and refill it.
            r = row[j]
            if 0.5 * e * e <= loss_tol:
                status[r] = _CONVERGED
            elif not ((abs(e) <= threshold) & (abs(lam) <= threshold)):
                status[r] = _DIVERGED
            else:
                status[r] = _MAX_STEPS
            steps[r] = np.int64(lane[_T + j])
            out[0, r] = e
            out[1, r] = lam
            eta_sharp = _eta_sharpness(e, lam, lane[_ETA + j], lane[_PHI + j])
            out[2, r] = eta_sharp / lane[_ETA + j]
            negative = lane[_Q_HI + j] < 0.0
            hi, lo = (-lane[_Q_HI + j], -lane[_Q_LO + j]) if negative else (lane[_Q_HI + j], lane[_Q_LO + j])
            if hi != hi:  # NaN: a factor above _BIG_FACTOR (or a NaN one, which the replay finds again)
                out[3, r] = _replay_log_q(eps0[r], s0[r], p0[r], eta_rows[r], phi_rows[r], steps[r])
            else:
                out[3, r] = _log_product(hi, lo, lane[_Q_EXP + j])
            out[4, r] = lane[_SUM_EPS2 + j]
            # The state at T may not have been observed yet (stopped on the last step of a block).
            out[5, r] = eta_sharp if eta_sharp > lane[_MAX_ETA_SHARP + j] else lane[_MAX_ETA_SHARP + j]
            out[6, r] = lane[_MAX_ABS_EPS + j]
            eos_out[r] = np.int64(lane[_EOS + j])
            finished += 1
            if following == claimed_end:
                following = _fetch_add(counter, 0, CLAIM)
                claimed_end = min(following + CLAIM, n)
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
                running -= 1
    _fetch_add(counter, 1, finished)  # counter[1]: rows written out, n once every thread is done


@njit(parallel=True, **_JIT)
def _run_all(
    counter: Any,
    cancel: Any,
    eps0: FloatArray,
    s0: FloatArray,
    p0: FloatArray,
    eta: FloatArray,
    phi: FloatArray,
    loss_tol: float,
    max_steps: int,
    threshold: float,
    workers: int,
    status: Any,
    steps: Any,
    out: FloatArray,
    eos_out: Any,
) -> None:
    for _ in prange(workers):
        _run_lanes(counter, cancel, eps0, s0, p0, eta, phi, loss_tol, max_steps, threshold, status, steps, out, eos_out)


class KernelCancelled(Exception):
    """The kernel stopped early because its ``cancel`` flag was set; no results."""


def available_threads() -> int:
    """Threads numba may use: all cores unless NUMBA_NUM_THREADS says fewer."""
    return int(numba.config.NUMBA_NUM_THREADS)


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
    ``threads`` (default: all cores, see :func:`available_threads`) sets how
    many threads share the batch; the results do not depend on it.

    ``cancel``: an int64 array of shape (1,) that the kernel polls every
    ``STEPS_PER_REFILL`` steps; once it is nonzero every thread returns and
    :class:`KernelCancelled` is raised. The kernel runs in a worker thread while
    this one waits in short slices, so a signal handler (Ctrl-C) runs promptly:
    on KeyboardInterrupt (or any exception raised by a handler) the kernel is
    cancelled and joined, and the exception propagates.
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
    if cancel is None:
        cancel = np.zeros(1, dtype=np.int64)
    if cancel.dtype != np.int64 or cancel.shape != (1,) or not cancel.flags.c_contiguous:
        raise ValueError("cancel must be a contiguous int64 array of shape (1,)")
    # The kernel alternates with I/O in a sweep and shares the machine: worker
    # threads that finish early should sleep, not spin (OpenMP's default), so as
    # not to take the core a late thread or the writer needs. libgomp reads this
    # once, when numba first starts its threads; an explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    limit = available_threads()
    if threads is None:
        threads = limit
    if not 1 <= threads <= limit:
        raise ValueError(f"threads must be between 1 and {limit} (NUMBA_NUM_THREADS), got {threads}")
    status = np.empty(n, dtype=np.int8)
    steps = np.empty(n, dtype=np.int64)
    eos_steps = np.empty(n, dtype=np.int64)
    out = np.empty((7, n))  # every entry is written by the kernel
    counter = np.zeros(2, dtype=np.int64)  # [trajectories claimed, trajectories written out]
    arguments = (
        counter,
        cancel,
        eps0,
        s0,
        p0,
        eta_rows,
        phi_rows,
        float(rule.loss_tol),
        int(rule.max_steps),
        float(rule.divergence_threshold),
    )
    workers = min(threads, max(1, -(-n // LANES)))

    def kernel() -> None:
        if workers == 1:
            # One thread: call the lane loop directly, outside numba's thread pool, so a
            # process that only ever runs one thread never starts OpenMP (which is not
            # fork-safe once started: see the README on process pools).
            _run_lanes(*arguments, status, steps, out, eos_steps)
        else:
            numba.set_num_threads(workers)  # per calling thread: this worker only
            _run_all(*arguments, workers, status, steps, out, eos_steps)

    if n:
        _run_in_worker(kernel, cancel)
    if counter[1] < n:
        raise KernelCancelled(f"cancelled: {int(counter[1])} of {n} trajectories were finished")
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


_WAIT_SLICE = 0.05  # seconds between chances for a signal handler to run while the kernel works


def _run_in_worker(kernel: Callable[[], None], cancel: NDArray[np.int64]) -> None:
    """Run ``kernel`` (which releases the GIL) in a worker thread and wait for it in
    short slices; if waiting is interrupted (KeyboardInterrupt, or whatever a signal
    handler raises), set ``cancel``, wait for the kernel to return, and re-raise."""
    failure: list[BaseException] = []
    finished = threading.Event()  # not Thread.join: an interrupted join can leave the thread looking alive

    def target() -> None:
        try:
            kernel()
        except BaseException as exc:  # re-raised in the calling thread
            failure.append(exc)
        finally:
            finished.set()

    worker = threading.Thread(target=target, name="lin2net-kernel", daemon=True)
    worker.start()
    try:
        while not finished.wait(_WAIT_SLICE):
            pass
    except BaseException:
        cancel[0] = 1
        finished.wait()
        raise
    if failure:
        raise failure[0]
