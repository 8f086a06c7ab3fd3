"""The output directory of a sweep: per-cell Parquet files written atomically.

Layout::

    OUT/
      config.yaml        resolved config (defaults filled in, axes expanded)
      provenance.json    lin2net, numpy, pyarrow and Python versions; start time
      manifest.json      progress: cells done, failed (with errors), runs so far
      cells/<cell_id>.parquet   one file per finished cell

A cell file is written under a hidden temporary name in ``cells/`` and renamed
into place, so every ``*.parquet`` that exists is complete: an interrupted
sweep leaves finished cells intact and no partial file that looks finished.
The resolved config, versions and the cell's parameters are also stored in
each file's Parquet key-value metadata, so a file carried away alone still
says where it came from.

A cell is done when its file exists; nothing else is trusted. Rerunning the
same config in the same directory therefore resumes: only cells without a
file (missing or failed) run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
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
MANIFEST_FILE = "manifest.json"
CELLS_DIR = "cells"
TEMP_PREFIX = ".tmp-"


def provenance() -> dict[str, str]:
    return {
        "lin2net": lin2net.__version__,
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "python": platform.python_version(),
    }


@dataclass(frozen=True)
class OutputState:
    """What an output directory holds, relative to the config about to run in it.

    ``kind`` is ``new`` (absent or empty), ``same`` (written by this config:
    a run resumes), ``extends`` (this config adds axis values to OUT's and
    changes nothing else, so every cell in OUT is a cell of this grid:
    ``--extend`` runs only the new ones), ``different`` (another config;
    ``difference`` names the first differing key, or for ``extends`` the
    added values) or ``foreign`` (not empty, not a lin2net output).
    ``finished`` holds the ids of the cell files present (``same`` and
    ``extends`` only).
    """

    kind: str
    finished: frozenset[str] = frozenset()
    difference: str = ""


def inspect_output_dir(out: Path, config: SweepConfig) -> OutputState:
    """Classify ``out`` for ``config`` without changing anything."""
    out = Path(out)
    _refuse_non_directory(out)
    if not out.is_dir() or not any(out.iterdir()):
        return OutputState("new")
    if not (out / CONFIG_FILE).is_file():
        return OutputState("foreign")
    stored, current = read_resolved_config(out), _normalized(config.resolved())
    if not first_difference(stored, current):
        return OutputState("same", finished_cell_ids(out))
    # The name only labels a run and changes no number.
    settings = first_difference(_ignoring(stored, "name", "grid"), _ignoring(current, "name", "grid"))
    added = "" if settings else grid_extension(stored.get("grid"), current.get("grid"))
    if added:
        return OutputState("extends", finished_cell_ids(out), difference=added)
    # Name the most telling difference: a setting before the grid's long
    # lists, and those before the name.
    difference = (
        settings
        or first_difference(_ignoring(stored, "name"), _ignoring(current, "name"))
        or first_difference(stored, current)
    )
    return OutputState("different", difference=difference)


def _ignoring(resolved: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {**resolved, **dict.fromkeys(keys)}


def grid_extension(stored: Any, current: Any) -> str:
    """If the resolved grid ``current`` holds every value of ``stored`` on the
    same axes, and more, the added values (``'grid.eta: 3 more values'``);
    else ``''``."""
    if not isinstance(stored, dict) or not isinstance(current, dict) or list(stored) != list(current):
        return ""
    added = []
    for key, values in stored.items():
        if any(v not in current[key] for v in values):
            return ""  # a value of OUT's grid is gone: its cells would be orphans
        new = [v for v in current[key] if v not in values]
        if new:
            added.append(f"grid.{key}: {len(new)} more value{'s' if len(new) > 1 else ''}")
    return ", ".join(added)


def check_output_dir(out: Path, state: OutputState, overwrite: bool, extend: bool = False) -> None:
    """Raise the OutputError a run would give for ``state`` (none if usable)."""
    if state.kind == "extends" and not (overwrite or extend):
        raise OutputError(
            f"output directory {out} holds a smaller grid of this config ({state.difference} here); "
            "pass --extend to run only the new cells, --overwrite to start over, or choose another -o"
        )
    if state.kind == "different" and not overwrite:
        advice = "--extend only adds axis values; " if extend else ""
        raise OutputError(
            f"output directory {out} holds results of a different config ({state.difference}); "
            f"{advice}pass --overwrite to replace them, or choose another -o"
        )
    if state.kind == "foreign" and not overwrite:
        raise OutputError(
            f"output directory {out} is not empty and not a lin2net output; pass --overwrite to replace its results"
        )


@contextlib.contextmanager
def exclusive_use(out: Path) -> Iterator[None]:
    """Hold an advisory lock on ``out`` (created if absent) while a sweep writes
    into it.

    A second sweep into the same directory (another terminal, a duplicated
    cluster job) then stops at once with a one-line error, instead of
    computing the same cells again and interleaving its manifest with the
    first one's. The lock is released when the process ends, however it
    ends, so a killed sweep never leaves a stale lock behind. Where the
    filesystem or platform offers no locks (some network filesystems,
    Windows) the sweep runs unlocked, as it would without this.
    """
    out = Path(out)
    _refuse_non_directory(out)
    _mkdir(out)
    descriptor = _lock_directory(out)
    try:
        yield
    finally:
        if descriptor is not None:
            os.close(descriptor)  # releases the lock


def _lock_directory(out: Path) -> int | None:
    """An open descriptor of ``out`` holding an exclusive flock on it, or ``None``
    where no lock can be taken; OutputError if another process holds one."""
    if sys.platform == "win32":
        return None
    import fcntl

    try:
        descriptor = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise OutputError(
            f"output directory {out} is in use by another lin2net sweep; "
            "wait for it to finish (then rerun to resume), or choose another -o"
        ) from None
    except OSError:  # no locks on this filesystem
        os.close(descriptor)
        return None
    return descriptor


def prepare_output_dir(out: Path, config: SweepConfig, overwrite: bool, extend: bool = False) -> frozenset[str]:
    """Make ``out`` ready for ``config`` and return the ids of the cells already
    finished there.

    A new (absent or empty) directory gets the resolved config and provenance.
    A directory written by the same config is resumed: its cell files are kept
    (and returned) and temporary files of an interrupted run are removed.
    With ``extend``, so is one whose grid this config only adds values to; its
    config.yaml becomes this config's. Anything else is refused unless
    ``overwrite``, which empties lin2net's files from it first.
    """
    out = Path(out)
    state = inspect_output_dir(out, config)
    check_output_dir(out, state, overwrite, extend)
    if state.kind in ("same", "extends") and not overwrite:
        if state.kind == "extends":  # the cells already there are cells of the larger grid
            _atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(config.resolved(), sort_keys=False))
        remove_temporary_files(out)
        _mkdir(out / CELLS_DIR)
        return state.finished
    if state.kind != "new":
        for name in (CONFIG_FILE, PROVENANCE_FILE, MANIFEST_FILE):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / CELLS_DIR, ignore_errors=True)
        remove_temporary_files(out)
    _mkdir(out)
    # config.yaml first: a directory holding it is recognised (and resumed) even
    # if the run is killed before anything else is written.
    _atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(config.resolved(), sort_keys=False))
    info = {**provenance(), "started": datetime.now(UTC).isoformat(timespec="seconds")}
    _atomic_write_text(out / PROVENANCE_FILE, json.dumps(info, indent=2) + "\n")
    _mkdir(out / CELLS_DIR)
    return frozenset()


def _refuse_non_directory(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a directory")


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {path}: {exc.strerror or exc}") from None


def remove_temporary_files(out: Path) -> None:
    """Delete the hidden temporary files an interrupted writer left in ``out``
    and ``out/cells`` (never a finished file)."""
    for directory in (Path(out), Path(out) / CELLS_DIR):
        for temp in directory.glob(f"{TEMP_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def _normalized(resolved: dict[str, Any]) -> Any:
    """The resolved config as it reads back from config.yaml."""
    return yaml.safe_load(yaml.safe_dump(resolved, sort_keys=False))


def first_difference(stored: Any, current: Any, key: str = "") -> str:
    """``''`` if equal, else the first differing dotted key and both values."""
    if isinstance(stored, dict) and isinstance(current, dict):
        for name in [*stored, *(k for k in current if k not in stored)]:
            sub = f"{key}.{name}" if key else str(name)
            if name not in current or name not in stored:
                where = "this config" if name not in current else "OUT"
                return f"{sub} is missing from {where}"
            found = first_difference(stored[name], current[name], sub)
            if found:
                return found
        return ""
    if stored == current and type(stored) is type(current):
        return ""
    return f"{key or 'config'} is {_short(stored)} in OUT, {_short(current)} here"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def cell_path(out: Path, cell_id: str) -> Path:
    return Path(out) / CELLS_DIR / f"{cell_id}.parquet"


def write_cell(out: Path, config: SweepConfig, cell: Cell, table: pa.Table | Iterable[pa.Table]) -> Path:
    """Write one cell's table atomically; returns the final path.

    ``table`` may be an iterable of consecutive slices (see ``cell.cell_tables``):
    each becomes one row group, so only one slice needs to be in memory."""
    metadata = {
        b"lin2net.config": json.dumps(config.resolved()).encode(),
        b"lin2net.cell": json.dumps(cell.parameters).encode(),
        b"lin2net.provenance": json.dumps(provenance()).encode(),
    }
    slices = iter([table] if isinstance(table, pa.Table) else table)
    first = next(slices)
    schema = first.schema.with_metadata({**(first.schema.metadata or {}), **metadata})

    def write(temp: Path) -> None:
        with pq.ParquetWriter(temp, schema) as writer:
            for part in itertools.chain([first], slices):
                writer.write_table(part)  # the file's key-value metadata is the writer's schema's

    final = cell_path(out, cell.cell_id)
    atomic_write(final, write)
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
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise OutputError(f"cannot read {path}: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise OutputError(f"{path} is not a lin2net resolved config")
    return data


def cell_files(out: Path) -> list[Path]:
    """Finished cell files, sorted by name (temporary files are never listed)."""
    directory = Path(out) / CELLS_DIR
    if not directory.is_dir():
        raise OutputError(f"{out} is not a lin2net output directory (no {CELLS_DIR}/)")
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith(TEMP_PREFIX))


def finished_cell_ids(out: Path) -> frozenset[str]:
    """Ids of the cells with a finished file (none if there is no ``cells/`` yet)."""
    if not (Path(out) / CELLS_DIR).is_dir():
        return frozenset()
    return frozenset(p.stem for p in cell_files(out))


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
