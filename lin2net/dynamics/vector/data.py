"""The seeded vector data set (x_i, y_i), i < n, x_i ∈ R^m, of the data families ``vector`` and ``relu``.

Both families fit the square loss L = (1/2n) Σ_i (f(x_i) − y_i)² on one fixed data
set, drawn once per (spec, inputs m, target Φ, root seed):

* x (the ``n × m`` matrix X, one data point per row):
  - ``gaussian``: i.i.d. N(0, 1) entries;
  - ``whitened``: a Gaussian draw whose columns are orthonormalised (classical
    Gram–Schmidt, twice) and scaled by √n, so that XᵀX/n = I to rounding
    (|XᵀX/n − I| ≤ a few ulps); it needs n ≥ m. With whitened x and a linear
    teacher the loss is L = ½‖w − β*‖² + const for the end-to-end vector w;
  - an explicit list of n vectors of length m (numbers when m = 1).
* y: the teacher, with a direction u drawn from the data seed and norm Φ:
  β* = Φ u/‖u‖, the sign of u chosen so that its first nonzero component is
  positive (so at m = 1, β* = +Φ exactly and whitened vector data give today's
  ½(ab − Φ)²):
  - ``linear``: y_i = β*ᵀx_i;
  - ``relu``: y_i = relu(β*ᵀx_i), one ReLU neuron;
  - ``noise: σ`` adds label noise ν_i i.i.d. N(0, σ²) *minus its least-squares
    fit on the columns of X*, as SGD's scalar data do (lin2net.dynamics.sgd.data):
    the noise then moves no linear fit, a linear teacher stays the least-squares
    solution (w* = β*), and the vector model's loss floor is ½ mean ν². With
    n ≤ m the columns of X span R^n and no noise is left;
  - an explicit list ``y`` of n labels replaces teacher and noise.

The draw is deterministic given the root seed: three streams (x, teacher, noise)
of their own, keyed like SGD's data streams but apart from them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lin2net.errors import ConfigError
from lin2net.theory.closed_forms import FloatArray
from lin2net.validation import describe, finite_float, positive_int, reject_unknown

DATA_KEYS = ("n", "x", "teacher", "noise", "y")
X_KINDS = ("gaussian", "whitened")
TEACHERS = ("linear", "relu")
MAX_POINTS = 100_000  # data points, as SGD's data
MAX_VALUES = 10_000_000  # n·m entries of X (80 MB)


@dataclass(frozen=True)
class VectorDataSpec:
    """The config's ``data:`` section of a data family (see the module doc).

    ``x`` is ``gaussian``, ``whitened`` or the explicit rows; ``y`` (explicit
    labels) is None unless given, and then ``teacher`` and ``noise`` do not apply.
    """

    n: int = 100
    x: str | tuple[tuple[float, ...], ...] = "gaussian"
    teacher: str = "linear"
    noise: float = 0.0
    y: tuple[float, ...] | None = None

    def as_config(self) -> dict[str, Any]:
        """Plain-data form (YAML-ready), which :func:`parse_vector_data` reads back to this spec."""
        plain: dict[str, Any] = {"n": self.n}
        plain["x"] = self.x if isinstance(self.x, str) else [list(row) for row in self.x]
        if self.y is None:
            plain.update(teacher=self.teacher, noise=self.noise)
        else:
            plain["y"] = list(self.y)
        return plain


def parse_vector_data(mapping: Any, inputs: int) -> VectorDataSpec:
    """Validate a config's ``data:`` (a mapping or None) for a model with ``inputs`` = m.

    Raises :class:`ConfigError` naming the bad key (``data.n``, ``data.x[3]``, …).
    """
    if isinstance(inputs, bool) or not isinstance(inputs, int) or inputs < 1:
        raise ConfigError("model.inputs", f"must be an integer >= 1, got {inputs!r}")
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ConfigError("data", f"must be a mapping with keys {', '.join(DATA_KEYS)}, got {describe(mapping)}")
    reject_unknown(mapping, DATA_KEYS, "data.")
    x = mapping.get("x", "gaussian")
    if isinstance(x, str):
        if x not in X_KINDS:
            raise ConfigError("data.x", f"must be {' or '.join(X_KINDS)} or a list of vectors, got {x!r}")
        n = positive_int("data.n", mapping.get("n", VectorDataSpec.n), maximum=MAX_POINTS)
        rows: str | tuple[tuple[float, ...], ...] = x
        if x == "whitened" and n < inputs:
            raise ConfigError("data.n", f"whitened data need n >= inputs m = {inputs} (XᵀX/n = I), got {n}")
    elif isinstance(x, Sequence) and len(x) > 0:
        if len(x) > MAX_POINTS:
            raise ConfigError("data.x", f"at most {MAX_POINTS} data points, got {len(x)}")
        rows = tuple(_vector(f"data.x[{i}]", row, inputs) for i, row in enumerate(x))
        n = len(rows)
        if "n" in mapping and positive_int("data.n", mapping["n"], maximum=MAX_POINTS) != n:
            problem = f"an explicit data.x has {n} points; omit data.n or give {n}, got {mapping['n']!r}"
            raise ConfigError("data.n", problem)
    else:
        raise ConfigError("data.x", f"must be gaussian, whitened or a non-empty list of vectors, got {describe(x)}")
    if n * inputs > MAX_VALUES:
        raise ConfigError("data.n", f"n·m = {n}·{inputs} exceeds {MAX_VALUES} data values")
    teacher = mapping.get("teacher", "linear")
    if teacher not in TEACHERS:
        raise ConfigError("data.teacher", f"must be {' or '.join(TEACHERS)}, got {describe(teacher)}")
    noise = finite_float("data.noise", mapping.get("noise", 0.0))
    if noise < 0:
        raise ConfigError("data.noise", f"must be >= 0, got {noise!r}")
    labels = None
    if "y" in mapping:
        y = mapping["y"]
        if isinstance(y, str) or not isinstance(y, Sequence):
            raise ConfigError("data.y", f"must be a list of n = {n} numbers, got {describe(y)}")
        if len(y) != n:
            raise ConfigError("data.y", f"must have one label per data point (n = {n}), got {len(y)}")
        labels = tuple(finite_float(f"data.y[{i}]", value) for i, value in enumerate(y))
        if "teacher" in mapping:
            raise ConfigError("data.teacher", "explicit data.y are the labels: omit data.teacher")
        if noise > 0:
            raise ConfigError("data.noise", "explicit data.y are the labels: omit data.noise")
    return VectorDataSpec(n=n, x=rows, teacher=str(teacher), noise=noise, y=labels)


def make_data(spec: VectorDataSpec, inputs: int, phi: float, seed: int) -> tuple[FloatArray, FloatArray]:
    """The data set (X of shape (n, m), y of shape (n,)) of ``spec`` for m = ``inputs``,
    target norm Φ = ``phi`` and root seed ``seed`` (same arguments, same bits)."""
    if isinstance(spec.x, str):
        draw = data_rng(seed, "x").standard_normal((spec.n, inputs))
        x = whitened(draw) if spec.x == "whitened" else draw
    else:
        x = np.array(spec.x, dtype=np.float64).reshape(spec.n, inputs)
    if spec.y is not None:
        return x, np.array(spec.y, dtype=np.float64)
    beta = teacher_vector(inputs, phi, seed)
    y = _rows_dot(x, beta)
    if spec.teacher == "relu":
        y = np.maximum(y, 0.0)
    if spec.noise > 0:
        y = y + _orthogonal_noise(x, spec.noise * data_rng(seed, "noise").standard_normal(spec.n))
    return x, y


def teacher_vector(inputs: int, phi: float, seed: int) -> FloatArray:
    """β* = Φ u/‖u‖ with u ~ N(0, I_m) from the data seed, its first nonzero
    component made positive; at m = 1 exactly (+Φ,)."""
    if inputs == 1:
        return np.array([float(phi)])
    u = data_rng(seed, "teacher").standard_normal(inputs)
    first = u[np.flatnonzero(u)[0]]
    direction = np.copysign(1.0, first) * u / math.sqrt(float(np.sum(u * u)))
    beta: FloatArray = phi * direction
    return beta


def whitened(draw: FloatArray) -> FloatArray:
    """√n Q for the orthonormal Q of the columns of ``draw`` (n ≥ m): classical
    Gram–Schmidt applied twice per column ("twice is enough", Giraud et al. 2005),
    with NumPy's own sums so the bits do not depend on a LAPACK build."""
    n, m = draw.shape
    q = np.zeros((n, m))
    for k in range(m):
        v = draw[:, k].copy()
        for _ in range(2):
            if k:
                coefficients = np.sum(q[:, :k] * v[:, None], axis=0)
                v = v - np.sum(q[:, :k] * coefficients[None, :], axis=1)
        norm = math.sqrt(float(np.sum(v * v)))
        if norm == 0.0:  # only for a degenerate (measure-zero) draw
            raise ValueError("whitened data: the Gaussian draw has dependent columns")
        q[:, k] = v / norm
    scaled: FloatArray = math.sqrt(n) * q
    return scaled


def least_squares(x: FloatArray, y: FloatArray) -> tuple[FloatArray, float]:
    """(w*, floor): the least-squares solution of X w ≈ y (minimum norm if X has
    deficient rank) and ½ mean (y − X w*)², the least loss any linear fit, so the
    vector model at every width, reaches."""
    solution = np.linalg.lstsq(x, y, rcond=None)[0]
    w: FloatArray = np.asarray(solution, dtype=np.float64)
    r: FloatArray = y - _rows_dot(x, w)
    return w, 0.5 * float(np.mean(r * r))


def data_rng(seed: int, stream: str) -> np.random.Generator:
    """The vector data set's own random streams (``x``, ``teacher``, ``noise``)."""
    key = hashlib.sha256(f"vector-data|{stream}".encode()).digest()
    words = tuple(int.from_bytes(key[i : i + 4], "little") for i in range(0, 16, 4))
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=words))


def _orthogonal_noise(x: FloatArray, raw: FloatArray) -> FloatArray:
    """``raw`` minus its least-squares fit on the columns of X."""
    fit, _ = least_squares(x, raw)
    residual: FloatArray = raw - _rows_dot(x, fit)
    return residual


def _rows_dot(x: FloatArray, w: FloatArray) -> FloatArray:
    """X w as the sum over each row's products (the models' order)."""
    dot: FloatArray = np.sum(x * w[None, :], axis=1)
    return dot


def _vector(key: str, row: Any, inputs: int) -> tuple[float, ...]:
    """One explicit data point: m numbers (a bare number when m = 1)."""
    if inputs == 1 and not isinstance(row, (Sequence, Mapping)):
        return (finite_float(key, row),)
    if isinstance(row, str) or not isinstance(row, Sequence) or len(row) != inputs:
        raise ConfigError(key, f"must be a list of m = {inputs} numbers (model.inputs), got {describe(row)}")
    return tuple(finite_float(f"{key}[{k}]", value) for k, value in enumerate(row))
