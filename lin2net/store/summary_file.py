"""Summary files (``keep: summary`` or ``both``): one row per cell, verified like shards.

``OUT/summaries/part-<shard_id>.parquet`` holds the per-cell summaries of one
shard (:mod:`lin2net.analysis.cell_summary`), named by the same shard id as
the shard file its rows would make. It is written through the same atomic
path (:func:`lin2net.store.outdir.atomic_write`), with Parquet page checksums
and, in the footer's key-value metadata ``lin2net.summary`` (JSON), the same
kind of record as a shard's: ``format``, ``shard_id``, ``settings`` (digest of
the config), ``cells`` (id, parameters and trajectories of each) and
``checksums`` of every column (:mod:`lin2net.store.integrity`). A file counts
only once that footer matches the sweep and, when read, its columns match
their checksums; one that fails is moved aside and its cells run again.

Which cells are done (:func:`scan_finished`): those held by verified shard
files (``keep: rows``), by verified summary files (``summary``), or by both
(``both``: a cell missing either is run again).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lin2net.store.shard_file import (
    FORMAT,
    SHARD_PREFIX,
    CorruptShard,
    ShardFooter,
    _one_line,
    cell_from_parameters,
    named_files,
    read_footer,
    read_verified,
)
from lin2net.sweep.grid import Cell, expand_grid

if TYPE_CHECKING:
    import pyarrow as pa

    from lin2net.store.outdir import ShardScan, WriteGuard
    from lin2net.store.shards import Shard
    from lin2net.sweep.config import SweepConfig

SUMMARIES_DIR = "summaries"
SUMMARY_KEY = b"lin2net.summary"
COMPRESSION = "zstd"  # a few MB at most: size matters more than write speed here


def summaries_dir(out: Path) -> Path:
    return Path(out) / SUMMARIES_DIR


def write_summary_file(
    path: Path,
    cells: Sequence[Cell],
    trajectories: int,
    table: pa.Table,
    *,
    shard_id: str,
    settings: str,
    extra_metadata: Mapping[bytes, bytes],
) -> None:
    """Write one shard's summary table (one row per cell, in order) to ``path``."""
    import pyarrow.parquet as pq

    from lin2net.store.integrity import Checksums

    if table.num_rows != len(cells) or table.column("cell_id").to_pylist() != [c.cell_id for c in cells]:
        raise ValueError(f"a summary of {len(cells)} cells needs one row per cell, in order")
    checksums = Checksums()
    checksums.add(table)
    footer = {
        "format": FORMAT,
        "shard_id": shard_id,
        "settings": settings,
        "rows": table.num_rows,
        "cells": [{"cell_id": c.cell_id, "parameters": c.parameters, "trajectories": trajectories} for c in cells],
        "checksums": checksums.hexdigests(),
    }
    metadata = {**extra_metadata, SUMMARY_KEY: json.dumps(footer).encode()}
    # No Arrow schema in the footer (it would repeat the metadata, and per column
    # cost more than the data of a few cells); the Parquet types read back the same.
    with pq.ParquetWriter(
        path,
        table.schema.remove_metadata(),
        compression=COMPRESSION,
        write_page_checksum=True,
        write_statistics=False,
        store_schema=False,
    ) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata(metadata)


def verify_summary_footer(path: Path, settings: str, trajectories: int, grid: Mapping[str, Cell] | None) -> ShardFooter:
    """Check that ``path`` is a complete summary file of a sweep with these
    settings, whose cells have ``trajectories`` trajectories and belong to
    ``grid``; reads the footer only. ``rows`` of the result is the row count."""
    from lin2net.store.shards import shard_id as expected_shard_id

    path = Path(path)
    metadata, footer = read_footer(path, SUMMARY_KEY, "summary")
    try:
        ident, rows, listed = str(footer["shard_id"]), int(footer["rows"]), footer["cells"]
        cells = tuple(cell_from_parameters(entry["parameters"]) for entry in listed)
        ids = [str(entry["cell_id"]) for entry in listed]
        counts = [int(entry["trajectories"]) for entry in listed]
        checksums = {str(k): str(v) for k, v in dict(footer["checksums"]).items()}
        footer_format, footer_settings = footer["format"], footer["settings"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptShard(path, f"no valid lin2net summary metadata: {_one_line(exc)}") from None
    if footer_format != FORMAT:
        raise CorruptShard(path, f"summary format {footer_format!r}, this lin2net reads {FORMAT}")
    if footer_settings != settings:
        raise CorruptShard(path, "written by a sweep with other settings (seed, trajectories, init or stop rule)")
    if [cell.cell_id for cell in cells] != ids or expected_shard_id(ids) != ident:
        raise CorruptShard(path, "its cell list does not match its shard id")
    if path.name != f"{SHARD_PREFIX}{ident}.parquet":
        raise CorruptShard(path, f"its name does not match its shard id {ident}")
    if any(count != trajectories for count in counts):
        raise CorruptShard(path, f"its cells do not have {trajectories} trajectories each")
    if rows != len(ids) or metadata.num_rows != rows:
        raise CorruptShard(path, f"holds {metadata.num_rows} rows, its footer lists {rows} cells")
    if grid is not None:
        stray = [cell.cell_id for cell in cells if grid.get(cell.cell_id) != cell]
        if stray:
            raise CorruptShard(path, f"holds cell {stray[0]}, which is not in this output's grid")
    return ShardFooter(path, ident, cells, rows, checksums)


def summary_files(out: Path) -> list[Path]:
    """Files named like summary files, sorted; not yet verified."""
    return named_files(summaries_dir(out))


def scan_summaries(out: Path, config: SweepConfig, *, verify_data: bool = True) -> ShardScan:
    """Verify every summary file of ``out`` against ``config`` (as
    :func:`lin2net.store.outdir.scan_shards` does shard files)."""
    from lin2net.store.outdir import ShardScan, config_settings

    settings = config_settings(config)
    grid = {cell.cell_id: cell for cell in expand_grid(config)}
    scan = ShardScan()
    seen: set[str] = set()
    for path in summary_files(out):
        try:
            footer = verify_summary_footer(path, settings, config.trajectories, grid)
            if verify_data:
                read_verified(footer, trajectory_rows=False)
        except CorruptShard as bad:
            scan.bad.append(bad)
            continue
        ids = {cell.cell_id for cell in footer.cells}
        if ids & seen:
            scan.bad.append(CorruptShard(path, "holds cells another summary file already holds"))
            continue
        seen |= ids
        scan.verified.append(footer)
    return scan


def scan_finished(out: Path, config: SweepConfig, *, verify_data: bool = True) -> ShardScan:
    """The files that make cells done under ``config.keep`` (see the module
    doc); ``bad`` lists every file that failed, shards and summaries."""
    from lin2net.store.outdir import ShardScan, scan_shards

    keep = getattr(config, "keep", "rows")
    if keep == "rows":
        return scan_shards(out, config, verify_data=verify_data)
    summaries = scan_summaries(out, config, verify_data=verify_data)
    if keep == "summary":
        return summaries
    rows = scan_shards(out, config, verify_data=verify_data)
    with_rows = rows.finished
    verified = [f for f in summaries.verified if all(c.cell_id in with_rows for c in f.cells)]
    return ShardScan(verified=verified, bad=[*rows.bad, *summaries.bad])


def write_summary(
    out: Path, config: SweepConfig, shard: Shard, table: pa.Table, guard: WriteGuard | None = None
) -> Path:
    """Write one shard's summary table atomically into ``OUT/summaries``;
    ``guard`` as for :func:`lin2net.store.outdir.write_shard`."""
    if guard is not None:
        guard.check()
    from lin2net.store.outdir import atomic_write, config_settings, provenance

    directory = summaries_dir(out)
    directory.mkdir(exist_ok=True)
    final = directory / shard.file_name
    extra = {
        b"lin2net.config": json.dumps(config.resolved()).encode(),
        b"lin2net.provenance": json.dumps(provenance()).encode(),
    }

    def write(temp: Path) -> None:
        write_summary_file(
            temp,
            shard.cells,
            shard.trajectories,
            table,
            shard_id=shard.shard_id,
            settings=config_settings(config),
            extra_metadata=extra,
        )

    atomic_write(final, write, guard.check if guard is not None else None)
    return final


def read_summaries(out: Path) -> pa.Table:
    """Every summary row of a sweep (one per cell, or per part of a cell),
    each file verified first; OutputError for an output without any."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    from lin2net.errors import OutputError
    from lin2net.store.outdir import read_config

    out = Path(out)
    scan = scan_summaries(out, read_config(out), verify_data=False)
    if scan.bad:
        raise OutputError(f"{scan.bad[0]}; rerun the sweep on {out} to move it aside and recompute its cells")
    if not scan.verified:
        raise OutputError(f"{out} holds no finished cells yet")
    with ThreadPoolExecutor(max_workers=min(len(scan.verified), os.cpu_count() or 1)) as pool:
        futures = [pool.submit(read_verified, footer, trajectory_rows=False) for footer in scan.verified]
        tables = []
        for future in futures:
            try:
                tables.append(future.result())
            except CorruptShard as bad:
                raise OutputError(f"{bad}; rerun the sweep on {out} to move it aside and recompute its cells") from None
    return pa.concat_tables(tables, promote_options="default")


def is_summary_file(path: Path) -> bool:
    """A regular ``part-*.parquet`` file whose footer carries lin2net summary metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.is_symlink() or not path.is_file() or not path.name.startswith(SHARD_PREFIX):
        return False
    try:
        return SUMMARY_KEY in (pq.read_metadata(path).metadata or {})
    except (OSError, pa.ArrowException, ValueError):
        return False
