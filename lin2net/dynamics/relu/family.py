"""The ``relu`` family's hook for the sweep (:func:`lin2net.dynamics.families.hook`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lin2net.dynamics.relu.model import ReluModel
from lin2net.dynamics.vector.family import cell_data

if TYPE_CHECKING:
    from lin2net.sweep.config import SweepConfig
    from lin2net.sweep.grid import Cell


def build_model(config: SweepConfig, cell: Cell) -> ReluModel:
    """The model of one grid cell: width ``cell.d``, m = ``cell.value("inputs")``, the
    same data set as the vector family's cell (same spec, m, Φ and seed)."""
    inputs, x, y = cell_data(config, cell)
    return ReluModel(cell.d, inputs, x, y)
