"""Grid expansion: the Cartesian product of a config's axes, as :class:`Cell` s.

A cell's identity and its random numbers derive from its parameter values,
never from its position in the grid, so reordering an axis or adding values
to it leaves every existing cell's ``cell_id`` and numbers unchanged.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from lin2net.dynamics import registry
from lin2net.sweep.config import SweepConfig


def grid_product(eta: float, lambda0: float) -> float:
    """η·λ0 as the grid defines it: the exact product of the two values as the
    config writes them (their shortest decimal repr), rounded once to a double.
    So η = 1.5, λ0 = 0.4 give 0.6, not the binary product 0.6000000000000001,
    and equal products written differently fall in one ``--by eta_lambda0`` group."""
    from decimal import Decimal

    return float(Decimal(repr(float(eta))) * Decimal(repr(float(lambda0))))


@dataclass(frozen=True)
class Cell:
    """One grid point of dynamics ``algorithm``. ``eta_lambda0`` is set when the
    config's stepsize axis is η·λ0; ``axes`` holds the values of the dynamics' own
    axes (:mod:`lin2net.dynamics.registry`; none for GD, so GD cells keep their
    parameters and ids), in the order the registry declares them."""

    eta: float
    lambda0: float
    phi: float
    d: int
    init: str
    eta_lambda0: float | None = None
    axes: tuple[tuple[str, float | int], ...] = ()
    algorithm: str = "gd"

    def value(self, name: str) -> float | int:
        """The value of the dynamics' axis ``name`` (KeyError if the cell has none)."""
        for key, value in self.axes:
            if key == name:
                return value
        raise KeyError(name)

    @property
    def parameters(self) -> dict[str, float | int | str]:
        params: dict[str, float | int | str] = {"eta": self.eta, "lambda0": self.lambda0, "phi": self.phi, "d": self.d}
        if self.eta_lambda0 is not None:
            params["eta_lambda0"] = self.eta_lambda0
        params.update(self.axes)
        params["init"] = self.init
        if self.algorithm not in ("gd", "sgd") and "family" in registry.get(self.algorithm).extras:
            params["model"] = self.algorithm  # a family's entry (vector and relu share their axes)
        return params

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> Cell:
        """The cell that :attr:`parameters` came from (its dynamics: the one whose axes it has)."""
        common = ("eta", "lambda0", "phi", "d", "init", "eta_lambda0", "model")
        names = {key for key in parameters if key not in common}
        if "model" in parameters:  # a model family's cell names its registry entry
            entry = registry.get(str(parameters["model"])) if parameters["model"] in registry.names() else None
        else:
            entry = next(
                (e for e in registry.entries() if set(e.axis_names) == names and "family" not in e.extras), None
            )
        if entry is None:
            raise ValueError(f"no dynamics has the axes {sorted(names)}")
        extra = tuple((name, parameters[name]) for name in entry.axis_names)
        known = {key: parameters[key] for key in common if key in parameters and key != "model"}
        return cls(**known, axes=extra, algorithm=entry.name)

    @cached_property
    def cell_id(self) -> str:
        """12 hex digits of a hash of the exact parameter values (floats in hex);
        computed once per cell (the cell is immutable)."""
        return hashlib.sha256(canonical_parameters(self.parameters).encode()).hexdigest()[:12]


def canonical_parameters(parameters: dict[str, float | int | str]) -> str:
    """``json.dumps({k: v, floats as float.hex()}, sort_keys=True)``, written out
    directly for the plain keys and values cells have (the same characters,
    several times faster: a 10⁵-cell grid hashes every id more than once)."""
    items = []
    for key in sorted(parameters):
        value = parameters[key]
        if isinstance(value, float):
            text = f'"{value.hex()}"'
        elif type(value) is int:
            text = str(value)
        elif (
            isinstance(value, str)
            and value.isascii()
            and value.isprintable()
            and '"' not in value
            and "\\" not in value
        ):
            text = f'"{value}"'
        else:
            text = json.dumps(value)
        if not (key.isascii() and key.isidentifier()):
            return json.dumps(
                {k: float(v).hex() if isinstance(v, float) else v for k, v in parameters.items()}, sort_keys=True
            )
        items.append(f'"{key}": {text}')
    return "{" + ", ".join(items) + "}"


def init_label(config: SweepConfig) -> str:
    """``sphere``, ``gaussian`` or ``explicit-<hash of the vectors>``."""
    if config.explicit_theta is not None:
        return f"explicit-{config.explicit_theta.digest()}"
    if config.explicit is None:
        return config.init
    digest = hashlib.sha256(json.dumps([config.explicit.a, config.explicit.b]).encode()).hexdigest()
    return f"explicit-{digest[:8]}"


_GRIDS: dict[str, tuple[Cell, ...]] = {}  # the last few grids expanded (keyed by resolved config)


def expand_grid(config: SweepConfig) -> list[Cell]:
    """All cells, in the order of the axes as written (η outermost).

    A sweep expands its grid several times (plan, run, count); the last few
    are kept, so a 10⁵-cell grid builds its cells and ids once."""
    key = json.dumps(config.resolved(), sort_keys=True, default=str)
    cells = _GRIDS.get(key)
    if cells is None:
        cells = tuple(_iter_cells(config))
        if len(_GRIDS) >= 4:
            _GRIDS.pop(next(iter(_GRIDS)))
        _GRIDS[key] = cells
    return list(cells)


def _iter_cells(config: SweepConfig) -> Iterator[Cell]:
    axes = config.axes
    label = init_label(config)
    fixed = config.explicit if config.explicit is not None else config.explicit_theta
    if fixed is not None:
        lambda0s: tuple[float, ...] = (fixed.lambda0,)
        widths: tuple[int, ...] = (fixed.d,)
    else:
        lambda0s = tuple(float(v) for v in axes["lambda0"])
        widths = tuple(int(v) for v in axes["d"])
    # The dynamics' own axes vary fastest; GD has none (one empty combination).
    own = registry.get(config.algorithm).axes
    combinations = [
        tuple((axis.name, axis.dtype(value)) for axis, value in zip(own, values, strict=True))
        for values in itertools.product(*(axes[axis.name] for axis in own))
    ]
    for step, lambda0, phi, d, extra in itertools.product(
        axes[config.eta_key], lambda0s, axes["phi"], widths, combinations
    ):
        if config.eta_key == "eta":
            eta, eta_lambda0 = float(step), None
        else:
            eta, eta_lambda0 = float(step) / lambda0, float(step)
        yield Cell(eta, lambda0, float(phi), d, label, eta_lambda0, extra, config.algorithm)


def initialization_rng(seed: int, init: str, d: int, block: int, size: int | None = None) -> np.random.Generator:
    """Random stream for block ``block`` of the initializations of width ``d``
    (starts in R^size: the shallow model's (a, b) when ``size`` is None or 2d,
    a model family's θ otherwise, keyed by size as well).

    It depends on the root seed, the init, d and size only: cells that differ in
    η, λ0 or Φ draw the same initial directions (common random numbers), so
    differences between such cells come from the parameters, not from sampling noise.
    """
    text = f"{init}|{d}" if size is None or size == 2 * d else f"{init}|{d}|D={size}"
    key = hashlib.sha256(text.encode()).digest()
    words = tuple(int.from_bytes(key[i : i + 4], "little") for i in range(0, 16, 4))
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*words, block)))
