"""An opened output: one object for everything a command reads from OUT.

:func:`open_output` reads OUT's marker and ``config.yaml`` once, lists its
shard files and verifies them; the :class:`OpenedOutput` it returns then
answers every question a read command asks — the config, the manifest, which
cells are finished or missing, the verified trajectory table (any columns),
the per-cell summary — without reading any of it again::

    opened = open_output("runs/smoke")
    opened.config.trajectories           # the resolved config, parsed
    opened.trajectories(["eta", "q_ratio"])  # a pyarrow.Table of verified rows
    opened.summary(by=["eta"])           # lin2net.analysis.summary, as a DataFrame

Verification is paid once. A shard file counts only once its footer matches
the sweep (:func:`lin2net.store.shard_file.verify_footer`) and its content
matches the footer's checksums (:func:`lin2net.store.shard_file.read_verified`,
which reads every column). After that full check the file's state is
recorded in ``OUT/.verified.json`` (:data:`VERIFIED_FILE`, written
atomically): its size, modification time in ns, inode and a SHA-256 of its
Parquet footer, with the sweep settings it was verified against and its
cells. A later open that finds the file in exactly that state (all four
equal, same settings, every cell still in the grid) trusts it without
reading its data again; any difference — the file touched, rewritten, moved,
grown, its footer changed — sends it through the full check again.
``verify=True`` (the ``--verify`` flag of the read commands) ignores the
record and checks every file fully; every sweep's resume does the full check
too (:func:`lin2net.store.outdir.scan_shards`).

What the record cannot see: a change to a file's data pages that keeps its
size, inode and footer and restores its modification time (a deliberate
edit, or silent corruption of the disk under an unchanged inode). ``--verify``
finds those.

Where OUT is not writable the record is simply not written: reads stay
correct and pay the full check each time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lin2net.errors import Lin2netError, OutputError
from lin2net.store.outdir import VERIFIED_FILE

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from lin2net.store.shard_file import ShardFooter
    from lin2net.sweep.config import SweepConfig
    from lin2net.sweep.grid import Cell

_RECORD_FORMAT = 1


@dataclass(frozen=True)
class FileState:
    """What identifies a file's bytes without reading them all: size, mtime, inode
    and a SHA-256 of its Parquet footer (the last 8 + footer-length bytes)."""

    size: int
    mtime_ns: int
    inode: int
    footer_sha256: str

    @classmethod
    def of(cls, path: Path) -> FileState | None:
        """The state of ``path`` now; ``None`` if it cannot be read as Parquet's tail."""
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if stat.st_size < 12:
                    return None
                handle.seek(-8, os.SEEK_END)
                tail = handle.read(8)
                length = int.from_bytes(tail[:4], "little")
                if tail[4:] != b"PAR1" or length + 12 > stat.st_size:
                    return None
                handle.seek(-(8 + length), os.SEEK_END)
                digest = hashlib.sha256(handle.read(length + 8)).hexdigest()
        except OSError:
            return None
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ino, digest)


@dataclass(frozen=True)
class VerifiedShard:
    """A shard file that passed verification: where it is, what it holds."""

    path: Path
    shard_id: str
    cell_ids: tuple[str, ...]
    rows: int
    part: tuple[int, int] | None = None  # (first, stop): trajectories of a part of one cell


def _load_record(out: Path) -> dict[str, Any]:
    """OUT's record (``{}`` if absent, unreadable or of another format)."""
    try:
        data = json.loads((out / VERIFIED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _RECORD_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return data


def _write_record(out: Path, record: Mapping[str, Any]) -> None:
    """Replace OUT's record atomically; silently skipped where OUT is read-only."""
    from lin2net.store.outdir import atomic_write

    text = json.dumps({**record, "format": _RECORD_FORMAT}) + "\n"
    with contextlib.suppress(Lin2netError, OSError):
        atomic_write(out / VERIFIED_FILE, lambda temp: temp.write_text(text, encoding="utf-8"))


def _recorded(entry: Any, state: FileState, settings: str, trajectories: int, grid: Collection[str] | None) -> bool:
    """Whether a record entry vouches for a file now in ``state`` (``grid``:
    the grid's cell ids, ``None`` where the record was written for this very
    config.yaml, whose grid then held the entry's cells)."""
    if not isinstance(entry, dict):
        return False
    try:
        same = (
            entry["size"] == state.size
            and entry["mtime_ns"] == state.mtime_ns
            and entry["inode"] == state.inode
            and entry["footer_sha256"] == state.footer_sha256
            and entry["settings"] == settings
            and entry["trajectories"] == trajectories
        )
        return same and (grid is None or all(cell_id in grid for cell_id in entry["cells"]))
    except (KeyError, TypeError):
        return False


def _read_config(out: Path) -> tuple[dict[str, Any], SweepConfig, str]:
    """OUT's resolved config as plain data and parsed, and the SHA-256 of
    config.yaml; the errors of :func:`lin2net.store.outdir.read_config`."""
    import yaml

    from lin2net.store.outdir import CONFIG_FILE, read_config
    from lin2net.sweep.config import parse_config

    path = out / CONFIG_FILE
    try:
        raw = path.read_bytes()
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where installed: 10x faster
        resolved = yaml.load(raw.decode("utf-8"), Loader=loader)  # noqa: S506 (a safe loader)
        if not isinstance(resolved, dict):
            raise ValueError("not a mapping")
        return resolved, parse_config(resolved), hashlib.sha256(raw).hexdigest()
    except (OSError, ValueError, yaml.YAMLError, Lin2netError):
        read_config(out)  # raises the one-line error for whatever is wrong
        raise OutputError(f"{path} is not a lin2net resolved config") from None


class OpenedOutput:
    """A lin2net output directory, opened and verified (see the module doc).

    Build it with :func:`open_output`. ``config`` is the resolved config
    (:class:`SweepConfig`), ``resolved`` the same as plain data, as in
    ``config.yaml``; ``shards`` are the verified shard files (verified on first
    use: a command that reads only the config, ``trace``, reads no shard).
    """

    def __init__(
        self, path: Path, resolved: dict[str, Any], config: SweepConfig, *, config_sha: str = "", verify: bool = False
    ):
        self.path = path
        self.resolved = resolved
        self.config = config
        self.config_sha = config_sha
        self.verify = verify
        self._grid_cells: int | None = None

    @functools.cached_property
    def shards(self) -> tuple[VerifiedShard, ...]:
        """The verified shard files, sorted by name (verified on first use)."""
        return _scan(self)

    @property
    def algorithm(self) -> str:
        return self.config.algorithm

    @property
    def files(self) -> list[Path]:
        """The verified shard files, sorted by name."""
        return [shard.path for shard in self.shards]

    @property
    def rows(self) -> int:
        return sum(shard.rows for shard in self.shards)

    @functools.cached_property
    def manifest(self) -> dict[str, Any]:
        """``OUT/manifest.json`` as plain data (``{}`` if absent or unreadable)."""
        from lin2net.store.manifest import read_manifest

        return read_manifest(self.path)

    @functools.cached_property
    def cells(self) -> tuple[Cell, ...]:
        """Every cell of OUT's grid, in grid order."""
        from lin2net.sweep.grid import expand_grid

        return tuple(expand_grid(self.config))

    @functools.cached_property
    def grid(self) -> dict[str, Cell]:
        """The grid's cells by id."""
        return {cell.cell_id: cell for cell in self.cells}

    @property
    def grid_cells(self) -> int:
        """How many cells the grid has (from OUT's record where it has this config)."""
        return self._grid_cells if self._grid_cells is not None else len(self.cells)

    @property
    def complete(self) -> bool:
        """Every cell of the grid is held by a verified shard file."""
        return len(self.finished) == self.grid_cells

    @functools.cached_property
    def summaries(self) -> tuple[Any, ...]:
        """The footers of the per-cell summary files (``keep: summary`` or
        ``both``; none for ``keep: rows``), each footer verified; their data is
        verified where it is read (:func:`lin2net.store.summary_file.read_summaries`)."""
        if self.config.keep == "rows":
            return ()
        from lin2net.store.summary_file import scan_summaries

        scan = scan_summaries(self.path, self.config, verify_data=False)
        if scan.bad:
            raise OutputError(f"{scan.bad[0]}; rerun the sweep on {self.path} to move it aside and recompute its cells")
        return tuple(scan.verified)

    @property
    def finished(self) -> frozenset[str]:
        """Ids of the finished cells: held by verified shard files (a cell in
        parts once they cover it), or, for ``keep: summary``, by verified summary files."""
        if self.config.keep == "summary":
            return frozenset(cell.cell_id for footer in self.summaries for cell in footer.cells)
        return frozenset(cell_id for shard in self.shards for cell_id in shard.cell_ids)

    @property
    def missing(self) -> list[Cell]:
        """Cells of the grid without a verified shard file, in grid order."""
        if self.complete:
            return []
        finished = self.finished
        return [cell for cell in self.cells if cell.cell_id not in finished]

    @property
    def failed(self) -> list[str]:
        """Ids of missing cells the manifest lists as failed."""
        missing = {cell.cell_id for cell in self.missing}
        return [f["cell_id"] for f in self.manifest.get("failed", []) if f.get("cell_id") in missing]

    def _no_rows(self) -> str:
        if self.config.keep == "summary":
            return f"{self.path} keeps per-cell summaries only (keep: summary): there are no trajectory rows to read"
        return f"{self.path} holds no finished cells yet"

    def sql_source(self) -> str:
        """A DuckDB table expression reading every verified shard file."""
        if not self.shards:
            raise OutputError(self._no_rows())
        files = ", ".join("'" + str(path).replace("'", "''") + "'" for path in self.files)
        return f"read_parquet([{files}])"

    def trajectories(
        self, columns: Sequence[str] | None = None, shards: Sequence[VerifiedShard] | None = None
    ) -> pa.Table:
        """Every verified trajectory in one table (only ``columns`` if given; only
        those of ``shards`` if given), in shard-file order: each shard's cells
        in the order of its ``cell_ids``, each cell's rows contiguous. Files are
        read in parallel (pyarrow releases the GIL)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.shards:
            raise OutputError(self._no_rows())
        selected = list(dict.fromkeys(columns)) if columns is not None else None
        files = self.files if shards is None else [shard.path for shard in shards]

        def read(path: Path) -> pa.Table:
            try:
                return pq.read_table(path, columns=selected)
            except (OSError, pa.ArrowException) as exc:
                raise OutputError(f"{path}: cannot read a verified shard file ({exc.__class__.__name__})") from None

        return pa.concat_tables(parallel(read, files))

    def summary(self, by: Sequence[str] | None = None) -> pd.DataFrame:
        """Per-cell statistics (or per combination of the ``by`` axes): see
        :func:`lin2net.analysis.summary.summarize`."""
        from lin2net.analysis.summary import summarize

        return summarize(self, by=by)


def parallel(function: Any, items: Sequence[Any]) -> list[Any]:
    """``[function(item) for item in items]``, in threads (one per core): for
    work that releases the GIL (pyarrow reads, NumPy on large arrays)."""
    if len(items) <= 1:
        return [function(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(items), os.cpu_count() or 1)) as pool:
        return list(pool.map(function, items))


def open_output(out: Path | str | OpenedOutput, *, verify: bool = False) -> OpenedOutput:
    """Open the lin2net output ``out``: its marker and config now, its shard
    files when first needed (:attr:`OpenedOutput.shards`).

    A file recorded in ``OUT/.verified.json`` in its present state is trusted;
    every other file (every file, with ``verify``) is checked fully — footer,
    page CRCs, content checksums of every column — and recorded. Raises
    OutputError (one line) for a directory that is not a lin2net output, and
    (on first use of the shards) for a shard file that fails verification
    (named, with what to do). An ``OpenedOutput`` passed in is returned as is.
    """
    if isinstance(out, OpenedOutput):
        return out
    from lin2net.store.outdir import is_marked, read_config

    path = Path(out)
    if not is_marked(path):
        read_config(path)  # raises the one-line error (no marker, lin2net 0.1's layout)
    resolved, config, config_sha = _read_config(path)
    return OpenedOutput(path, resolved, config, config_sha=config_sha, verify=verify)


def _scan(opened: OpenedOutput) -> tuple[VerifiedShard, ...]:
    """The verified shard files of ``opened`` (see :func:`open_output`)."""
    from lin2net.store.outdir import config_settings, shard_files
    from lin2net.store.shards import parts_cover

    path, config, verify = opened.path, opened.config, opened.verify
    files = shard_files(path)
    record = {} if verify else _load_record(path)
    same_config = record.get("config_sha256") == opened.config_sha and isinstance(record.get("settings"), str)
    settings = str(record["settings"]) if same_config else config_settings(config)
    if same_config and isinstance(record.get("grid_cells"), int):
        opened._grid_cells = int(record["grid_cells"])
    if not files:
        return ()
    grid = None if same_config else set(opened.grid)
    entries = record.get("files", {}) if isinstance(record.get("files"), dict) else {}
    trusted: dict[Path, VerifiedShard] = {}
    pending: list[tuple[Path, FileState | None]] = []
    for file in files:
        state = FileState.of(file)
        entry = entries.get(file.name)
        if state is not None and _recorded(entry, state, settings, config.trajectories, grid):
            known: dict[str, Any] = entry  # type: ignore[assignment]  # _recorded: a dict
            part = known.get("part")
            trusted[file] = VerifiedShard(
                file,
                str(known["shard_id"]),
                tuple(known["cells"]),
                int(known["rows"]),
                (int(part[0]), int(part[1])) if isinstance(part, list) and len(part) == 2 else None,
            )
        else:
            pending.append((file, state))
    checked = _verify_fully([file for file, _ in pending], settings, config.trajectories, opened, path)
    shards = []
    seen: set[str] = set()
    parts: dict[str, list[tuple[int, int]]] = {}
    for file in files:
        shard = trusted.get(file) or checked[file]
        overlap = bool(seen & set(shard.cell_ids))
        if shard.part is not None:
            first, stop = shard.part
            held = parts.setdefault(shard.cell_ids[0], [])
            overlap = overlap or any(first < end and begin < stop for begin, end in held)
            held.append(shard.part)
        elif any(cell_id in parts for cell_id in shard.cell_ids):
            overlap = True
        if overlap:
            raise _corrupt(path, f"{file} failed verification (holds cells another shard file already holds)")
        if shard.part is None:
            seen |= set(shard.cell_ids)
        shards.append(shard)
    if pending or not same_config:
        kept = _load_record(path).get("files", {}) if not verify else {}
        names, rechecked = {f.name for f in files}, {f.name for f, _ in pending}
        kept = {name: e for name, e in kept.items() if name in names and name not in rechecked}
        for file, state in pending:
            if state is None or FileState.of(file) != state:
                continue  # changed while it was being read: not recorded
            shard = checked[file]
            kept[file.name] = {
                "size": state.size,
                "mtime_ns": state.mtime_ns,
                "inode": state.inode,
                "footer_sha256": state.footer_sha256,
                "settings": settings,
                "trajectories": config.trajectories,
                "shard_id": shard.shard_id,
                "rows": shard.rows,
                "cells": list(shard.cell_ids),
                **({} if shard.part is None else {"part": list(shard.part)}),
            }
        new = {"config_sha256": opened.config_sha, "settings": settings, "grid_cells": len(opened.cells), "files": kept}
        _write_record(path, new)
    # A cell in parts counts once its parts cover all its trajectories; until then
    # its parts are not read (a resume finishes them).
    covered = {cell_id for cell_id, held in parts.items() if parts_cover(held, config.trajectories)}
    return tuple(s for s in shards if s.part is None or s.cell_ids[0] in covered)


def _corrupt(out: Path, message: str) -> OutputError:
    return OutputError(f"{message}; rerun the sweep on {out} to move it aside and recompute its cells")


def _verify_fully(
    files: Sequence[Path], settings: str, trajectories: int, opened: OpenedOutput, out: Path
) -> dict[Path, VerifiedShard]:
    """Footer, page CRCs and content checksums of every column of ``files``
    (in parallel); OutputError naming the first file that fails."""
    if not files:
        return {}
    from lin2net.store.shard_file import CorruptShard, read_verified, verify_footer

    grid = opened.grid

    def check(file: Path) -> ShardFooter | CorruptShard:
        try:
            footer = verify_footer(file, settings, trajectories, grid)
            read_verified(footer)
        except CorruptShard as bad:
            return bad
        return footer

    results = parallel(check, files)
    verified: dict[Path, VerifiedShard] = {}
    for file, result in zip(files, results, strict=True):
        if not hasattr(result, "cells"):
            raise _corrupt(out, str(result))
        footer: Any = result
        cell_ids = tuple(c.cell_id for c in footer.cells)
        verified[file] = VerifiedShard(file, footer.shard_id, cell_ids, footer.rows, footer.part)
    return verified
