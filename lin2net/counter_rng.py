"""Counter-based random numbers for SGD: every draw is a pure function of its coordinates.

A draw is ``mix64`` (the splitmix64 finalizer, a bijection of 64-bit words with
full avalanche) applied to the trajectory's key XOR a counter built from
(step, draw index), so no generator state is carried between steps:

    trajectory_key(seed, r) = mix64(seed_key(seed) + (r + 1) · γ)
    word(k, t, j)           = mix64(k ^ ((t · 2¹⁸ + j + 1) · γ))      (γ = 0x9E3779B97F4A7C15)

for draw j < 2¹⁸ of step t < 2⁴⁶ (mod 2⁶⁴ throughout). One multiply-xorshift
hash per 64-bit word, as splitmix64 costs per output; the XOR (rather than a
sum) keeps the streams of two trajectories from being shifted copies of each
other.

Draws j = 0, 1 of a step give its label-noise normal (Box–Muller); draws
j = 2, 3, … pick its mini-batch. Step t of trajectory r can therefore be
regenerated alone, and results cannot depend on thread count, shard layout or
machine: the arithmetic is 64-bit integer (wrapping), the same in NumPy and in
the numba kernel, which compiles the functions of this module as they are.

The stream of trajectory r depends on the root seed and r only: cells that
differ in η, λ0, Φ, d, batch size or label noise see the same draws (common
random numbers, as for the initializations), so differences between such
cells come from the parameters. With the same draws, a smaller batch is a
prefix of a larger one (without replacement: the first positions of the same
partial shuffle).

NumPy callers pass uint64 *arrays* (scalar uint64 arithmetic in NumPy warns
on the intended wrap-around; array arithmetic wraps silently).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from numba.extending import register_jitable
from numpy.typing import NDArray

UIntArray = NDArray[np.uint64]

GAMMA = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment: 2⁶⁴ / golden ratio, odd
DRAW_BITS = 18  # draws per step < 2¹⁸ (batch sizes up to 2¹⁸ − 2)
MAX_STEP = 2**46  # steps per trajectory < 2⁴⁶, so (step, draw) counters never wrap
STEP_GAMMA = np.uint64((0x9E3779B97F4A7C15 << DRAW_BITS) % 2**64)  # γ · 2¹⁸ mod 2⁶⁴
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_LOW32 = np.uint64(0xFFFFFFFF)
_TWO_POW_M53 = 2.0**-53
NOISE_DRAWS = 2  # draws 0 and 1 of a step: the label-noise normal; the batch starts at draw 2


def seed_key(seed: int) -> int:
    """The 64-bit root of every SGD stream of a sweep with root seed ``seed``."""
    digest = hashlib.sha256(f"lin2net-sgd|{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def trajectory_keys(seed: int, trajectories: NDArray[np.int64]) -> UIntArray:
    """Key of each trajectory index (shape (n,) in, (n,) uint64 out)."""
    rows = np.asarray(trajectories, dtype=np.int64).astype(np.uint64)
    root = np.full(rows.shape, seed_key(seed), dtype=np.uint64)
    keys: UIntArray = mix64(root + (rows + _ONE) * GAMMA)
    return keys


# The functions below are written once for both worlds: NumPy evaluates them on
# uint64 arrays, sgd_compiled compiles them with numba on uint64 scalars
# (register_jitable: plain Python functions when called from Python).


@register_jitable
def mix64(z: Any) -> Any:
    """splitmix64's finalizer (Stafford's Mix13): a bijection with full avalanche."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@register_jitable
def step_counter(t: Any) -> Any:
    """(t · 2¹⁸ + 1) · γ: the counter of draw 0 of step ``t`` (uint64)."""
    return t * STEP_GAMMA + GAMMA


@register_jitable
def word(key: Any, counter: Any, j: Any) -> Any:
    """Draw ``j`` (uint64) of the step whose :func:`step_counter` is ``counter``,
    for the trajectory with key ``key``: a uniform 64-bit word."""
    return mix64(key ^ (counter + j * GAMMA))


@register_jitable
def below(u: Any, m: Any) -> Any:
    """⌊u · m / 2⁶⁴⌋: a uniform integer in [0, m) from a 64-bit word u, m < 2³².

    Exact (the 64 × 32-bit product is formed from two 32-bit halves), so its
    bias is at most m / 2⁶⁴.
    """
    high = (u >> _S32) * m
    low = (u & _LOW32) * m
    return (high + (low >> _S32)) >> _S32


@register_jitable
def open_unit(u: Any) -> Any:
    """A uniform float in (0, 1] from a 64-bit word: (⌊u / 2¹¹⌋ + 1) · 2⁻⁵³ (exact)."""
    return ((u >> _S11) + _ONE) * _TWO_POW_M53
