"""Run a whole sweep: expand the grid, run the cells not yet done, record the run.

A sweep is resumable: a cell is done when its file exists in OUT, and a rerun
of the same config runs only the others (missing or failed). Cells run in
this process, in a local pool of worker processes (:mod:`lin2net.executors`)
or on a Dask cluster (:mod:`lin2net.dask_backend`); the files are the same
whichever runs them. ``OUT/manifest.json`` (:mod:`lin2net.manifest`) records
failed cells with their errors and a history of runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lin2net.config import SweepConfig, parse_config
from lin2net.errors import OutputError
from lin2net.executors import CellOutcome, CellTask, run_pool, run_serial, split_workers
from lin2net.grid import Cell, expand_grid
from lin2net.manifest import CellFailure, read_manifest, write_manifest
from lin2net.store import (
    cell_files,
    check_output_dir,
    exclusive_use,
    finished_cell_ids,
    inspect_output_dir,
    prepare_output_dir,
    read_resolved_config,
    remove_temporary_files,
)

CellCallback = Callable[[Cell, float], None]

# Size model for --dry-run when OUT has no finished cells to measure: a cell
# file is about FILE_OVERHEAD bytes of footer and metadata plus ROW_BYTES per
# trajectory (compressed Parquet, measured on sphere-init sweeps of 64 to 4000
# trajectories per cell: 8.5 kB + 120 B per trajectory).
ROW_BYTES = 120
FILE_OVERHEAD = 8_500


@dataclass(frozen=True)
class SweepReport:
    """``cells``/``trajectories``: the whole grid; ``ran``: cells run by this
    call (``failures`` among them); ``skipped``: cells already done in OUT."""

    cells: int
    trajectories: int
    seconds: float
    ran: int = 0
    skipped: int = 0
    failures: tuple[CellFailure, ...] = ()
    processes: int = 1
    threads: int = 1


@dataclass(frozen=True)
class SweepPlan:
    """What ``lin2net sweep --dry-run`` shows; computed without writing anything."""

    config: SweepConfig
    cells: int
    trajectories: int
    out: Path
    out_state: str
    done: int
    estimated_bytes: int


def run_sweep(
    config: SweepConfig,
    out: Path,
    *,
    overwrite: bool = False,
    extend: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_cell_done: CellCallback | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    overrides: Sequence[str] = (),
) -> SweepReport:
    """Run every cell of ``config`` that has no file in ``out`` yet.

    ``workers`` local cores: 1 runs cells in this process; more run them in a
    pool of ``min(workers, cells)`` processes, each told to use
    ``workers // processes`` threads. ``scheduler`` (a Dask scheduler address)
    runs them on that cluster instead. ``on_cell_done(cell, seconds)`` is
    called after each cell, finished or failed. Failed cells are returned in
    the report and recorded in the manifest; ``on_start(cells)`` is called
    with the number of cells about to run; a KeyboardInterrupt stops the
    workers, keeps finished cells, removes partial files and propagates.
    ``extend`` accepts an ``out`` whose grid ``config`` only adds values to
    with every other setting equal (``extends`` in :class:`lin2net.store.OutputState`):
    only the new cells run.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cells = expand_grid(config)
    with contextlib.ExitStack() as stack:
        cluster = None
        if scheduler is not None:
            from lin2net.dask_backend import DaskCluster

            # connect before touching OUT: an unreachable scheduler writes nothing
            cluster = stack.enter_context(DaskCluster(scheduler))
        stack.enter_context(exclusive_use(out))  # one sweep at a time in OUT
        finished = prepare_output_dir(out, config, overwrite, extend)
        todo = [cell for cell in cells if cell.cell_id not in finished]
        processes, threads = (cluster.threads(), 1) if cluster is not None else split_workers(workers, len(todo))
        run: dict[str, Any] = {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "cells_to_run": len(todo),
            "skipped": len(cells) - len(todo),
            "workers": workers if cluster is None else None,
            "processes": processes,
            "threads_per_process": threads,
            "scheduler": scheduler,
            "overrides": list(overrides),
            "extend": extend,
        }
        write_manifest(out, status="running", total=len(cells), done=len(finished), failures=[], run=run, new_run=True)
        target = Path(out).resolve()  # workers may run elsewhere: give them an absolute path
        tasks = (CellTask(config, cell, target, threads) for cell in todo)
        if cluster is not None:
            outcomes: Generator[CellOutcome, None, None] = cluster.run(tasks)
        elif processes > 1:
            outcomes = run_pool(tasks, processes)
        else:
            outcomes = run_serial(tasks)
        if on_start is not None:
            on_start(len(todo))
        started = time.perf_counter()
        failures: list[CellFailure] = []
        ran = 0
        status = "interrupted"
        try:
            for outcome in outcomes:
                ran += 1
                if outcome.error is not None:
                    failures.append(CellFailure(outcome.cell, outcome.error))
                if on_cell_done is not None:
                    on_cell_done(outcome.cell, outcome.seconds)
            status = "complete" if not failures else "incomplete"
        finally:
            outcomes.close()  # stops the workers before their partial files are removed
            seconds = time.perf_counter() - started
            remove_temporary_files(out)
            with contextlib.suppress(OutputError):
                # counted from the files: a worker may finish a cell unreported
                done = len(finished_cell_ids(out) & {cell.cell_id for cell in cells})
                run |= {"ran": ran, "failed": len(failures), "seconds": round(seconds, 3)}
                run["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
                write_manifest(
                    out, status=status, total=len(cells), done=done, failures=failures, run=run, new_run=False
                )
    return SweepReport(
        cells=len(cells),
        trajectories=len(cells) * config.trajectories,
        seconds=seconds,
        ran=ran,
        skipped=len(cells) - len(todo),
        failures=tuple(failures),
        processes=processes,
        threads=threads,
    )


def plan_sweep(config: SweepConfig, out: Path, *, overwrite: bool = False, extend: bool = False) -> SweepPlan:
    """The cells, trajectories, cells already done in ``out`` and an output size
    estimate; raises like :func:`run_sweep` would for a foreign ``out``."""
    cells = expand_grid(config)
    state = inspect_output_dir(out, config)
    check_output_dir(out, state, overwrite, extend)
    reusable = state.kind in ("same", "extends")
    done = len(state.finished) if reusable and not overwrite else 0
    files = cell_files(out) if reusable else []
    if files:
        per_cell = sum(p.stat().st_size for p in files) / len(files)
    else:
        per_cell = FILE_OVERHEAD + ROW_BYTES * config.trajectories
    label = (
        "overwrite"
        if overwrite and state.kind != "new"
        else {"same": "resume", "extends": "extend"}.get(state.kind, "new")
    )
    return SweepPlan(
        config=config,
        cells=len(cells),
        trajectories=len(cells) * config.trajectories,
        out=Path(out),
        out_state=label,
        done=done,
        estimated_bytes=int(per_cell * len(cells)),
    )


@dataclass(frozen=True)
class Completeness:
    """Cells of an OUT's grid: all of them, the missing ones, the failed ones."""

    expected: list[Cell]
    missing: list[Cell]
    failed: list[str]


def completeness(out: Path) -> Completeness:
    """Compare the cell files in ``out`` with the grid of its resolved config."""
    expected = expand_grid(parse_config(read_resolved_config(out)))
    present = finished_cell_ids(out)
    missing = [cell for cell in expected if cell.cell_id not in present]
    missing_ids = {cell.cell_id for cell in missing}
    failed = [f["cell_id"] for f in read_manifest(out).get("failed", []) if f.get("cell_id") in missing_ids]
    return Completeness(expected, missing, failed)
