"""The output directory of a sweep: per-cell Parquet files written atomically.

Layout::

    OUT/
      config.yaml        resolved config (defaults filled in, axes expanded)
      provenance.json    lin2net, numpy, pyarrow and Python versions; start time
      cells/<cell_id>.parquet   one file per finished cell

A cell file is written under a hidden temporary name in ``cells/`` and renamed
into place, so every ``*.parquet`` that exists is complete: an interrupted
sweep leaves finished cells intact and no partial file that looks finished.
The resolved config, versions and the cell's parameters are also stored in
each file's Parquet key-value metadata, so a file carried away alone still
says where it came from.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

import lin2net
from lin2net.config import SweepConfig
from lin2net.errors import OutputError
from lin2net.grid import Cell

CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
CELLS_DIR = "cells"
TEMP_PREFIX = ".tmp-"


def provenance() -> dict[str, str]:
    return {
        "lin2net": lin2net.__version__,
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "python": platform.python_version(),
    }


def prepare_output_dir(out: Path, config: SweepConfig, overwrite: bool) -> None:
    """Create OUT (or empty lin2net's files from it when ``overwrite``) and write
    the resolved config and provenance. Refuses a non-empty OUT otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputError(f"output directory {out} is not empty; pass --overwrite to replace its results")
        for name in (CONFIG_FILE, PROVENANCE_FILE):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / CELLS_DIR, ignore_errors=True)
    try:
        (out / CELLS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {out}: {exc.strerror or exc}") from None
    _atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(config.resolved(), sort_keys=False))
    info = {**provenance(), "started": datetime.now(UTC).isoformat(timespec="seconds")}
    _atomic_write_text(out / PROVENANCE_FILE, json.dumps(info, indent=2) + "\n")


def cell_path(out: Path, cell_id: str) -> Path:
    return Path(out) / CELLS_DIR / f"{cell_id}.parquet"


def write_cell(out: Path, config: SweepConfig, cell: Cell, table: pa.Table) -> Path:
    """Write one cell's table atomically; returns the final path."""
    metadata = {
        b"lin2net.config": json.dumps(config.resolved()).encode(),
        b"lin2net.cell": json.dumps(cell.parameters).encode(),
        b"lin2net.provenance": json.dumps(provenance()).encode(),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    final = cell_path(out, cell.cell_id)
    atomic_write(final, lambda temp: pq.write_table(table, temp))
    return final


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(temp)`` on a hidden temporary name beside ``path``, flush it to
    disk, then rename it to ``path``: readers see the old file or the whole new
    one, never a part. The temporary file is removed if anything fails."""
    path = Path(path)
    temp = path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{path.name}")
    try:
        write(temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def read_resolved_config(out: Path) -> dict[str, Any]:
    path = Path(out) / CONFIG_FILE
    if not path.is_file():
        raise OutputError(f"{out} is not a lin2net output directory (no {CONFIG_FILE})")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise OutputError(f"{path} is not a lin2net resolved config")
    return data


def cell_files(out: Path) -> list[Path]:
    """Finished cell files, sorted by name (temporary files are never listed)."""
    directory = Path(out) / CELLS_DIR
    if not directory.is_dir():
        raise OutputError(f"{out} is not a lin2net output directory (no {CELLS_DIR}/)")
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith(TEMP_PREFIX))


def iter_cell_tables(out: Path, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Each finished cell's table in turn (only ``columns`` if given)."""
    for path in cell_files(out):
        yield pq.read_table(path, columns=columns)


def read_trajectories(out: Path, columns: list[str] | None = None) -> pa.Table:
    """Every trajectory of a sweep in one table (for analysis of modest sweeps)."""
    tables = list(iter_cell_tables(out, columns))
    if not tables:
        raise OutputError(f"{out} holds no finished cells yet")
    return pa.concat_tables(tables)
