"""The output directory OUT of a sweep: what lin2net writes there, and what it
may delete.

Layout::

    OUT/
      .lin2net            marker: this directory is a lin2net output (JSON)
      config.yaml         resolved config (defaults filled in, axes expanded)
      provenance.json     lin2net, numba, numpy, pyarrow, Python versions, git commit; start time
      manifest.json       progress: cells done, failed (with errors), runs so far
      .verified.json      shard files already verified in full, by size, mtime, inode, footer hash
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
from typing import TYPE_CHECKING, Any

import yaml

import lin2net
from lin2net.errors import Lin2netError, OutputError
from lin2net.store.shard_file import (
    DUPLICATE_SUFFIX,
    SHARD_PREFIX,
    CorruptShard,
    ShardFooter,
    move_aside,
    named_files,
    read_verified,
    settings_digest,
    verify_footer,
    write_shard_file,
)
from lin2net.store.shards import Shard, parts_cover
from lin2net.store.summary_file import SUMMARIES_DIR, is_summary_file, scan_finished, summaries_dir
from lin2net.sweep.config import MAX_CONFIG_BYTES, SweepConfig, parse_config, parse_yaml, read_bounded_text
from lin2net.sweep.grid import Cell, expand_grid

if TYPE_CHECKING:  # imported where used: a read of verified files needs no pyarrow
    import pyarrow as pa

MARKER_FILE = ".lin2net"
CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
MANIFEST_FILE = "manifest.json"
SHARDS_DIR = "shards"
LEGACY_CELLS_DIR = "cells"  # lin2net 0.1: one file per cell
TEMP_PREFIX = ".tmp-lin2net-"
TEMP_SUFFIX = ".partial"
RUN_FILE = ".lin2net-run"  # the running sweep's token: a task whose token is not there writes nothing
STOP_FILE = ".lin2net-stop"  # lin2net <= this round: left by an interrupted sweep (still removed by --overwrite)
OVERWRITE_FILE = ".lin2net-overwrite"  # intent record: an --overwrite of OUT started and has not finished
VERIFIED_FILE = ".verified.json"  # shard files already verified in full (lin2net.store.opened)
OWNED_FIGURES_FILE = ".lin2net-figures"  # figures lin2net wrote into OUT: name -> size and SHA-256
OWN_FILES = (
    MARKER_FILE,
    CONFIG_FILE,
    PROVENANCE_FILE,
    MANIFEST_FILE,
    RUN_FILE,
    STOP_FILE,
    OVERWRITE_FILE,
    OWNED_FIGURES_FILE,
    VERIFIED_FILE,
)
MARKER_FORMAT = 2
# Rows version: raised whenever a change of lin2net changes the rows it writes
# for the same config and cell (a new kernel, a fixed formula). An OUT records
# it in provenance.json; a sweep resumes or extends only an OUT of its own rows
# version, so one output never mixes rows of two kernels.
ROWS_VERSION = 2
MAX_SMALL_FILE_BYTES = 1_000_000  # marker, provenance: a few hundred bytes when lin2net wrote them
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
    import numpy as np
    import pyarrow as pa

    info = {
        "lin2net": lin2net.__version__,
        "rows_version": str(ROWS_VERSION),
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
    duplicates: list[ShardFooter] = field(default_factory=list)  # verified, but their cells are held already
    trajectories: int = 0  # per cell: parts count once they cover this many

    @property
    def finished(self) -> frozenset[str]:
        """Cells held whole by a verified file, or by verified parts that
        cover all their trajectories."""
        whole = {cell.cell_id for footer in self.verified if footer.part is None for cell in footer.cells}
        ranges: dict[str, list[tuple[int, int]]] = {}
        for footer in self.verified:
            if footer.part is not None:
                ranges.setdefault(footer.cells[0].cell_id, []).append(footer.part)
        whole |= {cell_id for cell_id, parts in ranges.items() if parts_cover(parts, self.trajectories)}
        return frozenset(whole)

    @property
    def done_parts(self) -> frozenset[tuple[str, int, int]]:
        """(cell id, first, count) of every verified part."""
        return frozenset(
            (footer.cells[0].cell_id, footer.part[0], footer.part[1] - footer.part[0])
            for footer in self.verified
            if footer.part is not None
        )


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
    """``out`` holds lin2net's marker: a regular file (not a link) whose content
    is the JSON object lin2net writes (format, creation time, random id). A
    user's ``.lin2net`` file of other content (``{}``) does not make a folder
    lin2net's, so ``--overwrite`` never deletes anything in it."""
    marker = Path(out) / MARKER_FILE
    if marker.is_symlink() or not marker.is_file():
        return False
    content = _read_small_json(marker)
    return (
        isinstance(content, dict)
        and content.get("lin2net_output") == MARKER_FORMAT
        and isinstance(content.get("id"), str)
        and len(content["id"]) == 32
        and isinstance(content.get("created"), str)
    )


def marker_text() -> str:
    """A new marker's content (see :func:`is_marked`)."""
    return json.dumps({"lin2net_output": MARKER_FORMAT, "created": _now(), "id": uuid.uuid4().hex}) + "\n"


def _read_small_json(path: Path) -> Any:
    """JSON of a file lin2net writes small (None if unreadable or too large)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SMALL_FILE_BYTES + 1)
        return json.loads(data) if len(data) <= MAX_SMALL_FILE_BYTES else None
    except (OSError, ValueError, RecursionError):
        return None


def rows_version(out: Path) -> str:
    """The rows version OUT's provenance.json records ('' for an OUT written
    before lin2net recorded one)."""
    info = _read_small_json(Path(out) / PROVENANCE_FILE)
    version = info.get("rows_version") if isinstance(info, dict) else None
    return version if isinstance(version, str) else ""


def refuse_links_inside(out: Path) -> None:
    """OutputError if OUT's own folder ``shards`` is a symbolic link: lin2net
    never follows a link inside OUT (a resume would rename or write files
    wherever it points)."""
    folder = shards_dir(out)
    if folder.is_symlink():
        raise OutputError(
            f"{folder} is a symbolic link; lin2net never follows links inside an output directory: "
            "replace it by the folder itself, or choose another -o"
        )
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is not a directory; lin2net keeps its shard files there: choose another -o")


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
    refuse_links_inside(out)
    if (out / OVERWRITE_FILE).exists():
        return OutputState("different", difference="an --overwrite of it was interrupted; rerun it to finish")
    version = rows_version(out)
    if version != str(ROWS_VERSION):
        written = f"rows version {version}" if version else "a lin2net that recorded no rows version"
        return OutputState(
            "version", difference=f"{written}, this lin2net {lin2net.__version__} writes rows version {ROWS_VERSION}"
        )
    stored, current = read_resolved_config(out), _normalized(config.resolved())
    if not first_difference(stored, current):
        return OutputState("same", scan_finished(out, config, verify_data=verify_data))
    # The name only labels a run and changes no number.
    settings = first_difference(_ignoring(stored, "name", "grid"), _ignoring(current, "name", "grid"))
    added = "" if settings else grid_extension(stored.get("grid"), current.get("grid"))
    if added:
        old = parse_config(stored)
        return OutputState("extends", scan_finished(out, old, verify_data=verify_data), difference=added)
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
    if state.kind == "version" and not overwrite:
        raise OutputError(
            f"output directory {out} holds results of another lin2net version ({state.difference}), "
            "whose numbers may differ from this version's: pass --overwrite to replace them, or choose another -o"
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
    return named_files(shards_dir(out))


def scan_shards(out: Path, config: SweepConfig, *, verify_data: bool = True) -> ShardScan:
    """Verify every shard file of ``out`` against ``config`` (its settings and
    grid): footers always, page CRCs and content checksums too with
    ``verify_data`` (reads every file once). A cell held by two verified
    shards counts once; the later file is reported."""
    refuse_links_inside(out)
    settings = config_settings(config)
    grid = {cell.cell_id: cell for cell in expand_grid(config)}
    scan = ShardScan(trajectories=config.trajectories)
    seen: set[str] = set()  # cells held whole
    parts: dict[str, list[tuple[int, int]]] = {}  # trajectory ranges of cells held in parts
    for path in shard_files(out):
        try:
            footer = _verified_footer(path, settings, config.trajectories, grid)
            if verify_data:
                read_verified(footer)
        except CorruptShard as bad:
            scan.bad.append(bad)
            continue
        ids = {cell.cell_id for cell in footer.cells}
        # A valid file whose rows another file holds (a task of an earlier run
        # that finished after the next run planned its shards): not corrupt.
        if footer.part is not None:
            (cell_id,) = ids
            first, stop = footer.part
            if cell_id in seen or any(a < stop and first < b for a, b in parts.get(cell_id, [])):
                scan.duplicates.append(footer)
                continue
            parts.setdefault(cell_id, []).append(footer.part)
        elif ids & seen or ids & parts.keys():
            scan.duplicates.append(footer)
            continue
        else:
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
    if not is_marked(out) or not (shards_dir(out).is_dir() or summaries_dir(out).is_dir()):
        return frozenset()
    return scan_finished(out, read_config(out), verify_data=False).finished


def write_shard(
    out: Path, config: SweepConfig, shard: Shard, tables: Iterable[pa.Table], guard: WriteGuard | None = None
) -> Path:
    """Write one shard's table atomically, given as the consecutive row ranges
    of :func:`lin2net.store.shard_file.row_groups`; returns the final path.
    ``guard`` is checked before the file is started and before it is renamed
    into place (see :class:`WriteGuard`)."""
    if guard is not None:
        guard.check()
    extra = {
        b"lin2net.config": json.dumps(config.resolved()).encode(),
        b"lin2net.provenance": json.dumps(provenance()).encode(),
    }
    final = shard_path(out, shard)

    def write(temp: Path) -> None:
        write_shard_file(
            temp,
            shard.cells,
            shard.rows if shard.part is not None else shard.trajectories,
            tables,
            shard_id=shard.shard_id,
            settings=config_settings(config),
            extra_metadata=extra,
            first_trajectory=shard.first if shard.part is not None else None,
        )

    atomic_write(final, write, guard.check if guard is not None else None)
    return final


def read_trajectories(out: Path, columns: list[str] | None = None, *, verify: bool = False) -> pa.Table:
    """Every trajectory of a sweep in one table, each file verified first
    (:func:`lin2net.store.opened.open_output`; ``verify``: in full, ignoring
    OUT's record of files already verified).

    Raises OutputError for a directory that is not a lin2net output (or holds
    no finished cells), and for a shard file that fails verification (one
    line naming the file): a result is never used unverified."""
    from lin2net.store.opened import open_output

    return open_output(out, verify=verify).trajectories(columns)


def set_aside_bad_shards(scan: ShardScan) -> list[str]:
    """Move each shard file that failed verification to ``.<name>.corrupt``, and
    each verified file whose cells another file holds to ``.<name>.duplicate``;
    one line per file for the user. OutputError (and nothing recomputed) if a
    file cannot be moved: its cells' new shard would take its name."""
    lines = []
    for bad in scan.bad:
        moved = move_aside(bad.path)
        if moved is None:
            raise OutputError(f"{bad}, and it cannot be moved aside; move it out of the way and rerun")
        lines.append(f"{bad}: moved to {moved.name}; its cells will be computed again")
    for footer in scan.duplicates:
        moved = move_aside(footer.path, DUPLICATE_SUFFIX)
        if moved is None:
            raise OutputError(f"{footer.path} holds cells another shard file holds, and it cannot be moved aside")
        lines.append(f"{footer.path} holds cells another shard file holds (written twice): moved to {moved.name}")
    return lines


# ---------------------------------------------------------------- preparing OUT


class OutputReplaced(OutputError):
    """OUT is no longer the directory this sweep locked (removed, renamed,
    replaced by another sweep's): the sweep stops and writes nothing more."""

    exit_code = 1


@dataclass(frozen=True)
class DirectoryIdentity:
    """The device and inode of a directory when a sweep locked it."""

    path: Path
    device: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> DirectoryIdentity:
        found = os.stat(path)
        return cls(Path(path), found.st_dev, found.st_ino)

    def check(self) -> None:
        """OutputReplaced if ``path`` is gone or is now another directory."""
        try:
            found = os.stat(self.path)
        except OSError:
            found = None
        if found is None or (found.st_dev, found.st_ino) != (self.device, self.inode):
            raise OutputReplaced(
                f"output directory {self.path} was removed or replaced while this sweep ran; "
                "the sweep stopped and wrote nothing more into it"
            )


@dataclass(frozen=True)
class WriteGuard:
    """What a shard task checks before it writes (and again just before the
    rename that makes its file count): ``identity``, that OUT is still the
    directory the sweep locked (on this machine); ``run_file`` and ``token``,
    that OUT still names this run as the running one (on any machine sharing
    OUT: Dask). A task whose check fails raises and writes nothing."""

    identity: DirectoryIdentity | None = None
    run_file: Path | None = None
    token: str = ""

    def current(self) -> bool:
        """The run file still holds this run's token."""
        if self.run_file is None:
            return True
        try:
            with open(self.run_file, "rb") as handle:
                return handle.read(256).decode("ascii", "replace").strip() == self.token
        except OSError:
            return False

    def check(self) -> None:
        if self.identity is not None:
            self.identity.check()
        if not self.current():
            raise RunEnded("the sweep that started this task has stopped or been replaced")


class RunEnded(Lin2netError):
    """The run file no longer names the run this task belongs to."""


def start_run(out: Path) -> str:
    """Write a new run token to OUT's run file; returns it."""
    token = uuid.uuid4().hex
    _atomic_write_text(Path(out) / RUN_FILE, token + "\n")
    return token


def end_run(out: Path) -> None:
    """Remove the run file: tasks of the run still running write nothing."""
    with contextlib.suppress(OSError):
        (Path(out) / RUN_FILE).unlink()


@contextlib.contextmanager
def exclusive_use(out: Path) -> Iterator[DirectoryIdentity]:
    """Hold an advisory lock on ``out`` (created if absent) while a sweep writes
    into it.

    A second sweep into the same directory (another terminal, a duplicated
    cluster job) then stops at once with a one-line error, instead of
    computing the same cells again and interleaving its manifest with the
    first one's. The lock is released when the process ends, however it
    ends, so a killed sweep never leaves a stale lock behind. Where the
    filesystem or platform offers no locks (some network filesystems,
    Windows) the sweep runs unlocked, as it would without this.

    Yields the locked directory's identity (device, inode). A lock cannot
    stop ``rm -rf OUT``: another sweep may then create a new OUT and lock
    that. The running sweep compares the identity with OUT before each write
    (:class:`WriteGuard`) and stops with one line when they differ, so it
    never writes into the other sweep's directory.
    """
    out = Path(out)
    _refuse_non_directory(out)
    _mkdir(out)
    descriptor = _lock_directory(out)
    try:
        # The directory locked, which the sweep compares with OUT before each write.
        found = os.fstat(descriptor) if descriptor is not None else os.stat(out)
        yield DirectoryIdentity(out, found.st_dev, found.st_ino)
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
        return Prepared(ShardScan(verified=state.scan.verified, trajectories=config.trajectories), tuple(notes))
    if state.kind != "new":
        clear_output(out)  # leaves the marker and the intent record OVERWRITE_FILE
    _mkdir(out)
    # The marker and config.yaml first: a directory holding them is recognised
    # (and resumed) even if the run is killed before anything else is written.
    if not is_marked(out):
        _atomic_write_text(out / MARKER_FILE, marker_text())
    _atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(config.resolved(), sort_keys=False))
    info = {**provenance(), "started": _now()}
    _atomic_write_text(out / PROVENANCE_FILE, json.dumps(info, indent=2) + "\n")
    _mkdir(shards_dir(out))
    # Only now is OUT this config's: an --overwrite stopped before here is
    # finished by running it again (the intent record says so).
    (out / OVERWRITE_FILE).unlink(missing_ok=True)
    _fsync_directory(out)
    return Prepared(ShardScan(trajectories=config.trajectories))


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
    figures = owned_figures(out)
    for entry in sorted(out.iterdir()):
        if entry.name in (SHARDS_DIR, SUMMARIES_DIR) and entry.is_dir() and not entry.is_symlink():
            for item in sorted(entry.iterdir()):
                if (
                    _is_own_temporary(item)
                    or _is_lin2net_shard(item)
                    or _is_duplicate_shard(item)
                    or is_summary_file(item)
                ):
                    doomed.append(item)
                else:
                    raise _cannot_clear(out, item, "it is not a lin2net shard file")
            continue
        if entry.is_symlink():
            raise _cannot_clear(out, entry, "it is a symbolic link, which lin2net never follows or removes")
        if entry.name in (MARKER_FILE, OVERWRITE_FILE):
            continue  # kept: OUT stays lin2net's, and marked as being overwritten
        if (entry.name in OWN_FILES or _is_own_temporary(entry)) and entry.is_file():
            doomed.append(entry)
        elif entry.name in figures and _is_owned_figure(entry, figures[entry.name]):
            doomed.append(entry)
        else:
            raise _cannot_clear(out, entry, "lin2net did not write it")
    # The intent record first: if this process is stopped while deleting, OUT
    # says so, and the same --overwrite (or any) finishes the job.
    _atomic_write_text(out / OVERWRITE_FILE, json.dumps({"started": _now()}) + "\n")
    # The owned-figures record last: until then it still proves the figures are lin2net's.
    doomed.sort(key=lambda path: path.name == OWNED_FIGURES_FILE)
    try:
        for path in doomed:
            path.unlink(missing_ok=True)
    except OSError as exc:
        raise OutputError(f"--overwrite cannot clear {out}: {exc.strerror or exc}") from None


def _cannot_clear(out: Path, entry: Path, why: str) -> OutputError:
    return OutputError(
        f"--overwrite will not clear {out}: {entry.relative_to(out)} is there and {why}; "
        "move it away or choose another -o (nothing was deleted)"
    )


def _is_own_temporary(path: Path) -> bool:
    return path.name.startswith(TEMP_PREFIX) and path.name.endswith(TEMP_SUFFIX) and path.is_file()


def owned_figures(out: Path) -> dict[str, dict[str, Any]]:
    """Figures lin2net wrote into OUT (``lin2net plot``): file name -> size and
    SHA-256 of what it wrote. ``--overwrite`` deletes such a file only while
    its content is still exactly that."""
    record = _read_small_json(Path(out) / OWNED_FIGURES_FILE)
    if not isinstance(record, dict):
        return {}
    return {str(k): v for k, v in record.items() if isinstance(v, dict)}


def record_owned_figure(out: Path, path: Path) -> None:
    """Record that lin2net wrote the file ``path`` directly inside the lin2net
    output ``out`` (no effect for a path elsewhere or an unmarked OUT)."""
    out, path = Path(out), Path(path)
    try:
        inside = path.resolve().parent == out.resolve()
    except OSError:
        return
    if not inside or not is_marked(out) or path.is_symlink() or not path.is_file():
        return
    record = owned_figures(out)
    record[path.name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    _atomic_write_text(out / OWNED_FIGURES_FILE, json.dumps(record, indent=2) + "\n")


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_owned_figure(path: Path, entry: Mapping[str, Any]) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    try:
        return path.stat().st_size == entry.get("size") and _sha256(path) == entry.get("sha256")
    except OSError:
        return False


def _is_duplicate_shard(path: Path) -> bool:
    """A verified lin2net shard file set aside because another file already held
    its cells (``.part-*.parquet.duplicate*``): lin2net's own, removable."""
    name = path.name
    if not (name.startswith(f".{SHARD_PREFIX}") and DUPLICATE_SUFFIX in name):
        return False
    return _is_lin2net_shard(path, check_name=False)


def _is_lin2net_shard(path: Path, check_name: bool = True) -> bool:
    """A regular ``part-*.parquet`` file whose footer carries lin2net shard metadata."""
    if path.is_symlink() or not path.is_file():
        return False
    if check_name and not (path.name.startswith(SHARD_PREFIX) and path.name.endswith(".parquet")):
        return False
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lin2net.store.shard_file import SHARD_KEY

    try:
        return SHARD_KEY in (pq.read_metadata(path).metadata or {})
    except (OSError, pa.ArrowException):
        return False


def remove_temporary_files(out: Path) -> None:
    """Delete the temporary files an interrupted writer left in ``out`` and
    ``out/shards`` (only lin2net's own ``.tmp-lin2net-*.partial`` names)."""
    for directory in (Path(out), shards_dir(out), Path(out) / SUMMARIES_DIR):
        if not directory.is_dir() or directory.is_symlink():
            continue
        for temp in directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
            if _is_own_temporary(temp):
                with contextlib.suppress(OSError):
                    temp.unlink()


def temporary_files(out: Path) -> list[Path]:
    """lin2net's temporary files in ``out`` and ``out/shards`` (for tests and checks)."""
    found: list[Path] = []
    for directory in (Path(out), shards_dir(out), Path(out) / SUMMARIES_DIR):
        if directory.is_dir():
            found += [p for p in directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}") if _is_own_temporary(p)]
    return found


def atomic_write(path: Path, write: Callable[[Path], object], guard: Callable[[], None] | None = None) -> None:
    """Call ``write(temp)`` on a hidden temporary name beside ``path``, flush it to
    disk, then rename it to ``path``: readers see the old file or the whole new
    one, never a part. The temporary file is removed if anything fails.

    The temporary file is created by this call, exclusively (``O_EXCL``) and
    without following links (``O_NOFOLLOW``), under a random name, and it must
    still be that file when it is renamed: a link planted in the directory
    cannot redirect the write. A ``path`` that is a symbolic link is refused
    (OutputError), as is one that becomes a directory. An existing file's
    permission bits are kept. ``guard()``, called just before the rename, may
    raise to cancel the write (nothing is renamed)."""
    import secrets
    import stat as stat_module

    path = Path(path)
    if path.is_symlink():
        raise OutputError(f"{path} is a symbolic link; lin2net never writes through links: remove it first")
    try:
        existing = path.stat()
        mode = stat_module.S_IMODE(existing.st_mode) if stat_module.S_ISREG(existing.st_mode) else None
    except OSError:
        mode = None
    temp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}-{path.name}{TEMP_SUFFIX}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    created = False
    try:
        descriptor = os.open(temp, flags, 0o666)
        created = True
        try:
            identity = os.fstat(descriptor)
        finally:
            os.close(descriptor)
        write(temp)
        descriptor = os.open(temp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            now = os.fstat(descriptor)
            if (now.st_dev, now.st_ino) != (identity.st_dev, identity.st_ino):
                raise OutputError(f"the temporary file for {path} was replaced while lin2net wrote it; nothing written")
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(descriptor, mode)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if guard is not None:
            guard()
        os.replace(temp, path)
        created = False
        _fsync_directory(path.parent)
    except OSError as exc:
        raise OutputError(f"{exc.strerror or exc}: cannot write {path}") from None
    finally:
        if created:
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
    """OUT's config.yaml as plain data, read with the config loader's guards
    (size, values, aliases): it is a file anyone may have edited."""
    path = Path(out) / CONFIG_FILE
    if not Path(out).exists():
        raise OutputError(f"{out} does not exist")
    if not path.is_file():
        if (Path(out) / OVERWRITE_FILE).exists():
            raise OutputError(f"an --overwrite of {out} was interrupted; run that sweep again to finish it")
        raise OutputError(f"{out} is not a lin2net output directory (no {CONFIG_FILE})")
    try:
        text = read_bounded_text(path)
        if text is None:
            raise OutputError(f"cannot read {path}: larger than {MAX_CONFIG_BYTES // 1_000_000} MB")
        data = parse_yaml(text, source=str(path), written_by_lin2net=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"cannot read {path}: {exc.__class__.__name__}") from None
    except Lin2netError as exc:
        raise OutputError(f"cannot read {path}: {exc}") from None
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
    if (out / OVERWRITE_FILE).exists():
        raise OutputError(f"an --overwrite of {out} was interrupted; run that sweep again to finish it")
    refuse_links_inside(out)
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
