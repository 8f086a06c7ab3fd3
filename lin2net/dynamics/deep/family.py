"""The deep family's hook for sweeps (:func:`lin2net.dynamics.families.hook`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lin2net.dynamics.deep.model import DeepModel

if TYPE_CHECKING:
    from lin2net.sweep.config import SweepConfig
    from lin2net.sweep.grid import Cell


def build_model(config: SweepConfig, cell: Cell) -> DeepModel:
    """The model of one grid cell: depth ``cell.value("depth")``, width ``cell.d``, target ``cell.phi``."""
    return DeepModel(int(cell.value("depth")), cell.d, cell.phi)
