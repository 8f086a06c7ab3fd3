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
import os
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from lin2net.errors import ConfigError, OutputError
from lin2net.store.manifest import CellFailure, read_manifest, write_manifest
from lin2net.store.outdir import (
    RUN_FILE,
    STOP_FILE,
    DirectoryIdentity,
    OutputReplaced,
    WriteGuard,
    check_output_dir,
    end_run,
    exclusive_use,
    finished_cell_ids,
    inspect_output_dir,
    prepare_output_dir,
    read_config,
    remove_temporary_files,
    start_run,
)
from lin2net.store.shards import NUMPY_SHARD_ROWS, SHARD_ROWS, form_shards, part_rows
from lin2net.sweep.config import SweepConfig
from lin2net.sweep.executors import ShardOutcome, ShardTask, default_workers, run_in_process, run_pool
from lin2net.sweep.grid import Cell, expand_grid

CellCallback = Callable[[Cell, float], None]

STOP_WAIT_SECONDS = 3.0  # how long an interrupted sweep waits for Dask tasks to notice the stop file

# Size model for --dry-run when OUT has no finished shards to measure: bytes per
# trajectory of an LZ4-compressed shard (measured on sphere-init sweeps).
ROW_BYTES = 110
FILE_OVERHEAD = 20_000
SUMMARY_CELL_BYTES = 12_000  # keep: summary, per grid point (docs/performance.md, summary mode)


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
    pilot: Pilot | None = None
    memory: MemoryPlan | None = None
    available_memory: int | None = None


PILOT_CELLS = 64  # cells sampled, stratified over every swept axis, for the run-time estimate
PILOT_TRAJECTORIES = 8  # trajectories of each (the first ones of the cell: real rows)
PILOT_SECONDS = 2.0  # the pilot stops starting new cells after this long
# A pilot trajectory runs at most this many steps (the compiled kernel; the
# NumPy integrators, ~100x slower per step, a hundredth): a sweep whose
# trajectories run longer gets an estimate that is a lower bound, and says so.
PILOT_MAX_STEPS = 200_000
PILOT_MAX_STEPS_NUMPY = 2_000

# Peak memory model (bytes), from peak RSS of `lin2net sweep -j 1` on this
# build: a tiny sweep 259 MB; one shard of 2·10⁶ trajectories 639 MB, so
# 195 B per trajectory of a shard in memory (its initial conditions, kernel
# results and one row group of table being written).
MEMORY_BASE = 300_000_000
MEMORY_PER_TRAJECTORY = 200


@dataclass(frozen=True)
class Pilot:
    """A run-time estimate: ``seconds`` for the cells to run, scaled from
    ``trajectories`` pilot trajectories of ``cells`` cells (of ``planned``
    chosen); ``lower_bound`` names why the sweep may take longer ('' if not)."""

    seconds: float
    trajectories: int
    cells: int
    planned: int
    lower_bound: str = ""


def pilot_cells(config: SweepConfig, todo: Sequence[Cell], count: int = PILOT_CELLS) -> list[Cell]:
    """Up to about ``count`` cells of ``todo`` stratified over every swept axis:
    each axis's values, evenly spread (all of them if few), each appear in a
    chosen cell whose other parameters are drawn at random (a fixed seed: the
    same pilot every time). Striding through the grid instead would hold the
    innermost axes fixed (an SGD grid's label noise: only σ = 0 timed)."""
    import numpy as np

    rng = np.random.default_rng(0)
    if len(todo) > 100_000:  # a random subset keeps the grouping below fast for any grid
        todo = [todo[int(i)] for i in np.sort(rng.choice(len(todo), 100_000, replace=False))]
    swept = [key for key, values in config.axes.items() if len(values) > 1]
    if not swept:
        return list(todo[:: max(1, len(todo) // count)])[:count]
    per_axis = max(2, count // len(swept))
    chosen: dict[str, Cell] = {}
    for key in swept:
        groups: dict[Any, list[Cell]] = {}
        for cell in todo:
            groups.setdefault(getattr(cell, key), []).append(cell)
        values = list(groups)
        if len(values) > per_axis:
            values = [values[round(i * (len(values) - 1) / (per_axis - 1))] for i in range(per_axis)]
        for value in values:
            members = groups[value]
            cell = members[int(rng.integers(len(members)))]
            chosen[cell.cell_id] = cell
    for cell in todo[:: max(1, len(todo) // count)]:  # small grids: as many cells as asked
        if len(chosen) >= count:
            break
        chosen.setdefault(cell.cell_id, cell)
    picked = list(chosen.values())
    order = rng.permutation(len(picked))  # a pilot cut short by time still spans the axes
    return [picked[int(i)] for i in order]


def estimate_seconds(
    config: SweepConfig, todo: Sequence[Cell], workers: int | None = None, budget: float = PILOT_SECONDS
) -> Pilot:
    """Seconds the cells ``todo`` would take, from a pilot: the first
    trajectories of cells stratified over every axis (:func:`pilot_cells`),
    integrated a few cells per call until ``budget`` seconds have passed.

    Kernel time grows with the steps taken, and the pilot's trajectories are
    real rows of the sweep, so the estimate scales the pilot's time by the
    ratio of trajectories. Each pilot trajectory runs at most
    :data:`PILOT_MAX_STEPS` steps: where one reaches that bound (and the
    sweep allows more), the sweep's trajectories run longer than the pilot
    saw and the estimate is a lower bound."""
    from dataclasses import replace

    import numpy as np

    from lin2net.dynamics.cells import simulate_cells
    from lin2net.dynamics.protocol import Status

    if not todo:
        return Pilot(0.0, 0, 0, 0)
    sample = pilot_cells(config, todo)
    per_cell = min(config.trajectories, PILOT_TRAJECTORIES)
    cap = PILOT_MAX_STEPS if config.integrator == "compiled" else PILOT_MAX_STEPS_NUMPY
    steps = min(config.max_steps, cap)
    pilot = replace(config, trajectories=per_cell, max_steps=steps, window=min(config.window, steps))
    threads = plan_backend(config, default_workers() if workers is None else workers)[1]
    simulate_cells(replace(pilot, max_steps=1, window=1), sample[:1], threads=threads)  # loads the kernel
    seconds, ran, capped = 0.0, 0, False
    batch = PILOT_CELLS  # one call as a rule: the kernel fills its lanes across cells, as in the sweep
    for first in range(0, len(sample), batch):
        cells = sample[first : first + batch]
        started = time.perf_counter()
        # One thread: a pilot of a few hundred trajectories on many threads
        # waits for its slowest lane (a sweep's large shards do not), which
        # overstated the time several-fold; the kernel's threads divide the work.
        _, results = simulate_cells(pilot, cells, threads=1)
        seconds += time.perf_counter() - started
        ran += len(cells)
        capped |= bool(np.any(np.asarray(results.status) == Status.MAX_STEPS)) and config.max_steps > steps
        if seconds > budget:
            break
    total = len(todo) * config.trajectories
    reason = f"pilot trajectories were stopped at {steps} of max_steps = {config.max_steps} steps" if capped else ""
    parallel = threads if config.integrator == "compiled" else max(1, default_workers() if workers is None else workers)
    return Pilot(seconds * total / (ran * per_cell) / parallel, ran * per_cell, ran, len(sample), reason)


def machine_memory() -> int | None:
    """Bytes this process may use: physical memory, or less under a limit on
    its address space (``ulimit -v``); None where unknown."""
    import resource

    found: list[int] = []
    with contextlib.suppress(ValueError, OSError, AttributeError):
        found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    with contextlib.suppress(ValueError, OSError, AttributeError):
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY and limit > 0:
            found.append(limit)
    return min(found) if found else None


@dataclass(frozen=True)
class MemoryPlan:
    """Peak memory of a sweep (bytes, :data:`MEMORY_BASE` and
    :data:`MEMORY_PER_TRAJECTORY`): ``shard_rows`` trajectories in the
    largest shard, ``in_memory`` shards held at once per process."""

    peak: int
    shard_rows: int
    in_memory: int
    processes: int


def plan_memory(
    config: SweepConfig, cells: int, workers: int, shard_rows: int | None = None, cluster: bool = False
) -> MemoryPlan:
    """The peak memory of running ``cells`` cells of ``config`` here. A shard
    holds whole cells, or a part of one larger cell (lin2net.store.shards).
    In this process the compiled kernel integrates one
    shard while up to one per thread waits to be written; a pool's processes
    hold one shard each (and load their own libraries); on a cluster this
    process holds none."""
    processes, threads, target = plan_backend(config, workers)
    per_shard = max(1, (shard_rows or target) // max(1, config.trajectories))
    rows = min(per_shard, max(1, cells)) * config.trajectories
    if config.trajectories > part_rows(shard_rows or target):  # a large cell runs in parts
        per_shard, rows = 1, part_rows(shard_rows or target)
        cells *= math.ceil(config.trajectories / rows)  # shards, for the pool below
    if cluster:
        return MemoryPlan(MEMORY_BASE, rows, 0, 0)
    if config.integrator == "compiled":
        in_memory = min(1 + threads, -(-max(1, cells) // per_shard))
        return MemoryPlan(MEMORY_BASE + in_memory * rows * MEMORY_PER_TRAJECTORY, rows, in_memory, 1)
    pool = min(processes, max(1, -(-cells // per_shard)))
    if pool <= 1:
        return MemoryPlan(MEMORY_BASE + rows * MEMORY_PER_TRAJECTORY, rows, 1, 1)
    return MemoryPlan(MEMORY_BASE + pool * (MEMORY_BASE + rows * MEMORY_PER_TRAJECTORY), rows, 1, pool)


def check_memory(plan: MemoryPlan, config: SweepConfig, available: int | None) -> None:
    """ConfigError (one line) for a plan that needs more memory than ``available``."""
    if available is None or plan.peak <= available:
        return
    need, have = _gigabytes(plan.peak), _gigabytes(available)
    raise ConfigError(
        "--shard-size",
        f"shards of {plan.shard_rows} trajectories, {plan.in_memory} at once in each of {max(1, plan.processes)} "
        f"process(es), need about {need} at the peak; this machine allows {have}: lower --shard-size or --workers",
    )


def _gigabytes(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


def check_keep_fits(config: SweepConfig, shard_rows: int) -> None:
    """Summary files hold whole grid points: with ``keep: summary`` or ``both``
    a cell must fit in one shard (a larger one would run in parts, which only
    row files record yet)."""
    size = part_rows(shard_rows)
    if config.keep != "rows" and config.trajectories > size:
        raise ConfigError(
            "keep",
            f"{config.keep!r} needs each grid point in one shard, but {config.trajectories} trajectories exceed "
            f"the shard size {size} (--shard-size, at least one row group); raise --shard-size (memory grows with "
            "it) or keep rows",
        )


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
    # Refused before anything is written: a sweep that cannot fit in memory
    # would otherwise end in the OOM killer's kill -9 (or a MemoryError).
    check_memory(plan_memory(config, len(cells), workers, shard_rows, scheduler is not None), config, machine_memory())
    check_keep_fits(config, shard_rows or plan_backend(config, workers)[2])
    with contextlib.ExitStack() as stack:
        cluster = None
        if scheduler is not None:
            from lin2net.sweep.dask_backend import DaskCluster

            # connect before touching OUT: an unreachable scheduler writes nothing
            cluster = stack.enter_context(DaskCluster(scheduler))
        stack.enter_context(signals_interrupt())
        identity = stack.enter_context(exclusive_use(out))  # one sweep at a time in OUT
        prepared = prepare_output_dir(out, config, overwrite, extend)
        identity.check()
        for line in prepared.notes:
            if on_note is not None:
                on_note(line)
        finished = prepared.finished
        todo = [cell for cell in cells if cell.cell_id not in finished]
        processes, threads, target = plan_backend(config, workers)
        if cluster is not None:
            processes, threads = cluster.threads(), 1
        shards = form_shards(todo, config.trajectories, shard_rows or target, prepared.scan.done_parts)
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
        write_manifest(
            out,
            status="running",
            total=len(cells),
            done=len(finished),
            failures=[],
            run=run,
            new_run=True,
            guard=identity.check,
        )
        target_dir = Path(out).resolve()  # workers may run elsewhere: give them an absolute path
        (target_dir / STOP_FILE).unlink(missing_ok=True)  # left by an interrupted sweep of an earlier lin2net
        stop: Callable[[], None] | None = None
        if cluster is not None:
            # Dask workers may mount OUT elsewhere (another device number): they
            # check this run's token in OUT instead of the directory's identity.
            guard = WriteGuard(run_file=target_dir / RUN_FILE, token=start_run(target_dir))

            def stop() -> None:
                if _same_directory(identity):
                    end_run(target_dir)

        else:
            guard = WriteGuard(identity=DirectoryIdentity(target_dir, identity.device, identity.inode))
        tasks = (ShardTask(config, shard, target_dir, threads, guard) for shard in shards)
        if cluster is not None:
            outcomes: Generator[ShardOutcome, None, None] = cluster.run(tasks, stop=stop, wait=STOP_WAIT_SECONDS)
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
            failed_ids: set[str] = set()
            parts_left: dict[str, int] = {}  # a cell in parts counts once, when its last part of this run ends
            for shard in shards:
                if shard.part is not None:
                    parts_left[shard.cells[0].cell_id] = parts_left.get(shard.cells[0].cell_id, 0) + 1
            for outcome in outcomes:
                identity.check()  # OUT replaced (rm -rf, another sweep): stop here, write nothing more
                part = outcome.shard.part
                if outcome.error is not None:
                    new = [cell for cell in outcome.cells if cell.cell_id not in failed_ids]
                    failures += [CellFailure(cell, outcome.error) for cell in new]
                    failed_ids |= {cell.cell_id for cell in new}
                if part is not None:
                    cell_id = outcome.cells[0].cell_id
                    parts_left[cell_id] -= 1
                    if parts_left[cell_id] > 0:
                        continue
                ran += len(outcome.cells)
                if on_cell_done is not None:
                    for cell in outcome.cells:
                        on_cell_done(cell, outcome.seconds / len(outcome.cells))
            status = "complete" if not failures else "incomplete"
        finally:
            _stop(outcomes, stop, interrupted=status == "interrupted")
            seconds = time.perf_counter() - started
            if _same_directory(identity):  # else OUT is another sweep's now: touch nothing there
                if stop is not None:
                    stop()
                remove_temporary_files(out)
                with contextlib.suppress(OutputError):
                    # counted from the files: a worker may finish a shard unreported
                    done = len(finished_cell_ids(out) & {cell.cell_id for cell in cells})
                    run |= {"ran": ran, "failed": len(failures), "seconds": round(seconds, 3)}
                    run["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
                    write_manifest(
                        out,
                        status=status,
                        total=len(cells),
                        done=done,
                        failures=failures,
                        run=run,
                        new_run=False,
                        guard=identity.check,
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


def _same_directory(identity: DirectoryIdentity) -> bool:
    try:
        identity.check()
    except OutputReplaced:
        return False
    return True


def _stop(outcomes: Generator[ShardOutcome, None, None], stop: Callable[[], None] | None, interrupted: bool) -> None:
    """Stop the backend; after an interrupt, first tell tasks that cannot be
    killed (Dask) to write nothing (``stop()``: the run file goes)."""
    if interrupted and stop is not None:
        with contextlib.suppress(OSError):
            stop()
    # Signals arriving now must not cut the clean-up short.
    with _deferred_signals():
        outcomes.close()  # stops the workers before their partial files are removed


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
    check_keep_fits(config, shard_rows or target)  # refused as the sweep would refuse it
    size = part_rows(shard_rows or target)
    if config.trajectories > size:  # each cell in parts
        shards = todo * math.ceil(config.trajectories / size)
    else:
        shards = math.ceil(todo / max(1, (shard_rows or target) // max(1, config.trajectories))) if todo else 0
    files = [footer.path for footer in state.scan.verified] if reusable and state.scan is not None else []
    sizes = [p.stat().st_size for p in files]
    held = len(state.finished)
    per_row = (sum(sizes) / (held * config.trajectories)) if sizes and held else ROW_BYTES
    if config.keep == "summary" and not (sizes and held):  # a summary row per grid point, not a row per trajectory
        per_row = SUMMARY_CELL_BYTES / config.trajectories
    finished = state.finished if reusable else frozenset()
    remaining = [cell for cell in cells if cell.cell_id not in finished]
    estimate = estimate_seconds(config, remaining, workers) if pilot and remaining else None
    memory = plan_memory(config, len(remaining), default_workers() if workers is None else workers, shard_rows)
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
        estimated_seconds=estimate.seconds if estimate is not None else None,
        pilot_trajectories=estimate.trajectories if estimate is not None else 0,
        pilot=estimate,
        memory=memory,
        available_memory=machine_memory(),
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
