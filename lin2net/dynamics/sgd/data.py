"""The fixed, seeded scalar data set (x_i, y_i), i < n, that SGD samples from.

Model in data form: L(a, b) = (1/2n) Σ_i (a·b x_i − y_i)². The data are built so
that this is the paper's loss with target Φ (a grid axis) plus a constant:

* x: ``gaussian`` (i.i.d. N(0, 1)), ``ones``, or an explicit list; then scaled
  so that mean x² = 1 (exactly in the left-to-right sum wherever nudging the
  last x by ulps achieves that, which is almost always);
* y_i = Φ x_i + ν_i with ν_i i.i.d. N(0, noise²), minus its least-squares fit
  on x, so that mean(x ν) = 0 (up to rounding) and Φ* = mean(x y) = Φ. With
  noise 0 the data interpolate (y = Φ x): every sample is fitted at a·b = Φ.

Then, with ε = a·b − Φ, the full-batch loss is ½ ε² + ½ mean(ν²), and a batch B
gives the gradient factor g = s_B ε − r_B with s_B = mean_B x², r_B = mean_B x ν
(= mean_B x y − Φ s_B): only x² and x ν per data point are needed, and they do
not depend on Φ, so one data set serves every cell of a sweep.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from lin2net.theory.closed_forms import FloatArray

MAX_DATA = 100_000  # data points; the kernel keeps one index array of this length per lane


@dataclass(frozen=True)
class DataSpec:
    """The config's ``data:`` section: ``x`` is ``gaussian``, ``ones`` or the explicit values."""

    n: int = 100
    x: str | tuple[float, ...] = "gaussian"
    noise: float = 0.0


@dataclass(frozen=True)
class DataSet:
    """Per data point (shape (n,)): x, the residual ν of y on Φ x, and the two
    products the dynamics use, x² and x ν; ``noise_floor`` = ½ mean(ν²)."""

    x: FloatArray
    nu: FloatArray
    x2: FloatArray
    x_nu: FloatArray
    noise_floor: float

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def labels(self, phi: float) -> FloatArray:
        """y_i = Φ x_i + ν_i."""
        y: FloatArray = phi * self.x + self.nu
        return y

    @property
    def full_moments(self) -> tuple[float, float]:
        """(mean x², mean x ν) over all points, summed in index order (the full batch)."""
        return float(_ordered_mean(self.x2)), float(_ordered_mean(self.x_nu))


def _ordered_mean(values: FloatArray) -> float:
    """Left-to-right sum / n, the order the kernel uses (np.sum is pairwise)."""
    total = 0.0
    for value in values.tolist():
        total += value
    return total / len(values)


def _exactly_normalized(x: FloatArray) -> FloatArray:
    """x with its last entry nudged (by ulps) so that mean x² is 1.0 exactly in the
    kernel's summation order: then a full batch of interpolating data is GD bit for bit."""
    x2 = x * x
    head = 0.0
    for value in x2[:-1].tolist():
        head += value
    last = float(len(x)) - head
    if last > 0 and head + last == float(len(x)):
        candidate = x.copy()
        candidate[-1] = np.copysign(np.sqrt(last), x[-1])
        if _ordered_mean(candidate * candidate) == 1.0:
            return candidate
    return x


def data_rng(seed: int, stream: str) -> np.random.Generator:
    """The data set's own random streams (``x`` and ``noise``), apart from every other."""
    key = hashlib.sha256(f"sgd-data|{stream}".encode()).digest()
    words = tuple(int.from_bytes(key[i : i + 4], "little") for i in range(0, 16, 4))
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=words))


def build_data(spec: DataSpec, seed: int) -> DataSet:
    """The data set of ``spec`` for root seed ``seed`` (same inputs, same bits)."""
    if isinstance(spec.x, str):
        x = np.ones(spec.n) if spec.x == "ones" else data_rng(seed, "x").standard_normal(spec.n)
    else:
        x = np.asarray(spec.x, dtype=np.float64)
    if not np.any(x):
        raise ValueError("data x must not be all zero (mean x² = 1 cannot be reached)")
    x = _exactly_normalized(x / np.sqrt(np.mean(x * x)))
    nu = np.zeros(x.shape[0])
    if spec.noise > 0:
        raw = spec.noise * data_rng(seed, "noise").standard_normal(x.shape[0])
        nu = raw - (np.dot(x, raw) / np.dot(x, x)) * x  # remove the part Φ would absorb
    return DataSet(x=x, nu=nu, x2=x * x, x_nu=x * nu, noise_floor=0.5 * float(np.mean(nu * nu)))
