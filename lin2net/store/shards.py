"""Shards: batches of grid cells that are computed, stored and resumed together.

A cell is the unit of identity (its ``cell_id``, its random numbers and its
rows never depend on which shard holds it); a shard is the unit of work: one
kernel call, one file, one task. Fine grids have many small cells, and per
cell costs (a kernel call, a file with its fsync and rename, a task) would
otherwise decide how long a sweep takes.

Shards are formed from the cells still to run, in grid order, each holding
whole cells and about ``target_rows`` trajectories, so memory stays bounded
for any grid. A cell of more trajectories than :func:`part_rows` (the
target, at least one row group) runs in *parts*: shards of one cell's
consecutive trajectories, so memory stays bounded whatever the cell size; the
cell is done once parts covering all its trajectories are. A shard's id is
a hash of its cells' ids: the same cells always make the same shard and the
same file name, and a shard holding other cells can never be mistaken for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from lin2net.store.shard_file import ROW_GROUP_ROWS
from lin2net.sweep.grid import Cell

SHARD_ROWS = 1 << 18  # target trajectories per shard of the compiled kernel (~60 MB of table)
NUMPY_SHARD_ROWS = 1 << 13  # for the NumPy integrators: several shards per pool process


@dataclass(frozen=True)
class Shard:
    """Consecutive cells of the grid, each with ``trajectories`` rows; or, with
    ``count``, a part: trajectories ``first`` … ``first + count − 1`` of its
    one cell."""

    cells: tuple[Cell, ...]
    trajectories: int
    first: int = 0
    count: int | None = None

    @property
    def part(self) -> tuple[int, int] | None:
        """``(first, stop)`` of a part, else None."""
        return None if self.count is None else (self.first, self.first + self.count)

    @property
    def rows(self) -> int:
        return len(self.cells) * self.trajectories if self.count is None else self.count

    @property
    def shard_id(self) -> str:
        if self.count is not None:
            return part_id(self.cells[0].cell_id, self.first, self.count)
        return shard_id(cell.cell_id for cell in self.cells)

    @property
    def file_name(self) -> str:
        return f"part-{self.shard_id}.parquet"


def shard_id(cell_ids: Iterable[str]) -> str:
    """16 hex digits of a hash of the cell ids, in order."""
    return hashlib.sha256(",".join(cell_ids).encode()).hexdigest()[:16]


def part_id(cell_id: str, first: int, count: int) -> str:
    """The id of a part of a cell: a hash of its cell id and its trajectories."""
    return shard_id([f"{cell_id}#{first}+{count}"])


def part_rows(target_rows: int) -> int:
    """Trajectories of a part: the target, at least one row group."""
    return max(target_rows, ROW_GROUP_ROWS)


def form_shards(
    cells: Sequence[Cell],
    trajectories: int,
    target_rows: int = SHARD_ROWS,
    done_parts: Collection[tuple[str, int, int]] = (),
) -> list[Shard]:
    """Group ``cells`` (in the given order) into shards of about ``target_rows``
    rows; a cell larger than :func:`part_rows` into parts of that many
    trajectories, less those in ``done_parts`` ((cell id, first, count) of
    verified parts)."""
    size = part_rows(target_rows)
    if trajectories > size:
        done = set(done_parts)
        return [
            Shard((cell,), trajectories, first, min(size, trajectories - first))
            for cell in cells
            for first in range(0, trajectories, size)
            if (cell.cell_id, first, min(size, trajectories - first)) not in done
        ]
    per_shard = max(1, target_rows // max(1, trajectories))
    return [Shard(tuple(cells[i : i + per_shard]), trajectories) for i in range(0, len(cells), per_shard)]


def parts_cover(parts: Iterable[tuple[int, int]], trajectories: int) -> bool:
    """Whether the parts ``(first, stop)`` of one cell cover its trajectories
    0 … ``trajectories`` − 1 (a cell in parts is done only then)."""
    reached = 0
    for first, stop in sorted(parts):
        if first > reached:
            return False
        reached = max(reached, stop)
    return reached >= trajectories
