"""Run a whole sweep: expand the grid, run the cells not yet done, record the run.

A sweep is resumable: a cell is done when a verified shard file in OUT holds
it, and a rerun of the same config runs only the others (missing, failed, or
held by a file that failed verification), grouped into new shards
(:mod:`lin2net.store.shards`). Shards run in this process (the compiled kernel's
threads), in a local pool of worker processes (the NumPy integrators), or on
a Dask cluster (:mod:`lin2net.sweep.dask_backend`); the rows are the same whichever
runs them. ``OUT/manifest.json`` (:mod:`lin2net.store.manifest`) records failed
cells with their errors and a history of runs.

SIGINT and SIGTERM stop a sweep within a second, kernel included: finished
shards are kept, temporary files removed, workers stopped, and the manifest
written from the files; then KeyboardInterrupt (or :class:`Terminated`)
propagates.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from lin2net.errors import OutputError
from lin2net.store.manifest import CellFailure, read_manifest, write_manifest
from lin2net.store.outdir import (
    STOP_FILE,
    check_output_dir,
    exclusive_use,
    finished_cell_ids,
    inspect_output_dir,
    prepare_output_dir,
    read_config,
    remove_temporary_files,
)
from lin2net.store.shards import NUMPY_SHARD_ROWS, SHARD_ROWS, form_shards
from lin2net.sweep.config import SweepConfig
from lin2net.sweep.executors import ShardOutcome, ShardTask, default_workers, run_in_process, run_pool
from lin2net.sweep.grid import Cell, expand_grid

CellCallback = Callable[[Cell, float], None]

STOP_WAIT_SECONDS = 3.0  # how long an interrupted sweep waits for Dask tasks to notice the stop file

# Size model for --dry-run when OUT has no finished shards to measure: bytes per
# trajectory of a zstd-compressed shard (measured on sphere-init sweeps).
ROW_BYTES = 110
FILE_OVERHEAD = 20_000


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) arrived: handled like Ctrl-C, exit 128 + signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """While active, SIGTERM and SIGHUP raise :class:`Terminated` and SIGINT
    raises KeyboardInterrupt in the main thread, so a sweep stops cleanly on
    any of them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    # Ctrl-C raises KeyboardInterrupt even where the sweep was started with
    # SIGINT ignored (a background job of a non-interactive shell inherits that).
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass(frozen=True)
class SweepReport:
    """``cells``/``trajectories``: the whole grid; ``ran``: cells run by this
    call (``failures`` among them); ``skipped``: cells already done in OUT;
    ``notes``: shard files that failed verification and were moved aside."""

    cells: int
    trajectories: int
    seconds: float
    ran: int = 0
    skipped: int = 0
    failures: tuple[CellFailure, ...] = ()
    processes: int = 1
    threads: int = 1
    shards: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepPlan:
    """What ``lin2net sweep --dry-run`` shows; computed without writing anything."""

    config: SweepConfig
    cells: int
    trajectories: int
    out: Path
    out_state: str
    done: int
    shards: int
    estimated_bytes: int
    bad_files: int = 0
    estimated_seconds: float | None = None
    pilot_trajectories: int = 0


PILOT_CELLS = 16  # cells sampled, evenly over those to run, for the run-time estimate
PILOT_TRAJECTORIES = 32  # trajectories of each (the first ones of the cell: real rows)


def estimate_seconds(config: SweepConfig, todo: Sequence[Cell], workers: int | None = None) -> tuple[float, int]:
    """Seconds the cells ``todo`` would take, from a pilot: the first
    trajectories of up to :data:`PILOT_CELLS` cells spread over ``todo``,
    integrated in one call. Returns ``(seconds, pilot trajectories)``.

    Kernel time grows with the steps taken, and the pilot's trajectories are
    real rows of the sweep, so the estimate scales the pilot's time by the
    ratio of trajectories; a few runs of the pilot's own overhead are
    discounted by timing a second call."""
    from dataclasses import replace

    from lin2net.dynamics.cells import simulate_cells

    if not todo:
        return 0.0, 0
    step = max(1, len(todo) // PILOT_CELLS)
    sample = list(todo[::step])[:PILOT_CELLS]
    per_cell = min(config.trajectories, PILOT_TRAJECTORIES)
    pilot = replace(config, trajectories=per_cell)
    threads = plan_backend(config, default_workers() if workers is None else workers)[1]
    simulate_cells(pilot, sample[:1], threads=threads)  # loads the kernel (numba's cache)
    started = time.perf_counter()
    simulate_cells(pilot, sample, threads=threads)
    seconds = time.perf_counter() - started
    total = len(todo) * config.trajectories
    return seconds * total / (len(sample) * per_cell), len(sample) * per_cell


def plan_backend(config: SweepConfig, workers: int) -> tuple[int, int, int]:
    """``(processes, threads per process, target rows per shard)``.

    The compiled kernel runs in this process on ``workers`` threads. The
    NumPy integrators run on a pool of ``workers`` processes (one thread
    each), with smaller shards so that each process gets several. Shards
    never depend on ``workers``: the files are the same for any count."""
    if config.integrator == "compiled":
        from lin2net.kernels.kit import available_threads

        return 1, max(1, min(workers, available_threads())), SHARD_ROWS
    return workers, 1, NUMPY_SHARD_ROWS


def run_sweep(
    config: SweepConfig,
    out: Path,
    *,
    overwrite: bool = False,
    extend: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_cell_done: CellCallback | None = None,
    on_note: Callable[[str], None] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    overrides: Sequence[str] = (),
    shard_rows: int | None = None,
) -> SweepReport:
    """Run every cell of ``config`` that no verified shard in ``out`` holds yet.

    ``workers`` local cores (default: all): the compiled kernel's threads, or
    the processes of a pool for the NumPy integrators. ``scheduler`` (a Dask
    scheduler address) runs shards on that cluster instead. ``shard_rows``
    overrides the target trajectories per shard (default :data:`SHARD_ROWS`
    for the compiled kernel, :data:`NUMPY_SHARD_ROWS` for the NumPy
    integrators); the rows never depend on it. ``on_start(cells)`` is called
    with the number of cells about to run, ``on_cell_done(cell, seconds)``
    after each cell (finished or failed), ``on_note(line)`` for each shard
    file that failed verification. Failed cells are returned in the report
    and recorded in the manifest. A KeyboardInterrupt or :class:`Terminated`
    stops the work, keeps finished shards, removes partial files and
    propagates.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cells = expand_grid(config)
    with contextlib.ExitStack() as stack:
        cluster = None
        if scheduler is not None:
            from lin2net.sweep.dask_backend import DaskCluster

            # connect before touching OUT: an unreachable scheduler writes nothing
            cluster = stack.enter_context(DaskCluster(scheduler))
        stack.enter_context(signals_interrupt())
        stack.enter_context(exclusive_use(out))  # one sweep at a time in OUT
        prepared = prepare_output_dir(out, config, overwrite, extend)
        for line in prepared.notes:
            if on_note is not None:
                on_note(line)
        finished = prepared.finished
        todo = [cell for cell in cells if cell.cell_id not in finished]
        processes, threads, target = plan_backend(config, workers)
        if cluster is not None:
            processes, threads = cluster.threads(), 1
        shards = form_shards(todo, config.trajectories, shard_rows or target)
        if cluster is None:
            processes = min(processes, max(1, len(shards)))
        run: dict[str, Any] = {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "cells_to_run": len(todo),
            "shards_to_run": len(shards),
            "skipped": len(cells) - len(todo),
            "workers": workers if cluster is None else None,
            "processes": processes,
            "threads_per_process": threads,
            "scheduler": scheduler,
            "overrides": list(overrides),
            "extend": extend,
            "moved_aside": len(prepared.notes),
        }
        write_manifest(out, status="running", total=len(cells), done=len(finished), failures=[], run=run, new_run=True)
        target_dir = Path(out).resolve()  # workers may run elsewhere: give them an absolute path
        stop_file = target_dir / STOP_FILE
        stop_file.unlink(missing_ok=True)
        tasks = (
            ShardTask(config, shard, target_dir, threads, stop_file if cluster is not None else None)
            for shard in shards
        )
        if cluster is not None:
            outcomes: Generator[ShardOutcome, None, None] = cluster.run(
                tasks, stop_file=stop_file, wait=STOP_WAIT_SECONDS
            )
        elif processes > 1:
            outcomes = run_pool(tasks, processes)
        else:
            outcomes = run_in_process(tasks, writers=threads)
        if on_start is not None:
            on_start(len(todo))
        started = time.perf_counter()
        failures: list[CellFailure] = []
        ran = 0
        status = "interrupted"
        try:
            for outcome in outcomes:
                ran += len(outcome.cells)
                if outcome.error is not None:
                    failures += [CellFailure(cell, outcome.error) for cell in outcome.cells]
                if on_cell_done is not None:
                    for cell in outcome.cells:
                        on_cell_done(cell, outcome.seconds / len(outcome.cells))
            status = "complete" if not failures else "incomplete"
        finally:
            _stop(outcomes, stop_file, interrupted=status == "interrupted")
            seconds = time.perf_counter() - started
            remove_temporary_files(out)
            with contextlib.suppress(OutputError):
                # counted from the files: a worker may finish a shard unreported
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
        shards=len(shards),
        notes=prepared.notes,
    )


def _stop(outcomes: Generator[ShardOutcome, None, None], stop_file: Path, interrupted: bool) -> None:
    """Stop the backend; after an interrupt, tell tasks that cannot be killed
    (Dask) to write nothing, and give them a moment to notice."""
    if interrupted:
        with contextlib.suppress(OSError):
            stop_file.touch()
    # Signals arriving now must not cut the clean-up short.
    with _deferred_signals():
        outcomes.close()  # stops the workers before their partial files are removed
    if not interrupted:
        stop_file.unlink(missing_ok=True)
    # After an interrupt the stop file stays, for Dask tasks still running
    # somewhere: they will write nothing. The next run removes it.


@contextlib.contextmanager
def _deferred_signals() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while the clean-up runs (it takes well under a second)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def plan_sweep(
    config: SweepConfig,
    out: Path,
    *,
    overwrite: bool = False,
    extend: bool = False,
    shard_rows: int | None = None,
    workers: int | None = None,
    pilot: bool = True,
) -> SweepPlan:
    """The cells, shards, cells already done in ``out``, an output size
    estimate and (``pilot``) a run-time estimate from a small pilot run;
    writes nothing, and raises like :func:`run_sweep` would for an ``out`` it
    refuses."""
    cells = expand_grid(config)
    state = inspect_output_dir(out, config)
    check_output_dir(out, state, overwrite, extend)
    reusable = state.kind in ("same", "extends") and not overwrite
    done = len(state.finished) if reusable else 0
    todo = len(cells) - done
    _, _, target = plan_backend(config, 1)
    shards = math.ceil(todo / max(1, (shard_rows or target) // max(1, config.trajectories))) if todo else 0
    files = [footer.path for footer in state.scan.verified] if reusable and state.scan is not None else []
    sizes = [p.stat().st_size for p in files]
    held = len(state.finished)
    per_row = (sum(sizes) / (held * config.trajectories)) if sizes and held else ROW_BYTES
    finished = state.finished if reusable else frozenset()
    remaining = [cell for cell in cells if cell.cell_id not in finished]
    estimated, pilot_size = estimate_seconds(config, remaining, workers) if pilot and remaining else (None, 0)
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
        shards=shards,
        estimated_bytes=int(per_row * todo * config.trajectories + FILE_OVERHEAD * shards),
        bad_files=len(state.scan.bad) if state.scan is not None else 0,
        estimated_seconds=estimated,
        pilot_trajectories=pilot_size,
    )


@dataclass(frozen=True)
class Completeness:
    """Cells of an OUT's grid: all of them, the missing ones, the failed ones."""

    expected: list[Cell]
    missing: list[Cell]
    failed: list[str]


def completeness(out: Path) -> Completeness:
    """Compare the cell files in ``out`` with the grid of its resolved config."""
    expected = expand_grid(read_config(out))
    present = finished_cell_ids(out)
    missing = [cell for cell in expected if cell.cell_id not in present]
    missing_ids = {cell.cell_id for cell in missing}
    failed = [f["cell_id"] for f in read_manifest(out).get("failed", []) if f.get("cell_id") in missing_ids]
    return Completeness(expected, missing, failed)
