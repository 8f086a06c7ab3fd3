"""Compiled (numba) twin of :func:`lin2net.integrator.integrate` on the reduced map.

Same map, same stopping rule, same diagnostics as the NumPy reference driver
(read that module first; this one only explains how it is made fast):

* every trajectory is an independent 2-D map, so one worker per thread
  (``prange``) takes the next unclaimed trajectory from a shared atomic
  counter whenever it has room: no thread waits on a slower one, and since
  trajectories never interact the results do not depend on the thread count;
* a compiled loop that advances one trajectory at a time is latency bound
  (each step waits on the previous one). Instead each thread advances
  ``LANES`` trajectories in lock-step with branch-free masked updates, so the
  compiler can put the lanes into SIMD registers. Every ``STEPS_PER_REFILL``
  steps the lanes that stopped are written out and refilled;
* a lane that stops keeps its state frozen at its stopping time T; status,
  sharpness and the outputs are read back from the frozen state with the
  same expressions as the reference, in the same order of operations.

The state (ε, λ), the stopping decisions and every output but one are
bitwise equal to the NumPy driver (IEEE arithmetic in the same order, no
fast-math, no contraction into FMA). The one difference is ``log_q_ratio``: the reference sums T rounded logarithms,
this kernel multiplies the T factors exactly (double-double) and takes one
logarithm at T (see :func:`_run_lanes`); they agree to ~1e-14 relative.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from lin2net.closed_forms import FloatArray
from lin2net.integrator import Status, StopRule, TrajectoryResults

LANES = 16  # trajectories advanced in lock-step per thread (two AVX-512 registers of float64)
STEPS_PER_REFILL = 8  # steps between write-out and refill of stopped lanes

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
def _claim(typingctx: Any, counter: Any) -> Any:
    """Atomically ``counter[0] += 1``; returns the value before. Threads take the
    next unclaimed trajectory with it, so a slow thread never holds up the rest."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", array.data, ir.Constant(ir.IntType(64), 1), "monotonic")

    return types.int64(counter), codegen


_MANTISSA = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000


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
def _log_product(hi: float, lo: float, exponent: float, special: float) -> float:
    """log of the product (hi + lo) · 2^exponent, plus ``special`` (the ±inf/NaN terms)."""
    m, k = _split(hi)
    lo = lo * (m / hi)  # scale lo by the same power of two as hi (exact)
    k += exponent
    return float((k * _LN2_HI + (math.log(m) + (lo / m + k * _LN2_LO))) + special)


@njit(inline="always", **_JIT)
def _eta_sharpness(eps: float, lam: float, eta: float, phi: float) -> float:
    """η·S(ε, λ), the same operations in the same order as closed_forms.sharpness."""
    disc = lam * lam + 8.0 * eps * (eps + phi) + 4.0 * eps * eps
    disc = 0.0 if disc < 0.0 else disc  # np.maximum(disc, 0): keeps NaN
    return eta * (0.5 * (lam + math.sqrt(disc)))


@njit(**_JIT)
def _run_lanes(
    counter: Any,
    eps0: FloatArray,
    lam0: FloatArray,
    eta: float,
    phi: float,
    loss_tol: float,
    max_steps: int,
    threshold: float,
    status: Any,
    steps: Any,
    out: FloatArray,
    eos_out: Any,
) -> None:
    """Integrate trajectories of the batch, taking each next one from ``counter``.

    ``out`` has shape (7, n): eps_T, lambda_T, sharpness_T, log_q_ratio,
    sum_eps2, max_eta_sharpness, max_abs_eps.

    Q(T)/Q(0) = Π_{t<T} |1 − η²ε_t²| is kept as an unevaluated double-double
    product (q_hi + q_lo) · 2^q_exp, each factor first split as m · 2^k with
    m in [√2/2, √2): a handful of multiply-adds per step instead of a logarithm,
    and the log taken once at T is that of the exact product (NumPy's sum of
    rounded logs differs from it by its own rounding, ~√T ulp).
    """
    n = eps0.shape[0]
    eta2 = eta * eta
    # Lane state: residual, scale, and the running diagnostics of the reference.
    eps = np.zeros(LANES)
    lam = np.zeros(LANES)
    q_hi = np.ones(LANES)
    q_lo = np.zeros(LANES)
    q_exp = np.zeros(LANES)
    q_special = np.zeros(LANES)  # sum of the log terms that are ±inf or NaN (factor 0, inf, NaN)
    sum_eps2 = np.zeros(LANES)
    max_eta_sharp = np.full(LANES, -np.inf)
    max_abs_eps = np.zeros(LANES)
    eos = np.zeros(LANES)  # counts kept as float64 so every lane array vectorizes alike
    t = np.zeros(LANES, dtype=np.int64)
    live = np.zeros(LANES, dtype=np.bool_)
    row = np.full(LANES, -1, dtype=np.int64)  # trajectory held by the lane, -1 when empty

    running = 0
    for j in range(LANES):
        following = _claim(counter)
        if following < n:
            eps[j], lam[j], row[j], live[j] = eps0[following], lam0[following], following, True
            running += 1

    while running > 0:
        for _ in range(STEPS_PER_REFILL):
            # Branch-free lock-step over the lanes: the compiler vectorizes this loop.
            for j in range(LANES):
                e = eps[j]
                lj = lam[j]
                alive = live[j]
                eta_sharp = _eta_sharpness(e, lj, eta, phi)
                m = max_eta_sharp[j]
                max_eta_sharp[j] = eta_sharp if (alive & (eta_sharp > m)) else m  # np.fmax: NaN never wins
                converged = 0.5 * e * e <= loss_tol
                bounded = (abs(e) <= threshold) & (abs(lj) <= threshold)
                go = alive & ~converged & bounded & (t[j] < max_steps)
                eps2 = e * e
                eos[j] += 1.0 if (go & (eta_sharp > 2.0)) else 0.0
                # Q factor |1 − η²ε²| is 0 or at least 2⁻⁵³ (never subnormal).
                factor = abs(1.0 - eta2 * eps2)
                normal = go & (factor > 0.0) & (factor < np.inf)
                mantissa, k = _split(factor)
                mantissa = mantissa if normal else 1.0
                hi = q_hi[j]
                q_product = hi * mantissa
                q_lo[j] = q_lo[j] * mantissa + _fma(hi, mantissa, -q_product)
                q_hi[j] = q_product
                q_exp[j] += k if normal else 0.0
                q_special[j] += (-np.inf if factor == 0.0 else factor) if (go & ~normal) else 0.0
                sum_eps2[j] += eps2 if go else 0.0
                a = abs(e)
                max_abs_eps[j] = a if (go & (a > max_abs_eps[j])) else max_abs_eps[j]
                eta_eps = eta * e
                product = e + phi
                eps[j] = e * (1.0 - eta * lj + eta_eps * eta * product) if go else e
                lam[j] = (1.0 + eta_eps * eta_eps) * lj - 4.0 * eta_eps * product if go else lj
                t[j] += 1 if go else 0
                live[j] = go
        # Bring q_hi back into [√2/2, √2) by an exact power of two (it drifts by < 2^±4 per refill).
        for j in range(LANES):
            m, k = _split(q_hi[j])
            q_lo[j] *= m / q_hi[j]
            q_hi[j] = m
            q_exp[j] += k
        # Write out the lanes that stopped (their state is frozen at T) and refill them.
        for j in range(LANES):
            if live[j] or row[j] < 0:
                continue
            r = row[j]
            e = eps[j]
            lj = lam[j]
            if 0.5 * e * e <= loss_tol:
                status[r] = _CONVERGED
            elif not ((abs(e) <= threshold) & (abs(lj) <= threshold)):
                status[r] = _DIVERGED
            else:
                status[r] = _MAX_STEPS
            steps[r] = t[j]
            out[0, r] = e
            out[1, r] = lj
            out[2, r] = _eta_sharpness(e, lj, eta, phi) / eta
            out[3, r] = _log_product(q_hi[j], q_lo[j], q_exp[j], q_special[j])
            out[4, r] = sum_eps2[j]
            out[5, r] = max_eta_sharp[j]
            out[6, r] = max_abs_eps[j]
            eos_out[r] = np.int64(eos[j])
            following = _claim(counter)
            if following < n:
                eps[j], lam[j], row[j], live[j] = eps0[following], lam0[following], following, True
                q_hi[j] = 1.0
                q_lo[j] = q_exp[j] = q_special[j] = sum_eps2[j] = max_abs_eps[j] = eos[j] = 0.0
                max_eta_sharp[j] = -np.inf
                t[j] = 0
            else:
                row[j] = -1
                running -= 1


@njit(parallel=True, **_JIT)
def _run_all(
    eps0: FloatArray,
    lam0: FloatArray,
    eta: float,
    phi: float,
    loss_tol: float,
    max_steps: int,
    threshold: float,
    workers: int,
    status: Any,
    steps: Any,
    out: FloatArray,
    eos_out: Any,
) -> None:
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(workers):
        _run_lanes(counter, eps0, lam0, eta, phi, loss_tol, max_steps, threshold, status, steps, out, eos_out)


def available_threads() -> int:
    """Threads numba may use: all cores unless NUMBA_NUM_THREADS says fewer."""
    return int(numba.config.NUMBA_NUM_THREADS)


def integrate_compiled(
    eps0: FloatArray,
    lam0: FloatArray,
    eta: float,
    phi: float,
    rule: StopRule,
    threads: int | None = None,
) -> TrajectoryResults:
    """Run every trajectory (ε0, λ0), each of shape (n,), to its stopping time.

    Same semantics and outputs as ``integrate(ReducedState(eps0, lam0), eta,
    phi, rule)``. ``threads`` (default: all cores, see :func:`available_threads`)
    sets how many threads share the batch; the results do not depend on it.
    """
    eps0 = np.ascontiguousarray(eps0, dtype=np.float64)
    lam0 = np.ascontiguousarray(lam0, dtype=np.float64)
    if eps0.ndim != 1 or eps0.shape != lam0.shape:
        raise ValueError(f"eps0 and lam0 must be 1-D of equal length, got shapes {eps0.shape} and {lam0.shape}")
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
    n = eps0.shape[0]
    status = np.empty(n, dtype=np.int8)
    steps = np.empty(n, dtype=np.int64)
    eos_steps = np.empty(n, dtype=np.int64)
    out = np.empty((7, n))  # every entry is written by the kernel
    arguments = (
        eps0,
        lam0,
        float(eta),
        float(phi),
        float(rule.loss_tol),
        int(rule.max_steps),
        float(rule.divergence_threshold),
    )
    workers = min(threads, max(1, n // LANES))
    if n and workers == 1:
        # One thread: call the lane loop directly, outside numba's thread pool, so a
        # process that only ever runs one thread never starts OpenMP (which is not
        # fork-safe once started: see the README on process pools).
        _run_lanes(np.zeros(1, dtype=np.int64), *arguments, status, steps, out, eos_steps)
    elif n:
        previous = numba.get_num_threads()
        numba.set_num_threads(workers)
        try:
            _run_all(*arguments, workers, status, steps, out, eos_steps)
        finally:
            numba.set_num_threads(previous)
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
