"""The output directory OUT of a sweep: what lin2net writes there, and what it
may delete.

Layout::

    OUT/
      .lin2net            marker: this directory is a lin2net output (JSON)
      config.yaml         resolved config (defaults filled in, axes expanded)
      provenance.json     lin2net, numba, numpy, pyarrow, Python versions, git commit; start time
      manifest.json       progress: cells done, failed (with errors), runs so far
      shards/part-<shard_id>.parquet   finished shards (see lin2net.store.shard_file)

Read a whole OUT with one glob: ``OUT/shards/*.parquet``.

Every file is written under a hidden temporary name and renamed into place
after an fsync, so a file that exists under its final name is complete.

lin2net deletes only what it can prove it wrote: ``--overwrite`` needs the
marker, and then removes only the files of lin2net's own names (config,
provenance, manifest, its temporary files) and shard files whose footer says
they are lin2net shards. Anything else in OUT, or a symlink where lin2net
expects its own folder, stops ``--overwrite`` with one line before anything
is deleted. A directory without the marker is never written into unless it
is empty.

A cell is done only when a shard file holding it passes verification
(footer metadata, page CRCs and content checksums): a file that fails is
reported by name, moved aside to the hidden ``.<name>.corrupt`` (not deleted), and its
cells are computed again.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

import lin2net
from lin2net.errors import Lin2netError, OutputError
from lin2net.store.shard_file import (
    SHARD_PREFIX,
    CorruptShard,
    ShardFooter,
    move_aside,
    read_verified,
    settings_digest,
    verify_footer,
    write_shard_file,
)
from lin2net.store.shards import Shard
from lin2net.sweep.config import SweepConfig, parse_config
from lin2net.sweep.grid import Cell, expand_grid

MARKER_FILE = ".lin2net"
CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
MANIFEST_FILE = "manifest.json"
SHARDS_DIR = "shards"
LEGACY_CELLS_DIR = "cells"  # lin2net 0.1: one file per cell
TEMP_PREFIX = ".tmp-lin2net-"
TEMP_SUFFIX = ".partial"
STOP_FILE = ".lin2net-stop"  # left by an interrupted sweep: Dask tasks still running write nothing
OWN_FILES = (MARKER_FILE, CONFIG_FILE, PROVENANCE_FILE, MANIFEST_FILE, STOP_FILE)
MAX_PATH_BYTES = 4095  # PATH_MAX - 1 on Linux
MAX_NAME_BYTES = 255  # NAME_MAX: one component of a path
MAX_OUT_BYTES = 4000  # an output directory leaves room for the names lin2net appends


def provenance() -> dict[str, str]:
    """Versions that decide the numbers, and the git commit of a checkout install
    (found once per process: every shard file carries it)."""
    return dict(_provenance())


@functools.lru_cache(maxsize=1)
def _provenance() -> dict[str, str]:
    import numba

    info = {
        "lin2net": lin2net.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "python": platform.python_version(),
    }
    commit = _git_commit()
    if commit:
        info["git_commit"] = commit
    return info


def _git_commit() -> str:
    """The commit of the checkout lin2net is imported from ('' if not a checkout;
    '+dirty' appended when it has uncommitted changes)."""
    root = Path(lin2net.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return ""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + ("+dirty" if dirty else "")


def path_problem(path: Path | str, max_bytes: int = MAX_PATH_BYTES) -> str | None:
    """Why no file system takes ``path`` (a NUL byte, not UTF-8: it could not be
    recorded in OUT's config and manifest, longer than ``max_bytes`` or with a
    component longer than NAME_MAX), or None."""
    text = os.fspath(path)
    if "\x00" in text:
        return "the path contains a NUL byte"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "the path is not valid UTF-8"
    if size > max_bytes:
        return f"the path is too long ({size} bytes; at most {max_bytes})"
    for part in Path(text).parts:
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            return f"a name in the path is too long ({len(part.encode('utf-8'))} bytes; at most {MAX_NAME_BYTES})"
    return None


def check_output_path(out: Path) -> None:
    """OutputError (one line) for an output directory no file system takes."""
    problem = path_problem(out, MAX_OUT_BYTES)
    if problem is not None:
        shown = ascii(os.fspath(out))
        raise OutputError(f"output path {shown[:80] + '...' if len(shown) > 80 else shown}: {problem}")


def _refuse_non_directory(out: Path) -> None:
    check_output_path(out)
    try:
        exists, is_dir = out.exists(), out.is_dir()
    except OSError as exc:
        raise OutputError(f"output path {out} cannot be used: {exc.strerror or exc}") from None
    if exists and not is_dir:
        raise OutputError(f"output path {out} exists and is not a directory")


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {path}: {exc.strerror or exc}") from None


def _normalized(resolved: dict[str, Any]) -> Any:
    """The resolved config as it reads back from config.yaml."""
    return yaml.safe_load(yaml.safe_dump(resolved, sort_keys=False))


def config_settings(config: SweepConfig) -> str:
    """The settings digest shard files of ``config`` carry (see shard_file.settings_digest)."""
    return settings_digest(_normalized(config.resolved()))


# ---------------------------------------------------------------- what OUT holds


@dataclass(frozen=True)
class OutputState:
    """What an output directory holds, relative to the config about to run in it.

    ``kind`` is ``new`` (absent or empty), ``same`` (written by this config:
    a run resumes), ``extends`` (this config adds axis values to OUT's and
    changes nothing else: ``--extend`` runs only the new cells), ``different``
    (another config; ``difference`` names the first differing key, or for
    ``extends`` the added values), ``legacy`` (lin2net 0.1's layout) or
    ``foreign`` (not empty, no lin2net marker). ``scan`` holds the verified
    shards (``same`` and ``extends`` only).
    """

    kind: str
    scan: ShardScan | None = None
    difference: str = ""
    resume: str = ""  # for ``different``: the --set options that give OUT's larger (extended) grid back

    @property
    def finished(self) -> frozenset[str]:
        return self.scan.finished if self.scan is not None else frozenset()


@dataclass
class ShardScan:
    """The shard files of an OUT: the verified ones and those that failed."""

    verified: list[ShardFooter] = field(default_factory=list)
    bad: list[CorruptShard] = field(default_factory=list)

    @property
    def finished(self) -> frozenset[str]:
        return frozenset(cell.cell_id for footer in self.verified for cell in footer.cells)


def is_legacy_output(out: Path) -> bool:
    """Written by lin2net 0.1: config.yaml, cells/, and a provenance.json naming lin2net."""
    out = Path(out)
    if not ((out / CONFIG_FILE).is_file() and (out / LEGACY_CELLS_DIR).is_dir()):
        return False
    try:
        info = json.loads((out / PROVENANCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "lin2net" in info


def is_marked(out: Path) -> bool:
    marker = Path(out) / MARKER_FILE
    return marker.is_file() and not marker.is_symlink()


def inspect_output_dir(out: Path, config: SweepConfig, verify_data: bool = True) -> OutputState:
    """Classify ``out`` for ``config`` without changing anything."""
    out = Path(out)
    _refuse_non_directory(out)
    try:
        empty = not out.is_dir() or not any(out.iterdir())
    except OSError as exc:
        raise OutputError(f"cannot read output directory {out}: {exc.strerror or exc}") from None
    if empty:
        return OutputState("new")
    if not is_marked(out):
        return OutputState("legacy" if is_legacy_output(out) else "foreign")
    stored, current = read_resolved_config(out), _normalized(config.resolved())
    if not first_difference(stored, current):
        return OutputState("same", scan_shards(out, config, verify_data=verify_data))
    # The name only labels a run and changes no number.
    settings = first_difference(_ignoring(stored, "name", "grid"), _ignoring(current, "name", "grid"))
    added = "" if settings else grid_extension(stored.get("grid"), current.get("grid"))
    if added:
        old = parse_config(stored)
        return OutputState("extends", scan_shards(out, old, verify_data=verify_data), difference=added)
    if not settings and grid_extension(current.get("grid"), stored.get("grid")):
        # OUT holds a larger grid of this config (grown with --extend --set): say how to resume it.
        sets = " ".join(
            f"--set 'grid.{key}={json.dumps(values)}'"
            for key, values in stored["grid"].items()
            if values != current["grid"].get(key)
        )
        return OutputState("different", difference=grid_extension(current["grid"], stored["grid"]), resume=sets)
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
    if state.kind == "legacy":
        raise OutputError(
            f"output directory {out} was written by lin2net 0.1 (one file per cell in {LEGACY_CELLS_DIR}/), "
            "which this version neither reads nor replaces; sweep into a new -o (lin2net 0.1 still reads it)"
        )
    if state.kind == "foreign":
        raise OutputError(
            f"output directory {out} is not empty and is not a lin2net output (no {MARKER_FILE} marker); "
            "lin2net only writes into empty directories or its own outputs: choose another -o"
        )
    if state.kind == "extends" and not (overwrite or extend):
        raise OutputError(
            f"output directory {out} holds a smaller grid of this config ({state.difference} here); "
            "pass --extend to run only the new cells, --overwrite to start over, or choose another -o"
        )
    if state.kind == "different" and state.resume and not overwrite:
        raise OutputError(
            f"output directory {out} holds a larger grid of this config ({state.difference} there, added with "
            f"--extend); to resume it, repeat the same options: {state.resume} "
            "(--overwrite would delete its results)"
        )
    if state.kind == "different" and not overwrite:
        advice = "--extend only adds axis values; " if extend else ""
        raise OutputError(
            f"output directory {out} holds results of a different config ({state.difference}); "
            f"{advice}pass --overwrite to replace them, or choose another -o"
        )


# ---------------------------------------------------------------- shards in OUT


def shards_dir(out: Path) -> Path:
    return Path(out) / SHARDS_DIR


def shard_path(out: Path, shard: Shard) -> Path:
    return shards_dir(out) / shard.file_name


def shard_files(out: Path) -> list[Path]:
    """Files named like shards (``part-*.parquet``), sorted; not yet verified."""
    directory = shards_dir(out)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"{SHARD_PREFIX}*.parquet") if not p.name.startswith("."))


def scan_shards(out: Path, config: SweepConfig, *, verify_data: bool = True) -> ShardScan:
    """Verify every shard file of ``out`` against ``config`` (its settings and
    grid): footers always, page CRCs and content checksums too with
    ``verify_data`` (reads every file once). A cell held by two verified
    shards counts once; the later file is reported."""
    settings = config_settings(config)
    grid = {cell.cell_id: cell for cell in expand_grid(config)}
    scan = ShardScan()
    seen: set[str] = set()
    for path in shard_files(out):
        try:
            footer = _verified_footer(path, settings, config.trajectories, grid)
            if verify_data:
                read_verified(footer)
        except CorruptShard as bad:
            scan.bad.append(bad)
            continue
        ids = {cell.cell_id for cell in footer.cells}
        if ids & seen:
            scan.bad.append(CorruptShard(path, "holds cells another shard file already holds"))
            continue
        seen |= ids
        scan.verified.append(footer)
    return scan


_FOOTERS: dict[tuple[Any, ...], ShardFooter] = {}  # footers verified in this process, by file identity


def _verified_footer(path: Path, settings: str, trajectories: int, grid: Mapping[str, Cell]) -> ShardFooter:
    """:func:`verify_footer`, remembered for a file that has not changed since
    (same inode, size and modification time): a command that scans OUT twice
    (summarize, then its missing-cells note) reads each footer once. Grid
    membership is checked every time."""
    try:
        stat = path.lstat()
    except OSError:
        return verify_footer(path, settings, trajectories, grid)
    key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, settings, trajectories)
    footer = _FOOTERS.get(key)
    if footer is None or any(grid.get(cell.cell_id) != cell for cell in footer.cells):
        footer = verify_footer(path, settings, trajectories, grid)
        if len(_FOOTERS) > 10_000:
            _FOOTERS.clear()
        _FOOTERS[key] = footer
    return footer


def finished_cell_ids(out: Path) -> frozenset[str]:
    """Ids of the cells held by verified shards of OUT's own config (footers only)."""
    if not is_marked(out) or not shards_dir(out).is_dir():
        return frozenset()
    return scan_shards(out, read_config(out), verify_data=False).finished


def write_shard(out: Path, config: SweepConfig, shard: Shard, tables: Iterable[pa.Table]) -> Path:
    """Write one shard's table atomically, given as the consecutive row ranges
    of :func:`lin2net.store.shard_file.row_groups`; returns the final path."""
    extra = {
        b"lin2net.config": json.dumps(config.resolved()).encode(),
        b"lin2net.provenance": json.dumps(provenance()).encode(),
    }
    final = shard_path(out, shard)

    def write(temp: Path) -> None:
        write_shard_file(
            temp,
            shard.cells,
            shard.trajectories,
            tables,
            shard_id=shard.shard_id,
            settings=config_settings(config),
            extra_metadata=extra,
        )

    atomic_write(final, write)
    return final


def read_trajectories(out: Path, columns: list[str] | None = None) -> pa.Table:
    """Every trajectory of a sweep in one table, each file verified first.

    Raises OutputError for a directory that is not a lin2net output (or holds
    no finished cells), and CorruptShard (one line naming the file) for a
    shard file that fails verification: a result is never used unverified."""
    out = Path(out)
    config = read_config(out)
    scan = scan_shards(out, config, verify_data=False)
    if scan.bad:
        bad = scan.bad[0]
        raise OutputError(f"{bad}; rerun the sweep on {out} to move it aside and recompute its cells")
    if not scan.verified:
        raise OutputError(f"{out} holds no finished cells yet")
    from concurrent.futures import ThreadPoolExecutor

    # Files are read and verified in parallel (pyarrow and NumPy release the GIL).
    with ThreadPoolExecutor(max_workers=min(len(scan.verified), os.cpu_count() or 1)) as pool:
        futures = [pool.submit(read_verified, footer, columns) for footer in scan.verified]
        tables = []
        for future in futures:
            try:
                tables.append(future.result())
            except CorruptShard as bad:
                raise OutputError(f"{bad}; rerun the sweep on {out} to move it aside and recompute its cells") from None
    return pa.concat_tables(tables)


def set_aside_bad_shards(scan: ShardScan) -> list[str]:
    """Move each shard file that failed verification to ``.<name>.corrupt``;
    one line per file for the user."""
    lines = []
    for bad in scan.bad:
        moved = move_aside(bad.path)
        where = f"moved to {moved.name}" if moved is not None else "could not be moved"
        lines.append(f"{bad}: {where}; its cells will be computed again")
    return lines


# ---------------------------------------------------------------- preparing OUT


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


@dataclass(frozen=True)
class Prepared:
    """OUT is ready: the verified shards already there, and one line per
    shard file that failed verification and was moved aside."""

    scan: ShardScan
    notes: tuple[str, ...] = ()

    @property
    def finished(self) -> frozenset[str]:
        return self.scan.finished


def prepare_output_dir(out: Path, config: SweepConfig, overwrite: bool, extend: bool = False) -> Prepared:
    """Make ``out`` ready for ``config``.

    A new (absent or empty) directory gets the marker, the resolved config
    and provenance. A directory written by the same config is resumed: its
    verified shards are kept, files that fail verification are moved aside,
    temporary files of an interrupted run are removed. With ``extend``, so is
    one whose grid this config only adds values to; its config.yaml becomes
    this config's. Another config's output is refused unless ``overwrite``,
    which removes lin2net's files from it first (see :func:`clear_output`).
    """
    out = Path(out)
    state = inspect_output_dir(out, config)
    check_output_dir(out, state, overwrite, extend)
    if state.kind in ("same", "extends") and not overwrite:
        assert state.scan is not None
        if state.kind == "extends":  # the cells already there are cells of the larger grid
            _atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(config.resolved(), sort_keys=False))
        notes = set_aside_bad_shards(state.scan)
        remove_temporary_files(out)
        _mkdir(shards_dir(out))
        return Prepared(ShardScan(verified=state.scan.verified), tuple(notes))
    if state.kind != "new":
        clear_output(out)
    _mkdir(out)
    # The marker and config.yaml first: a directory holding them is recognised
    # (and resumed) even if the run is killed before anything else is written.
    marker = {"lin2net_output": 2, "created": _now(), "id": uuid.uuid4().hex}
    _atomic_write_text(out / MARKER_FILE, json.dumps(marker) + "\n")
    _atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(config.resolved(), sort_keys=False))
    info = {**provenance(), "started": _now()}
    _atomic_write_text(out / PROVENANCE_FILE, json.dumps(info, indent=2) + "\n")
    _mkdir(shards_dir(out))
    return Prepared(ShardScan())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def clear_output(out: Path) -> None:
    """Remove lin2net's own files from a marked OUT (for ``--overwrite``).

    First every entry is classified; if anything is not provably lin2net's
    (a user's file, a symlink, a folder lin2net does not make, a ``part-*``
    file whose footer is not a lin2net shard's), nothing is deleted and the
    first such entry is named. Shard files that failed verification earlier
    (``.*.corrupt``) are not lin2net's to delete either."""
    out = Path(out)
    if not is_marked(out):
        raise OutputError(f"{out} has no {MARKER_FILE} marker; lin2net only replaces its own outputs")
    doomed: list[Path] = []
    for entry in sorted(out.iterdir()):
        if entry.name == SHARDS_DIR and entry.is_dir() and not entry.is_symlink():
            for item in sorted(entry.iterdir()):
                if _is_own_temporary(item) or _is_lin2net_shard(item):
                    doomed.append(item)
                else:
                    raise _cannot_clear(out, item, "it is not a lin2net shard file")
            continue
        if entry.is_symlink():
            raise _cannot_clear(out, entry, "it is a symbolic link, which lin2net never follows or removes")
        if entry.name == MARKER_FILE:
            continue  # removed last
        if (entry.name in OWN_FILES or _is_own_temporary(entry)) and entry.is_file():
            doomed.append(entry)
        else:
            raise _cannot_clear(out, entry, "lin2net did not write it")
    try:
        for path in doomed:
            path.unlink(missing_ok=True)
        (out / MARKER_FILE).unlink(missing_ok=True)
    except OSError as exc:
        raise OutputError(f"--overwrite cannot clear {out}: {exc.strerror or exc}") from None


def _cannot_clear(out: Path, entry: Path, why: str) -> OutputError:
    return OutputError(
        f"--overwrite will not clear {out}: {entry.relative_to(out)} is there and {why}; "
        "move it away or choose another -o (nothing was deleted)"
    )


def _is_own_temporary(path: Path) -> bool:
    return path.name.startswith(TEMP_PREFIX) and path.name.endswith(TEMP_SUFFIX) and path.is_file()


def _is_lin2net_shard(path: Path) -> bool:
    """A regular ``part-*.parquet`` file whose footer carries lin2net shard metadata."""
    if path.is_symlink() or not path.is_file() or not path.name.startswith(SHARD_PREFIX):
        return False
    if not path.name.endswith(".parquet"):
        return False
    import pyarrow.parquet as pq

    from lin2net.store.shard_file import SHARD_KEY

    try:
        return SHARD_KEY in (pq.read_metadata(path).metadata or {})
    except (OSError, pa.ArrowException):
        return False


def remove_temporary_files(out: Path) -> None:
    """Delete the temporary files an interrupted writer left in ``out`` and
    ``out/shards`` (only lin2net's own ``.tmp-lin2net-*.partial`` names)."""
    for directory in (Path(out), shards_dir(out)):
        if not directory.is_dir() or directory.is_symlink():
            continue
        for temp in directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
            if _is_own_temporary(temp):
                with contextlib.suppress(OSError):
                    temp.unlink()


def temporary_files(out: Path) -> list[Path]:
    """lin2net's temporary files in ``out`` and ``out/shards`` (for tests and checks)."""
    found: list[Path] = []
    for directory in (Path(out), shards_dir(out)):
        if directory.is_dir():
            found += [p for p in directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}") if _is_own_temporary(p)]
    return found


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(temp)`` on a hidden temporary name beside ``path``, flush it to
    disk, then rename it to ``path``: readers see the old file or the whole new
    one, never a part. The temporary file is removed if anything fails."""
    path = Path(path)
    temp = path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{path.name}{TEMP_SUFFIX}")
    try:
        write(temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
        _fsync_directory(path.parent)
    except OSError as exc:
        raise OutputError(f"{exc.strerror or exc}: cannot write {path}") from None
    finally:
        with contextlib.suppress(OSError):  # a read-only directory must not hide the real error
            temp.unlink()


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform allows)."""
    if sys.platform == "win32":
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def read_resolved_config(out: Path) -> dict[str, Any]:
    path = Path(out) / CONFIG_FILE
    if not Path(out).exists():
        raise OutputError(f"{out} does not exist")
    if not path.is_file():
        raise OutputError(f"{out} is not a lin2net output directory (no {CONFIG_FILE})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise OutputError(f"cannot read {path}: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise OutputError(f"{path} is not a lin2net resolved config")
    return data


def read_config(out: Path) -> SweepConfig:
    """The resolved config of a lin2net output, parsed. OutputError (one line)
    for a directory without the marker, for lin2net 0.1's layout, and for a
    config.yaml that does not parse."""
    out = Path(out)
    if not is_marked(out):
        if not out.exists():
            raise OutputError(f"{out} does not exist")
        if is_legacy_output(out):
            raise OutputError(
                f"{out} was written by lin2net 0.1 (one file per cell), which this version does not read; "
                "rerun its sweep into a new -o"
            )
        raise OutputError(f"{out} is not a lin2net output directory (no {MARKER_FILE} marker)")
    try:
        return parse_config(read_resolved_config(out))
    except Lin2netError as exc:
        raise OutputError(f"{Path(out) / CONFIG_FILE} is not a valid lin2net config: {exc}") from None


def first_difference(stored: Any, current: Any, key: str = "") -> str:
    """``''`` if equal, else the first differing dotted key and both values."""
    if isinstance(stored, Mapping) and isinstance(current, Mapping):
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
