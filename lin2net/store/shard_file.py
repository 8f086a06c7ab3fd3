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
* ``cells``: every cell's id, parameters, first row and row count (a part
  of a large cell also its ``first_trajectory``; see lin2net.store.shards);
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
from typing import TYPE_CHECKING, Any

from lin2net.errors import Lin2netError
from lin2net.sweep.grid import Cell

if TYPE_CHECKING:  # pyarrow is imported where a file is read or written: reads of verified files need none
    import pyarrow as pa

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
    part: tuple[int, int] | None = None  # (first, stop) trajectories of a part of one cell


def named_files(directory: Path) -> list[Path]:
    """The files of ``directory`` named like shard and summary files (``part-*.parquet``,
    not hidden temporaries), sorted; none when it is not a folder. Not yet verified."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"{SHARD_PREFIX}*.parquet") if not p.name.startswith("."))


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
    first_trajectory: int | None = None,
) -> None:
    """Write a shard's table to ``path`` (no rename, no fsync: see
    :func:`lin2net.store.outdir.atomic_write`). ``tables`` are its consecutive row
    ranges of :func:`row_groups`, each written as one row group. With
    ``first_trajectory``, the file is a part of its one cell: ``trajectories``
    rows, from that trajectory on."""
    import pyarrow.parquet as pq

    from lin2net.store.integrity import Checksums

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
                    **({} if first_trajectory is None else {"first_trajectory": first_trajectory}),
                }
                for i, cell in enumerate(cells)
            ],
            "checksums": checksums.hexdigests(),
        }
        writer.add_key_value_metadata({SHARD_KEY: json.dumps(footer).encode()})
    finally:
        if writer is not None:
            writer.close()


def read_footer(path: Path, key: bytes, kind: str) -> tuple[Any, dict[str, Any]]:
    """The Parquet metadata of the lin2net file ``path`` and its footer, the JSON
    object under ``key`` (``kind`` names the file in errors); reads the footer
    only. CorruptShard for a link, a file that is not Parquet, or no footer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.is_symlink() or not path.is_file():
        raise CorruptShard(path, "not a regular file")
    try:
        metadata = pq.read_metadata(path)
    except (OSError, pa.ArrowException, ValueError) as exc:  # ValueError: a damaged name (UnicodeDecodeError)
        raise CorruptShard(path, f"not a readable Parquet file: {_one_line(exc)}") from None
    try:
        footer = json.loads((metadata.metadata or {})[key])
        if not isinstance(footer, dict):
            raise TypeError("footer is not a JSON object")
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptShard(path, f"no valid lin2net {kind} metadata: {_one_line(exc)}") from None
    return metadata, footer


def verify_footer(path: Path, settings: str, trajectories: int, grid: Mapping[str, Cell] | None) -> ShardFooter:
    """Check that ``path`` is a complete shard file of a sweep with these
    ``settings``, whose cells have ``trajectories`` rows each and belong to
    ``grid`` (cell id -> cell; ``None`` accepts any cell). Reads the footer only."""
    path = Path(path)
    metadata, footer = read_footer(path, SHARD_KEY, "shard")
    try:
        ident, rows, listed = str(footer["shard_id"]), int(footer["rows"]), footer["cells"]
        cells = tuple(cell_from_parameters(entry["parameters"]) for entry in listed)
        ids = [str(entry["cell_id"]) for entry in listed]
        checksums = {str(k): str(v) for k, v in dict(footer["checksums"]).items()}
        starts = [int(entry["first_row"]) for entry in listed]
        counts = [int(entry["rows"]) for entry in listed]
        firsts = [int(entry["first_trajectory"]) for entry in listed if "first_trajectory" in entry]
        footer_format, footer_settings = footer["format"], footer["settings"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptShard(path, f"no valid lin2net shard metadata: {_one_line(exc)}") from None
    from lin2net.store.shards import shard_id as expected_shard_id

    if footer_format != FORMAT:
        raise CorruptShard(path, f"shard format {footer_format!r}, this lin2net reads {FORMAT}")
    if footer_settings != settings:
        raise CorruptShard(path, "written by a sweep with other settings (seed, trajectories, init or stop rule)")
    part: tuple[int, int] | None = None
    if firsts:  # a part of one large cell
        from lin2net.store.shards import part_id

        if len(ids) != 1 or len(firsts) != 1 or starts != [0]:
            raise CorruptShard(path, "a part of a cell must list exactly that cell")
        part = (firsts[0], firsts[0] + counts[0])
        if not (0 <= part[0] < part[1] <= trajectories):
            raise CorruptShard(path, f"its trajectories {part[0]}..{part[1] - 1} are not in 0..{trajectories - 1}")
        expected = part_id(ids[0], part[0], counts[0])
    else:
        expected = expected_shard_id(ids)
    if [cell.cell_id for cell in cells] != ids or expected != ident:
        raise CorruptShard(path, "its cell list does not match its shard id")
    if path.name != f"{SHARD_PREFIX}{ident}.parquet":
        raise CorruptShard(path, f"its name does not match its shard id {ident}")
    if part is None and (
        any(count != trajectories for count in counts) or starts != [i * trajectories for i in range(len(ids))]
    ):
        raise CorruptShard(path, f"its cells do not have {trajectories} trajectories each")
    if part is not None:
        trajectories = counts[0]
    if rows != len(ids) * trajectories or metadata.num_rows != rows:
        raise CorruptShard(path, f"holds {metadata.num_rows} rows, its footer lists {rows}")
    if grid is not None:
        stray = [cell.cell_id for cell in cells if grid.get(cell.cell_id) != cell]
        if stray:
            raise CorruptShard(path, f"holds cell {stray[0]}, which is not in this output's grid")
    return ShardFooter(path, ident, cells, rows, checksums, part)


def read_verified(footer: ShardFooter, columns: list[str] | None = None, *, trajectory_rows: bool = True) -> pa.Table:
    """The file's table (only ``columns`` if given), page CRCs and content checksums
    checked, and (``trajectory_rows``: a shard file) every column's type."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lin2net.store.integrity import mismatched_columns

    try:
        table = pq.ParquetFile(footer.path, page_checksum_verification=True).read(columns=columns)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise CorruptShard(footer.path, f"unreadable data: {_one_line(exc)}") from None
    if table.num_rows != footer.rows:
        raise CorruptShard(footer.path, f"reads back {table.num_rows} rows, its footer lists {footer.rows}")
    odd = _unexpected_field(table.schema) if trajectory_rows else ""
    if odd:
        raise CorruptShard(footer.path, f"column {odd} does not have lin2net's type")
    bad = mismatched_columns(table, dict(footer.checksums))
    if bad:
        raise CorruptShard(footer.path, f"column {bad[0]} does not match its checksum")
    return table


def _unexpected_field(schema: pa.Schema) -> str:
    """The first column whose type or nullability differs from lin2net's
    trajectory schemas ('' if none): a flipped bit in the footer's stored
    schema can change a type while every value still checks out."""
    known = _trajectory_fields()
    for found in schema:
        expected = known.get(found.name)
        if expected is None:
            return str(found.name)
        if found.type != expected.type or found.nullable != expected.nullable:
            return str(found.name)
    return ""


def _trajectory_fields() -> dict[str, pa.Field]:
    """Every column of every dynamics registered now (a test may add one), by name."""
    from lin2net.dynamics import registry
    from lin2net.dynamics.cells import trajectory_schema

    return {f.name: f for name in registry.names() for f in trajectory_schema(name)}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:120] + "...") if len(text) > 120 else (text or type(exc).__name__)


CORRUPT_SUFFIX = ".corrupt"
DUPLICATE_SUFFIX = ".duplicate"


def move_aside(path: Path, suffix: str = CORRUPT_SUFFIX) -> Path | None:
    """Rename a file that failed verification to ``.<name>.corrupt`` (never
    deleted: lin2net cannot prove it wrote it); ``suffix`` ``.duplicate`` for a
    verified file whose cells another file holds. Returns the new path, or
    None if it could not be moved (then nothing was changed).

    An existing file is never replaced: the new name is taken with a hard link
    (which fails if the name exists) or, where links are not supported, a
    rename after checking; when ``.<name>.corrupt`` is taken, a random suffix
    is added, so names never run out."""
    import secrets

    for attempt in range(100):
        # Hidden (a leading dot): no glob or dataset reader of OUT/shards picks it up.
        extra = "" if attempt == 0 else f"-{secrets.token_hex(4)}"
        target = path.with_name(f".{path.name}{suffix}{extra}")
        if target.exists() or target.is_symlink():
            continue  # never replace an earlier one
        try:
            os.link(path, target, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError:  # no hard links here (some network and FAT file systems)
            try:
                os.rename(path, target)
            except OSError:
                return None
            return target
        try:
            os.unlink(path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(target)
            return None
        return target
    return None
