"""Model families in a sweep: the ``model:`` key, explicit starts, random starts and each family's hook.

``model: {family: shallow | deep | vector | relu, depth: N, inputs: m}``
(docs/config.md). ``shallow`` (the default) is today's model on the reduced
map; the others are a square loss L(θ) on a flat parameter vector θ ∈ R^D
(:class:`lin2net.dynamics.family.Model`), stepped by the generic dynamics of
:mod:`lin2net.dynamics.parameter_vector`.

θ layouts (fixed: explicit starts and the reductions depend on them):

* deep, depth N, width d: θ = (W_1, …, W_N) each raveled by rows, W_1 ∈ R^{d×1},
  W_k ∈ R^{d×d}, W_N ∈ R^{1×d}: D = 2d + (N − 2)d²;
* vector, width d, inputs m: θ = (A by rows (d×m), b ∈ R^d): D = dm + d;
* relu, width d, inputs m: θ = (a_1, …, a_d ∈ R^m, b ∈ R^d): D = dm + d.

A family's folder ``lin2net/dynamics/<family>/`` provides the hook module
``lin2net.dynamics.<family>.family`` with one function (see :func:`hook`)::

    build_model(config: SweepConfig, cell: Cell) -> Model

the model of one grid cell (width ``cell.d``, ``cell.value("depth")`` or
``cell.value("inputs")``, target ``cell.phi``; data families build their data
set with ``make_data(config.data, inputs, cell.phi, config.seed)``).

Random starts draw θ ∈ R^D with :func:`lin2net.dynamics.initialization.scaled_draws`,
whose stream is the shallow model's when D = 2d (deep at depth 2, vector and relu at m = 1):
there the same seed gives the same (a, b) as a shallow sweep.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from lin2net.errors import ConfigError
from lin2net.validation import finite_float, reject_unknown

if TYPE_CHECKING:
    from lin2net.dynamics.family import Model
    from lin2net.sweep.config import SweepConfig
    from lin2net.sweep.grid import Cell

FloatArray = np.ndarray
FAMILIES = ("shallow", "deep", "vector", "relu")
DATA_FAMILIES = ("vector", "relu")
MODEL_KEYS = ("family", "depth", "inputs")
MAX_DEPTH = 64
MAX_INPUTS = 100_000
MAX_SIZE = 10_000_000  # parameters per trajectory (D)

HOOK_MODULES = {family: f"lin2net.dynamics.{family}.family" for family in FAMILIES[1:]}
"""Where each family's ``build_model`` lives."""


@dataclass(frozen=True)
class ExplicitTheta:
    """One given start θ (shape (D,)) of a family, with the sizes it fixes."""

    family: str
    theta: tuple[float, ...]
    d: int
    depth: int | None = None
    inputs: int | None = None

    @property
    def lambda0(self) -> float:
        values = np.asarray(self.theta, dtype=np.float64)
        return float(values @ values)

    def as_config(self) -> dict[str, Any]:
        """The ``init.explicit`` mapping this start was read from (nested lists by rows)."""
        theta = list(self.theta)
        d = self.d
        if self.family == "deep":
            assert self.depth is not None
            layers: list[Any] = []
            sizes = layer_shapes(self.depth, d)
            start = 0
            for rows, cols in sizes:
                flat = theta[start : start + rows * cols]
                layers.append([flat[r * cols : (r + 1) * cols] for r in range(rows)])
                start += rows * cols
            return {"layers": layers}
        assert self.inputs is not None
        m = self.inputs
        matrix = [theta[j * m : (j + 1) * m] for j in range(d)]
        return {"A": matrix, "b": theta[d * m :]} if self.family == "vector" else {"a": matrix, "b": theta[d * m :]}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.family, list(self.theta)]).encode()).hexdigest()[:8]


def layer_shapes(depth: int, d: int) -> list[tuple[int, int]]:
    """(rows, columns) of W_1 … W_N: d×1, d×d (N − 2 times), 1×d."""
    return [(d, 1), *([(d, d)] * (depth - 2)), (1, d)]


def parameter_count(family: str, d: int, depth: int | None = None, inputs: int | None = None) -> int:
    """D: 2d + (N − 2)d² (deep), dm + d (vector, relu), 2d (shallow)."""
    if family == "deep":
        assert depth is not None
        return 2 * d + (depth - 2) * d * d
    if family in DATA_FAMILIES:
        assert inputs is not None
        return d * inputs + d
    return 2 * d


def parse_model(spec: Any) -> dict[str, Any]:
    """``model:`` as plain values: ``family`` (default shallow), ``depth`` or ``inputs``
    when given. Checks the keys each family reads (ConfigError naming the key)."""
    if spec is None:
        return {"family": "shallow"}
    if not isinstance(spec, Mapping):
        raise ConfigError("model", f"must be a mapping such as {{family: deep, depth: 3}}, got {_show(spec)}")
    reject_unknown(spec, MODEL_KEYS, "model.")
    family = spec.get("family", "shallow")
    if not isinstance(family, str) or family not in FAMILIES:
        raise ConfigError("model.family", f"must be one of {', '.join(FAMILIES)}, got {_show(family)}")
    out: dict[str, Any] = {"family": family}
    if "depth" in spec:
        if family != "deep":
            raise ConfigError("model.depth", f"only for family: deep (this is family: {family})")
        out["depth"] = _count("model.depth", spec["depth"], 2, MAX_DEPTH)
    if "inputs" in spec:
        if family not in DATA_FAMILIES:
            raise ConfigError("model.inputs", f"only for family: vector or relu (this is family: {family})")
        out["inputs"] = _count("model.inputs", spec["inputs"], 1, MAX_INPUTS)
    return out


def _count(key: str, value: Any, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise ConfigError(key, f"must be an integer >= {minimum}, got {_show(value)}")
    if not minimum <= value <= maximum:
        raise ConfigError(key, f"must be an integer from {minimum} to {maximum}, got {_show(value)}")
    return int(value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _matrix(key: str, value: Any) -> list[list[float]]:
    """A non-empty rectangular list of lists of finite numbers (by rows)."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) == 0:
        raise ConfigError(key, f"must be a non-empty list of rows (lists of numbers), got {_show(value)}")
    rows: list[list[float]] = []
    for i, row in enumerate(value):
        if not isinstance(row, Sequence) or isinstance(row, str) or len(row) == 0:
            raise ConfigError(f"{key}[{i}]", f"must be a non-empty list of numbers (a row), got {_show(row)}")
        rows.append([finite_float(f"{key}[{i}][{j}]", x) for j, x in enumerate(row)])
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise ConfigError(key, f"rows must have equal lengths, got lengths {sorted(widths)}")
    return rows


def _vector(key: str, value: Any) -> list[float]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) == 0:
        raise ConfigError(key, f"must be a non-empty list of numbers, got {_show(value)}")
    return [finite_float(f"{key}[{i}]", x) for i, x in enumerate(value)]


def parse_explicit(family: str, spec: Any) -> ExplicitTheta:
    """``init: {explicit: …}`` of a family: deep ``{layers: [W_1, …, W_N]}``, vector
    ``{A: [[…]…], b: […]}``, relu ``{a: [[…] per neuron], b: […]}`` (matrices by rows),
    shape-checked (ConfigError naming the key)."""
    keys = {"deep": ("layers",), "vector": ("A", "b"), "relu": ("a", "b")}[family]
    if not isinstance(spec, Mapping) or set(spec) != set(keys):
        shown = ", ".join(keys)
        raise ConfigError("init.explicit", f"family: {family} takes exactly the keys {shown}, got {_show(spec)}")
    if family == "deep":
        layers = spec["layers"]
        if not isinstance(layers, Sequence) or isinstance(layers, str) or len(layers) < 2:
            raise ConfigError(
                "init.explicit.layers", f"must be a list of N >= 2 matrices W_1 … W_N, got {_show(layers)}"
            )
        matrices = [_matrix(f"init.explicit.layers[{k}]", w) for k, w in enumerate(layers)]
        depth, d = len(matrices), len(matrices[0])
        for k, (want, got) in enumerate(zip(layer_shapes(depth, d), matrices, strict=True)):
            shape = (len(got), len(got[0]))
            if shape != want:
                what = "W_1 is d×1" if k == 0 else ("W_N is 1×d" if k == depth - 1 else "W_k is d×d")
                problem = f"has shape {shape[0]}×{shape[1]}, expected {want[0]}×{want[1]} ({what}, d = {d})"
                raise ConfigError(f"init.explicit.layers[{k}]", problem)
        theta = tuple(x for w in matrices for row in w for x in row)
        if depth > MAX_DEPTH:
            raise ConfigError("init.explicit.layers", f"at most {MAX_DEPTH} layers, got {depth}")
        return _checked(ExplicitTheta(family, theta, d, depth=depth))
    name = "A" if family == "vector" else "a"
    matrix = _matrix(f"init.explicit.{name}", spec[name])
    b = _vector("init.explicit.b", spec["b"])
    d, m = len(matrix), len(matrix[0])
    if len(b) != d:
        rows = "rows of A (d×m)" if family == "vector" else "neurons a_j"
        raise ConfigError("init.explicit.b", f"must have d = {d} entries (one per {rows}), got {len(b)}")
    theta = tuple(x for row in matrix for x in row) + tuple(b)
    return _checked(ExplicitTheta(family, theta, d, inputs=m))


def _checked(explicit: ExplicitTheta) -> ExplicitTheta:
    lam = explicit.lambda0
    if not lam <= 1e150:
        raise ConfigError("init.explicit", f"‖θ‖² must be at most 1e+150, got {lam!r}")
    if lam == 0:
        raise ConfigError("init.explicit", "θ = 0 is a saddle point: gradient descent never moves from it")
    if len(explicit.theta) > MAX_SIZE:
        raise ConfigError("init.explicit", f"at most {MAX_SIZE} parameters, got {len(explicit.theta)}")
    return explicit


def cell_size(config: SweepConfig, cell: Cell) -> int:
    """D of the cell's model."""
    family = config.family
    return parameter_count(
        family,
        cell.d,
        depth=int(cell.value("depth")) if family == "deep" else None,
        inputs=int(cell.value("inputs")) if family in DATA_FAMILIES else None,
    )


def theta_blocks(
    config: SweepConfig, cell: Cell, first: int = 0, stop: int | None = None
) -> Iterator[tuple[int, FloatArray]]:
    """(start, θ of shape (n, D)) block by block: ``sphere`` uniform on ‖θ‖² = λ0,
    ``gaussian`` i.i.d. N(0, λ0/D) entries, ``explicit`` the one given θ. Only
    blocks holding some of trajectories ``first`` … ``stop − 1`` are drawn."""
    stop = config.trajectories if stop is None else stop
    if config.explicit_theta is not None:
        yield 0, np.asarray(config.explicit_theta.theta, dtype=np.float64)[None, :]
        return
    from lin2net.dynamics.initialization import scaled_draws

    size = cell_size(config, cell)
    yield from scaled_draws(config.seed, config.init, cell.d, size, cell.lambda0, config.trajectories, first, stop)


def initial_theta(config: SweepConfig, cell: Cell, first: int = 0, stop: int | None = None) -> FloatArray:
    """θ of trajectories ``first`` … ``stop − 1`` of the cell, shape (stop − first, D)
    (whole blocks drawn, then cut: a row never depends on the part that computes it)."""
    stop = config.trajectories if stop is None else stop
    parts = []
    for start, theta in theta_blocks(config, cell, first, stop):
        n = theta.shape[0]
        parts.append(theta[max(first, start) - start : min(stop, start + n) - start])
    return np.concatenate(parts, axis=0)


def hook(family: str) -> ModuleType:
    """The family's hook module, ``lin2net.dynamics.<family>.family``."""
    return importlib.import_module(HOOK_MODULES[family])


def build_model(config: SweepConfig, cell: Cell) -> Model:
    """The model of one cell, from its family's hook."""
    model: Model = hook(config.family).build_model(config, cell)
    return model
