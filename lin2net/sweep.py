"""Run a whole sweep: expand the grid, simulate each cell, write each cell file."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lin2net.cell import run_cell
from lin2net.config import SweepConfig
from lin2net.grid import Cell, expand_grid
from lin2net.store import prepare_output_dir, write_cell

CellCallback = Callable[[Cell, float], None]


@dataclass(frozen=True)
class SweepReport:
    cells: int
    trajectories: int
    seconds: float


def run_sweep(
    config: SweepConfig,
    out: Path,
    *,
    overwrite: bool = False,
    on_cell_done: CellCallback | None = None,
) -> SweepReport:
    """Simulate every cell of ``config`` into ``out``; ``on_cell_done(cell, seconds)``
    is called after each cell file is in place."""
    cells = expand_grid(config)
    prepare_output_dir(out, config, overwrite)
    started = time.perf_counter()
    for cell in cells:
        cell_started = time.perf_counter()
        write_cell(out, config, cell, run_cell(config, cell))
        if on_cell_done is not None:
            on_cell_done(cell, time.perf_counter() - cell_started)
    return SweepReport(len(cells), len(cells) * config.trajectories, time.perf_counter() - started)
