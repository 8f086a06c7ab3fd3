"""The ``vector`` family's hook for the sweep (:func:`lin2net.dynamics.families.hook`)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from lin2net.dynamics.vector.data import VectorDataSpec, make_data
from lin2net.dynamics.vector.model import VectorModel
from lin2net.theory.closed_forms import FloatArray

if TYPE_CHECKING:
    from lin2net.sweep.config import SweepConfig
    from lin2net.sweep.grid import Cell


@lru_cache(maxsize=16)
def cached_data(spec: VectorDataSpec, inputs: int, phi: float, seed: int) -> tuple[FloatArray, FloatArray]:
    """The cell's data set (X, y), built once per (spec, m, Φ, seed) and process; read-only."""
    x, y = make_data(spec, inputs, phi, seed)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def cell_data(config: SweepConfig, cell: Cell) -> tuple[int, FloatArray, FloatArray]:
    """(m, X, y) of one cell of a data family."""
    inputs = int(cell.value("inputs"))
    assert isinstance(config.data, VectorDataSpec), "a data family's config holds a VectorDataSpec"
    x, y = cached_data(config.data, inputs, float(cell.phi), int(config.seed))
    return inputs, x, y


def build_model(config: SweepConfig, cell: Cell) -> VectorModel:
    """The model of one grid cell: width ``cell.d``, m = ``cell.value("inputs")``, its data set."""
    inputs, x, y = cell_data(config, cell)
    return VectorModel(cell.d, inputs, x, y)
