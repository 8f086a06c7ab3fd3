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

Draws j = 0, 1 of an even step 2i give the label-noise normals of steps 2i
and 2i + 1 (the cosine and the sine of one Box–Muller pair); draws j = 2, 3, …
of every step pick its mini-batch. Step t of trajectory r can therefore be
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
_S50 = np.uint64(50)
_LOW50 = np.uint64((1 << 50) - 1)
_TWO_POW_M50 = 2.0**-50
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
    bias is at most m / 2⁶⁴. (``m & 2³² − 1`` is m: it tells the compiler that
    both products are 32 × 32-bit, one cheap vector multiply each.)
    """
    m32 = m & _LOW32
    high = (u >> _S32) * m32
    low = (u & _LOW32) * m32
    return (high + (low >> _S32)) >> _S32


@register_jitable
def open_unit(u: Any) -> Any:
    """A uniform float in (0, 1] from a 64-bit word: (⌊u / 2¹¹⌋ + 1) · 2⁻⁵³ (exact)."""
    return ((u >> _S11) + _ONE) * _TWO_POW_M53


# A standard normal from two words by Box–Muller, z = √(−2 ln u₁) · cos(2π u₂), with
# ln and cos written out as arithmetic (fdlibm's polynomials) so that NumPy and the
# compiled kernel produce the same bits and the kernel's lane loop vectorizes (a libm
# call would not). Error below 2 ulp in each factor; u₁ in (0, 1], u₂ in (0, 1].
LG = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)
SIN = (
    -1.66666666666666324348e-01,
    8.33333333332248946124e-03,
    -1.98412698298579493134e-04,
    2.75573137070700676789e-06,
    -2.50507602534068634195e-08,
    1.58969099521155010221e-10,
)
COS = (
    4.16666666666666019037e-02,
    -1.38888888888741095749e-03,
    2.48015872894767294178e-05,
    -2.75573143513906633035e-07,
    2.08757232129817482790e-09,
    -1.13596475577881948265e-11,
)
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
PI_OVER_4 = 7.85398163397448278999e-01
_LG1, _LG2, _LG3, _LG4, _LG5, _LG6, _LG7 = LG
_S1, _S2, _S3, _S4, _S5, _S6 = SIN
_C1, _C2, _C3, _C4, _C5, _C6 = COS


@register_jitable
def log_reduced(m: Any, k: Any) -> Any:
    """ln(m · 2^k) for m in [√2/2, √2) (fdlibm's __ieee754_log after its reduction)."""
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    return k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)


@register_jitable
def sin_kernel(x: Any) -> Any:
    """sin x for |x| <= π/4 (fdlibm's __kernel_sin with no tail)."""
    z = x * x
    return x + z * x * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))))


@register_jitable
def cos_kernel(x: Any) -> Any:
    """cos x for |x| <= π/4 (fdlibm's __kernel_cos with no tail)."""
    z = x * x
    hz = 0.5 * z
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + z * (z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * _C6)))))))


@register_jitable
def turn_parts(u_word: Any) -> Any:
    """For u = open_unit(u_word): (octant ⌊8u⌋ as uint64, x in [0, π/4]) such that
    cos(2πu) is ±cos x or ±sin x by the octant (see sgd.standard_normal)."""
    count = (u_word >> _S11) + _ONE  # u = count · 2⁻⁵³, count in [1, 2⁵³]
    octant = count >> _S50
    frac = (count & _LOW50) * _TWO_POW_M50  # 8u − octant, exact
    odd = octant & _ONE
    return octant, (frac + odd * (1.0 - 2.0 * frac)) * PI_OVER_4  # frac, or 1 − frac when odd
