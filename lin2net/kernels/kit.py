"""The kernel kit: what every compiled (numba) dynamics kernel shares.

A dynamics' kernel (:mod:`lin2net.dynamics.gd.kernel`, :mod:`lin2net.dynamics.sgd.kernel`)
keeps only its own step; everything else is here, once:

* lane sizing (:data:`LANES`) from the vector width of the CPU numba compiles for;
* the lane claim (:func:`claim_next`): threads take trajectories from a shared
  atomic counter ``CLAIM`` at a time, so no thread waits on a slower one and the
  results never depend on the thread count;
* the double-double product Q(T)/Q(0) = Π |1 − x_t| (:func:`exact_factor`,
  :func:`times_factor`, :func:`renormalize`, :func:`log_product`): each factor
  enters exactly as fl(1 − x) plus its rounding error, one logarithm at T;
* the stop rule (:func:`running`) and the status write-out (:func:`stop_status`):
  the reference's ½ε² ≤ tol, |ε|, |λ| ≤ threshold, t < max_steps;
* the Python launcher (:func:`launch`): validation of threads and the cancel
  flag, numba's thread count, and the worker thread that lets a signal handler
  (Ctrl-C, SIGTERM) cancel any kernel within a fraction of a second.

Numba cannot cache a higher-order kernel (one that takes the step as a
function argument), so the kit shares inlined helpers (``inline="always"``)
and intrinsics, and each dynamics writes its own lane loop around them.
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
from numba import njit, types
from numba.extending import intrinsic
from numpy.typing import NDArray

from lin2net.dynamics.protocol import Status

JIT: dict[str, Any] = {"nogil": True, "cache": True, "error_model": "numpy"}
"""Options of every kit helper and kernel: no GIL, cached, NumPy's float semantics (no fast-math)."""


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
CLAIM = 4 * LANES  # trajectories a thread takes from the shared counter at a time

CONVERGED = int(Status.CONVERGED)
DIVERGED = int(Status.DIVERGED)
MAX_STEPS = int(Status.MAX_STEPS)


# --- intrinsics -------------------------------------------------------------------------


@intrinsic
def float_bits(typingctx: Any, x: Any) -> Any:
    """The IEEE-754 bit pattern of a float64 as an int64 (a register move, vectorizable)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def bits_float(typingctx: Any, x: Any) -> Any:
    """The float64 with bit pattern ``x`` (inverse of :func:`float_bits`)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """a·b + c rounded once (llvm.fma): the error of a product is fma(a, b, −a·b) exactly."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fma(*args)

    return types.float64(types.float64, types.float64, types.float64), codegen


@intrinsic
def poll(typingctx: Any, flag: Any) -> Any:
    """``flag[0]``, read with an atomic load: never hoisted out of the loop that polls it."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load_atomic(array.data, "monotonic", 8)

    return types.int64(flag), codegen


@intrinsic
def fetch_add(typingctx: Any, counter: Any, index: Any, amount: Any) -> Any:
    """Atomically ``counter[index] += amount``; returns the value before."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", builder.gep(array.data, [args[1]]), args[2], "monotonic")

    return types.int64(counter, types.int64, types.int64), codegen


# --- floats by bits ---------------------------------------------------------------------

MANTISSA = 0x000FFFFFFFFFFFFF
ONE_BITS = 0x3FF0000000000000
EXPONENT = 0x7FF0000000000000  # bits & EXPONENT is the power of two 2^k ≤ |x| (normal x)
INVERSE_POWER = 0x7FE0000000000000  # its bits minus those of 2^k are those of 2^−k
# ln 2 split so that k·LN2_HI is exact for |k| < 2²¹ (fdlibm's constants).
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10


@njit(inline="always", **JIT)
def small_int_float(k: int) -> float:
    """float(k) for 0 <= k < 2⁵² by bit operations (AVX2 has no packed int64 → float64)."""
    return float(bits_float(k | 0x4330000000000000) - 4503599627370496.0)


@njit(inline="always", **JIT)
def split(x: float) -> tuple[float, float]:
    """x = m · 2^k with m in [√2/2, √2), for x > 0 normal; returns (m, k as float)."""
    bits = float_bits(x)
    mantissa = bits & MANTISSA
    # fdlibm's trick: i is the exponent's lowest bit, set when the mantissa is ≥ √2.
    i = (mantissa + 0x00095F6400000000) & 0x0010000000000000
    return bits_float(mantissa | (i ^ ONE_BITS)), float((bits >> 52) - 1023 + (i >> 52))


@njit(inline="always", **JIT)
def power_of_two(x: float) -> tuple[float, float]:
    """(2^−k, k) for the power of two 2^k <= |x| of a float x (2^1023 and −1023 for 0)."""
    power = float_bits(x) & EXPONENT
    return bits_float(INVERSE_POWER - power), small_int_float(power >> 52) - 1023.0


# --- the double-double product Q(T)/Q(0) -------------------------------------------------


@njit(inline="always", **JIT)
def exact_factor(x: float) -> tuple[float, float]:
    """1 − x as fl(1 − x) plus its rounding error (Fast2Sum; 0 for x >= 1/2, where
    1 − x is exact, and a rounding of it for x > 2): the factor enters exactly."""
    factor = 1.0 - x
    return factor, (1.0 - factor) - x


@njit(inline="always", **JIT)
def times_factor(hi: float, lo: float, factor: float, error: float) -> tuple[float, float]:
    """(hi + lo)·(factor + error) as a double-double (to ~2⁻¹⁰⁰ relative)."""
    product = hi * factor
    return product, fma(hi, error, fma(lo, factor, fma(hi, factor, -product)))


@njit(inline="always", **JIT)
def renormalize(hi: float, lo: float, exponent: float) -> tuple[float, float, float]:
    """(hi, lo)·2^−k, exponent + k with 2^k <= |hi| < 2^(k+1): hi back to [1, 2) by
    an exact power of two (unchanged where hi is 0, inf or NaN)."""
    a = abs(hi)
    normal = (a > 0.0) & (a < np.inf)
    inverse, k = power_of_two(a)
    inverse = inverse if normal else 1.0
    return hi * inverse, lo * inverse, exponent + (k if normal else 0.0)


@njit(inline="always", **JIT)
def log_product(hi: float, lo: float, exponent: float) -> float:
    """log of the product (hi + lo) · 2^exponent; log(hi) itself when hi is 0, inf or NaN."""
    if not (0.0 < hi < np.inf):
        return math.log(hi) if hi >= 0.0 else math.nan
    m, k = split(hi)
    lo = lo * (m / hi)  # scale lo by the same power of two as hi (exact)
    k += exponent
    return float((k * LN2_HI + (math.log(m) + (lo / m + k * LN2_LO))) + 0.0)


@njit(inline="always", **JIT)
def log_abs_product(hi: float, lo: float, exponent: float) -> float:
    """log |(hi + lo) · 2^exponent| (a negative product is the product of the |factors|)."""
    if hi < 0.0:
        return float(log_product(-hi, -lo, exponent))
    return float(log_product(hi, lo, exponent))


# --- the stop rule, written once for every kernel ----------------------------------------


@njit(inline="always", **JIT)
def running(eps: float, lam: float, t: float, loss_tol: float, max_steps: float, threshold: float) -> bool:
    """The reference's stopping rule, negated: True while the trajectory takes another
    step (½ε² > tol, |ε| and |λ| within the threshold, t < max_steps). Branch-free."""
    converged = 0.5 * eps * eps <= loss_tol
    bounded = (abs(eps) <= threshold) & (abs(lam) <= threshold)
    return bool(~converged & bounded & (t < max_steps))


@njit(inline="always", **JIT)
def stop_status(eps: float, lam: float, loss_tol: float, threshold: float) -> int:
    """How a stopped trajectory ended (:class:`Status`): converged before diverged before max_steps."""
    if 0.5 * eps * eps <= loss_tol:
        return CONVERGED
    if not ((abs(eps) <= threshold) & (abs(lam) <= threshold)):
        return DIVERGED
    return MAX_STEPS


# --- the lane claim ---------------------------------------------------------------------


@njit(inline="always", **JIT)
def claim_next(counter: Any, following: int, claimed_end: int, n: int) -> tuple[int, int]:
    """The next row to load and the end of this thread's claimed chunk: rows are
    claimed from the shared ``counter[0]`` ``CLAIM`` at a time (few atomic operations,
    each thread writes mostly its own output lines). The row is >= n when none is left."""
    if following == claimed_end:
        following = fetch_add(counter, 0, CLAIM)
        claimed_end = min(following + CLAIM, n)
    return following, claimed_end


# --- the Python launcher ----------------------------------------------------------------


class KernelCancelled(Exception):
    """The kernel stopped early because its ``cancel`` flag was set; no results."""


def available_threads() -> int:
    """Threads numba may use: all cores unless NUMBA_NUM_THREADS says fewer."""
    return int(numba.config.NUMBA_NUM_THREADS)


def cancel_flag(cancel: NDArray[np.int64] | None) -> NDArray[np.int64]:
    """``cancel`` checked (a contiguous int64 array of shape (1,)), or a fresh one."""
    if cancel is None:
        return np.zeros(1, dtype=np.int64)
    if cancel.dtype != np.int64 or cancel.shape != (1,) or not cancel.flags.c_contiguous:
        raise ValueError("cancel must be a contiguous int64 array of shape (1,)")
    return cancel


def launch(
    one_thread: Callable[[NDArray[np.int64]], None],
    many_threads: Callable[[NDArray[np.int64], int], None],
    n: int,
    threads: int | None,
    cancel: NDArray[np.int64],
) -> None:
    """Run a kernel over ``n`` trajectories and return once every one is written out.

    ``one_thread(counter)`` runs the lane loop in the calling thread;
    ``many_threads(counter, workers)`` its ``prange`` over ``workers`` lane loops.
    Either claims rows from ``counter[0]`` (:func:`claim_next`), adds the rows it
    wrote out to ``counter[1]`` and returns early once ``cancel[0]`` is nonzero
    (polled at every refill). ``threads`` (default: all, see
    :func:`available_threads`) bounds the workers; results never depend on it.
    The kernel runs in a worker thread while this one waits in short slices, so a
    signal handler runs promptly: on KeyboardInterrupt (or any exception a handler
    raises) the kernel is cancelled and joined, and the exception propagates.
    Raises :class:`KernelCancelled` if the kernel returned before finishing.
    """
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
    counter = np.zeros(2, dtype=np.int64)  # [trajectories claimed, trajectories written out]
    workers = min(threads, max(1, -(-n // LANES)))

    def kernel() -> None:
        if workers == 1:
            # One thread: call the lane loop directly, outside numba's thread pool, so a
            # process that only ever runs one thread never starts OpenMP (which is not
            # fork-safe once started: a process pool forked after it could hang).
            one_thread(counter)
        else:
            numba.set_num_threads(workers)  # per calling thread: this worker only
            many_threads(counter, workers)

    if n:
        _run_in_worker(kernel, cancel)
    if counter[1] < n:
        raise KernelCancelled(f"cancelled: {int(counter[1])} of {n} trajectories were finished")


WAIT_SLICE = 0.05  # seconds between chances for a signal handler to run while the kernel works


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
        while not finished.wait(WAIT_SLICE):
            pass
    except BaseException:
        cancel[0] = 1
        finished.wait()
        raise
    if failure:
        raise failure[0]
