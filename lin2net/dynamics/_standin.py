"""TEMPORARY stand-ins for the family hooks (fam-deep's lin2net/dynamics/deep/family.py,
fam-data's lin2net/dynamics/vector/ and relu/), so that the integration (config,
registry, generic dynamics, cells, CLI) can be built and tested before they land.

:func:`lin2net.dynamics.families.hook` uses this module only while
``lin2net.dynamics.<family>.family`` does not exist; the config uses
:func:`parse_vector_data` only while ``lin2net.dynamics.vector.data`` does not.
Delete this file once both folders are merged. Minimal on purpose: plain
NumPy models with hand-derived gradients and HVPs, the Hessian from HVP
columns, GF sharpness only where a closed form exists (else NaN), imbalance
Σ_j |‖row j of A‖² − b_j²| (reduces to the shallow Q = Σ_i |a_i² − b_i²|).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from lin2net.errors import ConfigError

if TYPE_CHECKING:
    from lin2net.sweep.config import SweepConfig
    from lin2net.sweep.grid import Cell

FloatArray = np.ndarray
X_KINDS = ("gaussian", "whitened")
TEACHERS = ("linear", "relu")
DATA_KEYS = ("n", "x", "teacher", "noise", "y")


@dataclass(frozen=True)
class VectorDataSpec:
    n: int = 100
    x: str | tuple[tuple[float, ...], ...] = "gaussian"
    teacher: str = "linear"
    noise: float = 0.0
    y: tuple[float, ...] | None = None


def parse_vector_data(mapping: Any, inputs: int) -> VectorDataSpec:
    """``data:`` of a data family (stand-in for fam-data's parser)."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ConfigError("data", f"must be a mapping with keys {', '.join(DATA_KEYS)}")
    for key in mapping:
        if key not in DATA_KEYS:
            raise ConfigError(f"data.{key}", f"unknown key; valid keys: {', '.join(DATA_KEYS)}")
    x = mapping.get("x", "gaussian")
    if isinstance(x, str):
        if x not in X_KINDS:
            raise ConfigError("data.x", f"must be {', '.join(X_KINDS)} or a list of vectors, got {x!r}")
        n = mapping.get("n", 100)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > 100_000:
            raise ConfigError("data.n", f"must be an integer from 1 to 100000, got {n!r}")
        if x == "whitened" and n < inputs:
            raise ConfigError("data.n", f"whitened data need n >= inputs = {inputs}, got {n}")
        xs: str | tuple[tuple[float, ...], ...] = x
    elif isinstance(x, Sequence) and len(x) > 0:
        rows = []
        for i, row in enumerate(x):
            if not isinstance(row, Sequence) or isinstance(row, str) or len(row) != inputs:
                raise ConfigError(f"data.x[{i}]", f"must be a list of inputs = {inputs} numbers, got {row!r}")
            rows.append(tuple(float(v) for v in row))
        xs, n = tuple(rows), len(rows)
    else:
        raise ConfigError("data.x", f"must be {', '.join(X_KINDS)} or a non-empty list of vectors")
    teacher = mapping.get("teacher", "linear")
    if teacher not in TEACHERS:
        raise ConfigError("data.teacher", f"must be one of {', '.join(TEACHERS)}, got {teacher!r}")
    noise = mapping.get("noise", 0.0)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise ConfigError("data.noise", f"must be a number >= 0, got {noise!r}")
    y = mapping.get("y")
    labels = None
    if y is not None:
        if not isinstance(y, Sequence) or isinstance(y, str) or len(y) != n:
            raise ConfigError("data.y", f"must be a list of n = {n} numbers")
        labels = tuple(float(v) for v in y)
    return VectorDataSpec(n=n, x=xs, teacher=teacher, noise=float(noise), y=labels)


def _rng(seed: int, what: str) -> np.random.Generator:
    key = hashlib.sha256(f"lin2net-data|{what}".encode()).digest()
    words = tuple(int.from_bytes(key[i : i + 4], "little") for i in range(0, 16, 4))
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=words))


@lru_cache(maxsize=16)
def make_data(spec: VectorDataSpec, inputs: int, phi: float, seed: int) -> tuple[FloatArray, FloatArray]:
    """(X (n, m), y (n,)): whitened X has XᵀX/n = I; teacher β* has ‖β*‖ = Φ, its
    first nonzero component positive."""
    m = inputs
    if isinstance(spec.x, str):
        x = _rng(seed, f"x|{m}|{spec.n}").standard_normal((spec.n, m))
        if spec.x == "whitened":
            q, r = np.linalg.qr(x)
            q *= np.sign(np.diag(r))[None, :]
            x = np.sqrt(spec.n) * q
    else:
        x = np.array(spec.x, dtype=np.float64)
    direction = _rng(seed, f"teacher|{m}").standard_normal(m)
    direction *= np.sign(direction[np.flatnonzero(direction)[0]])
    beta = phi * direction / np.linalg.norm(direction)
    if spec.y is not None:
        y = np.array(spec.y, dtype=np.float64)
    else:
        y = x @ beta
        if spec.teacher == "relu":
            y = np.maximum(y, 0.0)
        if spec.noise > 0:
            y = y + spec.noise * _rng(seed, f"noise|{spec.n}").standard_normal(spec.n)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


class _Common:
    size: int
    d: int
    m: int

    def _split(self, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        n = theta.shape[0]
        return theta[:, : self.d * self.m].reshape(n, self.d, self.m), theta[:, self.d * self.m :]

    def hessian(self, theta: FloatArray) -> FloatArray:
        n, size = theta.shape
        eye = np.eye(size)
        columns = [self.hvp(theta, np.broadcast_to(eye[i], (n, size))) for i in range(size)]  # type: ignore[attr-defined]
        return np.stack(columns, axis=2)

    def residual(self, theta: FloatArray) -> FloatArray:
        out: FloatArray = np.sqrt(2.0 * self.loss(theta))  # type: ignore[attr-defined]
        return out


class VectorModel(_Common):
    """f(x) = bᵀAx on data (X, y); L = (1/2n) Σ (f(x_i) − y_i)²."""

    def __init__(self, d: int, m: int, x: FloatArray, y: FloatArray) -> None:
        self.d, self.m, self.x, self.y = d, m, x, y
        self.size = d * m + d
        self.cov = x.T @ x / x.shape[0]

    def loss(self, theta: FloatArray) -> FloatArray:
        a, b = self._split(theta)
        w = np.einsum("ndm,nd->nm", a, b)
        r = w @ self.x.T - self.y[None, :]
        out: FloatArray = 0.5 * np.mean(r * r, axis=1)
        return out

    def _gw(self, w: FloatArray, batch: Any = None) -> FloatArray:
        if batch is None:
            r = w @ self.x.T - self.y[None, :]
            out: FloatArray = r @ self.x / self.x.shape[0]
            return out
        xb, yb = self.x[batch], self.y[batch]
        r = np.einsum("nbm,nm->nb", xb, w) - yb
        out = np.einsum("nbm,nb->nm", xb, r) / batch.shape[1]
        return out

    def gradient(self, theta: FloatArray, batch: Any = None) -> FloatArray:
        a, b = self._split(theta)
        g = self._gw(np.einsum("ndm,nd->nm", a, b), batch)
        ga = b[:, :, None] * g[:, None, :]
        gb = np.einsum("ndm,nm->nd", a, g)
        return np.concatenate([ga.reshape(theta.shape[0], -1), gb], axis=1)

    def hvp(self, theta: FloatArray, v: FloatArray) -> FloatArray:
        a, b = self._split(theta)
        va, vb = self._split(v)
        g = self._gw(np.einsum("ndm,nd->nm", a, b))
        dw = np.einsum("ndm,nd->nm", va, b) + np.einsum("ndm,nd->nm", a, vb)
        sdw = dw @ self.cov
        ha = b[:, :, None] * sdw[:, None, :] + vb[:, :, None] * g[:, None, :]
        hb = np.einsum("ndm,nm->nd", a, sdw) + np.einsum("ndm,nm->nd", va, g)
        return np.concatenate([ha.reshape(theta.shape[0], -1), hb], axis=1)

    def imbalance(self, theta: FloatArray) -> FloatArray:
        a, b = self._split(theta)
        out: FloatArray = np.abs(np.einsum("ndm,ndm->nd", a, a) - b * b).sum(axis=1)
        return out

    def gradient_flow_sharpness(self, theta: FloatArray) -> FloatArray:
        if self.m != 1:
            return np.full(theta.shape[0], np.nan)
        a, b = self._split(theta)
        a = a[:, :, 0]
        s = float(self.cov[0, 0])
        target = float(self.x[:, 0] @ self.y) / self.x.shape[0] / s
        sp = np.einsum("nd,nd->n", a + b, a + b) * np.einsum("nd,nd->n", a - b, a - b)
        out: FloatArray = s * np.sqrt(4 * target * target + sp)
        return out


class ReluModel(_Common):
    """f(x) = Σ_j b_j relu(a_jᵀx) on data (X, y)."""

    def __init__(self, d: int, m: int, x: FloatArray, y: FloatArray) -> None:
        self.d, self.m, self.x, self.y = d, m, x, y
        self.size = d * m + d

    def _forward(self, theta: FloatArray, batch: Any = None) -> tuple[Any, ...]:
        a, b = self._split(theta)
        if batch is None:
            z = np.einsum("ndm,im->nid", a, self.x)
            x, y = np.broadcast_to(self.x, (theta.shape[0], *self.x.shape)), self.y[None, :]
        else:
            x, y = self.x[batch], self.y[batch]
            z = np.einsum("ndm,nim->nid", a, x)
        on = z > 0
        h = np.where(on, z, 0.0)
        r = np.einsum("nid,nd->ni", h, b) - y
        return a, b, x, on, h, r

    def loss(self, theta: FloatArray) -> FloatArray:
        r = self._forward(theta)[-1]
        out: FloatArray = 0.5 * np.mean(r * r, axis=1)
        return out

    def gradient(self, theta: FloatArray, batch: Any = None) -> FloatArray:
        a, b, x, on, h, r = self._forward(theta, batch)
        k = r.shape[1]
        gb = np.einsum("ni,nid->nd", r, h) / k
        ga = np.einsum("ni,nid,nim->ndm", r, on, x) * b[:, :, None] / k
        return np.concatenate([ga.reshape(theta.shape[0], -1), gb], axis=1)

    def hvp(self, theta: FloatArray, v: FloatArray) -> FloatArray:
        a, b, x, on, h, r = self._forward(theta)
        va, vb = self._split(v)
        k = r.shape[1]
        vz = np.einsum("ndm,nim->nid", va, x) * on
        df = np.einsum("nid,nd->ni", h, vb) + np.einsum("nid,nd->ni", vz, b)
        hb = (np.einsum("ni,nid->nd", df, h) + np.einsum("ni,nid->nd", r, vz)) / k
        weight = df[:, :, None] * b[:, None, :] + r[:, :, None] * vb[:, None, :]
        ha = np.einsum("nid,nid,nim->ndm", weight, on, x) / k
        return np.concatenate([ha.reshape(theta.shape[0], -1), hb], axis=1)

    imbalance = VectorModel.imbalance

    def gradient_flow_sharpness(self, theta: FloatArray) -> FloatArray:
        return np.full(theta.shape[0], np.nan)


def build_model(config: SweepConfig, cell: Cell) -> Any:
    """The stand-in model of one cell."""
    family = config.family
    if family == "deep":  # fam-deep's model (merged); its hook module is still to come
        from lin2net.dynamics.deep.model import DeepModel

        return DeepModel(int(cell.value("depth")), cell.d, cell.phi)
    inputs = int(cell.value("inputs"))
    assert config.data is not None
    x, y = make_data(config.data, inputs, cell.phi, config.seed)
    model = VectorModel if family == "vector" else ReluModel
    return model(cell.d, inputs, x, y)
