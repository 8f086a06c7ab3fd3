"""One shard's results as one Parquet file: written atomically, read only once verified.

A shard file holds the trajectory table of its cells, one cell after another
in grid order. Row groups hold whole cells: a cell never straddles two row
groups (a cell larger than ``ROW_GROUP_ROWS`` has row groups of its own), and
small cells share one, since a row group per 100-row cell makes the file
14x slower to read (footer of 1000 row groups × 28 columns).

The footer's key-value metadata ``lin2net.shard`` (JSON) says what the file is:

* ``format`` (2), ``shard_id`` (the hash of its cells' ids, also in the name
  ``part-<shard_id>.parquet``) and ``settings`` (a digest of the config
  without its name and grid: seed, trajectories, init, stop rule, ...);
* ``cells``: every cell's id, parameters, first row and row count;
* ``checksums``: a content checksum of every column (:mod:`lin2net.store.integrity`).

Pages carry CRC-32 checksums (Parquet's own, written and checked by pyarrow).
:func:`verify_footer` checks the metadata against the sweep it should belong
to; :func:`read_verified` reads columns with the page checksums checked and
compares the content checksums. Any failure raises :class:`CorruptShard` with
one line naming the file and the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lin2net.errors import Lin2netError
from lin2net.store.integrity import Checksums, mismatched_columns
from lin2net.sweep.grid import Cell

FORMAT = 2
SHARD_KEY = b"lin2net.shard"
CONFIG_KEY = b"lin2net.config"
PROVENANCE_KEY = b"lin2net.provenance"
ROW_GROUP_ROWS = 1 << 16  # small cells share row groups of up to this many rows
COMPRESSION = "lz4"  # LZ4_RAW: 4x faster to write than zstd here, read by DuckDB, Polars, pandas
# Dictionary-encode only columns with few distinct values per shard (labels and
# cell parameters); trying it on every float column costs more than it saves.
DICTIONARY_COLUMNS = ["cell_id", "init", "status", "regime", "eta", "lambda0", "phi", "d", "eta_lambda0"]
SHARD_PREFIX = "part-"


class CorruptShard(Lin2netError):
    """A shard file that fails verification; the message names it and why."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path} failed verification ({reason})")


@dataclass(frozen=True)
class ShardFooter:
    """What a verified footer says: the shard's cells and its content checksums."""

    path: Path
    shard_id: str
    cells: tuple[Cell, ...]
    rows: int
    checksums: Mapping[str, str]


def settings_digest(resolved: Mapping[str, Any]) -> str:
    """A digest of a resolved config without ``name`` and ``grid``: two sweeps
    whose cells are computed alike (seed, trajectories, init, stop rule,
    integrator, ...) have the same digest; the grid only chooses which cells."""
    settings = {k: v for k, v in resolved.items() if k not in ("name", "grid")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cell_from_parameters(parameters: Mapping[str, Any]) -> Cell:
    """The :class:`Cell` that ``Cell.parameters`` came from."""
    return Cell.from_parameters(parameters)


def row_groups(cells: int, trajectories: int, limit: int = ROW_GROUP_ROWS) -> list[tuple[int, int]]:
    """Row ranges ``(start, stop)`` of a shard's row groups: whole cells, as many
    as fit in ``limit`` rows (at least one); a larger cell in pieces of ``limit``."""
    if trajectories > limit:
        return [
            (c * trajectories + s, c * trajectories + min(trajectories, s + limit))
            for c in range(cells)
            for s in range(0, trajectories, limit)
        ]
    per_group = limit // max(1, trajectories)
    return [(c * trajectories, min(cells, c + per_group) * trajectories) for c in range(0, cells, per_group)]


def write_shard_file(
    path: Path,
    cells: Sequence[Cell],
    trajectories: int,
    tables: Iterable[pa.Table],
    *,
    shard_id: str,
    settings: str,
    extra_metadata: Mapping[bytes, bytes],
) -> None:
    """Write a shard's table to ``path`` (no rename, no fsync: see
    :func:`lin2net.store.outdir.atomic_write`). ``tables`` are its consecutive row
    ranges of :func:`row_groups`, each written as one row group."""
    checksums = Checksums()
    writer: pq.ParquetWriter | None = None
    try:
        for table in tables:
            if writer is None:
                schema = table.schema.with_metadata(dict(extra_metadata))
                writer = pq.ParquetWriter(
                    path,
                    schema,
                    compression=COMPRESSION,
                    use_dictionary=[name for name in DICTIONARY_COLUMNS if name in schema.names],
                    write_page_checksum=True,
                    write_statistics=False,
                )
            checksums.add(table)
            writer.write_table(table, row_group_size=max(1, table.num_rows))
        if writer is None or checksums.rows != len(cells) * trajectories:
            raise ValueError(f"a shard of {len(cells)} cells needs {len(cells) * trajectories} rows")
        footer = {
            "format": FORMAT,
            "shard_id": shard_id,
            "settings": settings,
            "rows": checksums.rows,
            "cells": [
                {
                    "cell_id": cell.cell_id,
                    "parameters": cell.parameters,
                    "first_row": i * trajectories,
                    "rows": trajectories,
                }
                for i, cell in enumerate(cells)
            ],
            "checksums": checksums.hexdigests(),
        }
        writer.add_key_value_metadata({SHARD_KEY: json.dumps(footer).encode()})
    finally:
        if writer is not None:
            writer.close()


def verify_footer(path: Path, settings: str, trajectories: int, grid: Mapping[str, Cell] | None) -> ShardFooter:
    """Check that ``path`` is a complete shard file of a sweep with these
    ``settings``, whose cells have ``trajectories`` rows each and belong to
    ``grid`` (cell id -> cell; ``None`` accepts any cell). Reads the footer only."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        raise CorruptShard(path, "not a regular file")
    try:
        metadata = pq.read_metadata(path)
    except (OSError, pa.ArrowException) as exc:
        raise CorruptShard(path, f"not a readable Parquet file: {_one_line(exc)}") from None
    try:
        footer = json.loads((metadata.metadata or {})[SHARD_KEY])
        if not isinstance(footer, dict):
            raise TypeError("footer is not a JSON object")
        ident, rows, listed = str(footer["shard_id"]), int(footer["rows"]), footer["cells"]
        cells = tuple(cell_from_parameters(entry["parameters"]) for entry in listed)
        ids = [str(entry["cell_id"]) for entry in listed]
        checksums = {str(k): str(v) for k, v in dict(footer["checksums"]).items()}
        starts = [int(entry["first_row"]) for entry in listed]
        counts = [int(entry["rows"]) for entry in listed]
        footer_format, footer_settings = footer["format"], footer["settings"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptShard(path, f"no valid lin2net shard metadata: {_one_line(exc)}") from None
    from lin2net.store.shards import shard_id as expected_shard_id

    if footer_format != FORMAT:
        raise CorruptShard(path, f"shard format {footer_format!r}, this lin2net reads {FORMAT}")
    if footer_settings != settings:
        raise CorruptShard(path, "written by a sweep with other settings (seed, trajectories, init or stop rule)")
    if [cell.cell_id for cell in cells] != ids or expected_shard_id(ids) != ident:
        raise CorruptShard(path, "its cell list does not match its shard id")
    if path.name != f"{SHARD_PREFIX}{ident}.parquet":
        raise CorruptShard(path, f"its name does not match its shard id {ident}")
    if any(count != trajectories for count in counts) or starts != [i * trajectories for i in range(len(ids))]:
        raise CorruptShard(path, f"its cells do not have {trajectories} trajectories each")
    if rows != len(ids) * trajectories or metadata.num_rows != rows:
        raise CorruptShard(path, f"holds {metadata.num_rows} rows, its footer lists {rows}")
    if grid is not None:
        stray = [cell.cell_id for cell in cells if grid.get(cell.cell_id) != cell]
        if stray:
            raise CorruptShard(path, f"holds cell {stray[0]}, which is not in this output's grid")
    return ShardFooter(path, ident, cells, rows, checksums)


def read_verified(footer: ShardFooter, columns: list[str] | None = None) -> pa.Table:
    """The file's table (only ``columns`` if given), page CRCs and content checksums checked."""
    try:
        table = pq.ParquetFile(footer.path, page_checksum_verification=True).read(columns=columns)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise CorruptShard(footer.path, f"unreadable data: {_one_line(exc)}") from None
    if table.num_rows != footer.rows:
        raise CorruptShard(footer.path, f"reads back {table.num_rows} rows, its footer lists {footer.rows}")
    bad = mismatched_columns(table, dict(footer.checksums))
    if bad:
        raise CorruptShard(footer.path, f"column {bad[0]} does not match its checksum")
    return table


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:120] + "...") if len(text) > 120 else (text or type(exc).__name__)


def move_aside(path: Path) -> Path | None:
    """Rename a file that failed verification to ``.<name>.corrupt`` (never
    deleted: lin2net cannot prove it wrote it). Returns the new path."""
    for attempt in range(1000):
        # Hidden (a leading dot): no glob or dataset reader of OUT/shards picks it up.
        target = path.with_name(f".{path.name}.corrupt" + ("" if attempt == 0 else f"-{attempt}"))
        if target.exists() or target.is_symlink():
            continue  # never replace an earlier one
        with contextlib.suppress(OSError):
            os.rename(path, target)
            return target
        return None
    return None
