"""Shards: batches of grid cells that are computed, stored and resumed together.

A cell is the unit of identity (its ``cell_id``, its random numbers and its
rows never depend on which shard holds it); a shard is the unit of work: one
kernel call, one file, one task. Fine grids have many small cells, and per
cell costs (a kernel call, a file with its fsync and rename, a task) would
otherwise decide how long a sweep takes.

Shards are formed from the cells still to run, in grid order, each holding
whole cells and about ``target_rows`` trajectories (a cell larger than that
is a shard of its own), so memory stays bounded for any grid. A shard's id is
a hash of its cells' ids: the same cells always make the same shard and the
same file name, and a shard holding other cells can never be mistaken for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lin2net.sweep.grid import Cell

SHARD_ROWS = 1 << 18  # target trajectories per shard of the compiled kernel (~60 MB of table)
NUMPY_SHARD_ROWS = 1 << 13  # for the NumPy integrators: several shards per pool process


@dataclass(frozen=True)
class Shard:
    """Consecutive cells of the grid, each with ``trajectories`` rows."""

    cells: tuple[Cell, ...]
    trajectories: int

    @property
    def rows(self) -> int:
        return len(self.cells) * self.trajectories

    @property
    def shard_id(self) -> str:
        return shard_id(cell.cell_id for cell in self.cells)

    @property
    def file_name(self) -> str:
        return f"part-{self.shard_id}.parquet"


def shard_id(cell_ids: Iterable[str]) -> str:
    """16 hex digits of a hash of the cell ids, in order."""
    return hashlib.sha256(",".join(cell_ids).encode()).hexdigest()[:16]


def form_shards(cells: Sequence[Cell], trajectories: int, target_rows: int = SHARD_ROWS) -> list[Shard]:
    """Group ``cells`` (in the given order) into shards of about ``target_rows`` rows."""
    per_shard = max(1, target_rows // max(1, trajectories))
    return [Shard(tuple(cells[i : i + per_shard]), trajectories) for i in range(0, len(cells), per_shard)]
