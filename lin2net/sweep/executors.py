"""Where shards run: in this process, in a pool of local worker processes, or
(see :mod:`lin2net.sweep.dask_backend`) on a Dask cluster.

Every backend runs the same task, :func:`compute_shard`: simulate a shard's
cells and write its file atomically, from the worker itself. A cell's numbers
depend only on the config and the cell, never on which worker ran it, on the
shard that holds it or on the thread count, so the results are the same for
any backend and any number of workers.

On one machine the compiled kernel's threads are the parallelism: shards run
one after another in this process (no worker start-up), and while the kernel
integrates one shard, a writer thread builds and writes the previous one's
file. A process pool remains for the NumPy integrators, whose work is not
threaded.

A shard that raises is computed again cell by cell, so one bad cell fails
alone (failures are data): its outcome carries the error, the other cells go
on.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lin2net.dynamics.cells import shard_tables, simulate_cells
from lin2net.errors import Lin2netError
from lin2net.store.outdir import OutputReplaced, RunEnded, WriteGuard, write_shard
from lin2net.store.shards import Shard
from lin2net.sweep.config import SweepConfig
from lin2net.sweep.grid import Cell

# Test hooks: comma-separated cell ids whose computation raises (FAIL) or
# whose worker process dies at once, as if killed for memory (KILL). Read in
# the worker, so they reach pool and Dask worker processes through their
# environment. Nothing outside the tests sets them.
FAIL_CELLS_ENV = "LIN2NET_TEST_FAIL_CELLS"
KILL_CELLS_ENV = "LIN2NET_TEST_KILL_CELLS"
STOP_POLL_SECONDS = 0.2


class Stopped(Lin2netError):
    """The sweep was stopped (its run file is gone) before this shard was written."""


# Errors after which a shard is not computed again cell by cell: the sweep stops.
FINAL_ERRORS = (Stopped, RunEnded, OutputReplaced)


@dataclass(frozen=True)
class ShardTask:
    """One shard to simulate and write into ``out`` using up to ``threads`` threads.

    ``guard`` is checked before the shard's file is written and just before
    it is renamed into place (OUT still the directory the sweep locked, the
    run still the running one); with a run file (Dask, where the coordinator
    cannot kill the worker) it is also polled while the kernel runs, which
    stops within a fraction of a second once the run file no longer names
    this run, and the task writes nothing."""

    config: SweepConfig
    shard: Shard
    out: Path
    threads: int = 1
    guard: WriteGuard | None = None


@dataclass(frozen=True)
class ShardOutcome:
    """``error`` is ``None`` when the shard's file is in place, else one line
    (the shard's cells all failed)."""

    shard: Shard
    seconds: float
    error: str | None = None

    @property
    def cells(self) -> tuple[Cell, ...]:
        return self.shard.cells



def compute_shard(task: ShardTask) -> list[ShardOutcome]:
    """Simulate ``task.shard`` and write its file; never raises an ``Exception``.

    If it fails, its cells are computed one by one (each a shard of its own),
    so a failing cell does not take the others with it."""
    outcome = _compute(task)
    final = outcome.error is not None and outcome.error.startswith(tuple(e.__name__ for e in FINAL_ERRORS))
    if outcome.error is None or len(task.shard.cells) == 1 or final:
        return [outcome]
    return [_compute(_single(task, cell)) for cell in task.shard.cells]


def _single(task: ShardTask, cell: Cell) -> ShardTask:
    return ShardTask(task.config, Shard((cell,), task.shard.trajectories), task.out, task.threads, task.guard)


def _compute(task: ShardTask) -> ShardOutcome:
    started = time.perf_counter()
    try:
        arrays = _simulate(task)
        _write(task, arrays)
    except Exception as exc:  # noqa: BLE001 - failure isolation: any error of one shard is recorded, not fatal
        return ShardOutcome(task.shard, time.perf_counter() - started, describe_error(exc))
    return ShardOutcome(task.shard, time.perf_counter() - started)


def _simulate(task: ShardTask) -> Any:
    ids = {cell.cell_id for cell in task.shard.cells}
    failing = ids & set(os.environ.get(FAIL_CELLS_ENV, "").split(","))
    if failing:
        raise RuntimeError(f"injected failure for cell {sorted(failing)[0]} ({FAIL_CELLS_ENV})")
    if ids & set(os.environ.get(KILL_CELLS_ENV, "").split(",")):
        os._exit(137)
    guard, part = task.guard, task.shard.part
    if guard is None or guard.run_file is None:
        return simulate_cells(task.config, task.shard.cells, threads=task.threads, part=part)
    if not guard.current():
        raise Stopped("the sweep was stopped")
    with _watch_run(guard) as cancel:
        return simulate_cells(task.config, task.shard.cells, threads=task.threads, cancel=cancel, part=part)


def _write(task: ShardTask, arrays: Any, abandon: threading.Event | None = None) -> None:
    """Build and write the shard's file; with ``abandon``, stop between row
    groups once it is set (the temporary file is removed, nothing counts)."""
    initial, results = arrays
    shard = task.shard
    if task.config.keep != "summary":
        if shard.part is not None:
            tables = shard_tables(shard.cells, shard.rows, initial, results, first=shard.first)
        else:
            tables = shard_tables(shard.cells, shard.trajectories, initial, results)
        if abandon is not None:
            tables = _until(abandon, tables)
        write_shard(task.out, task.config, shard, tables, task.guard)
    if task.config.keep != "rows":  # after the rows: with keep: both, the summary file marks the shard done
        from lin2net.analysis.cell_summary import summary_table
        from lin2net.store.summary_file import write_summary

        summary = summary_table(shard.cells, shard.trajectories, initial, results)  # whole cells: check_keep_fits
        write_summary(task.out, task.config, shard, summary, task.guard)


def _until(abandon: threading.Event, tables: Iterator[Any]) -> Iterator[Any]:
    for table in tables:
        if abandon.is_set():
            raise Stopped("the sweep was stopped while this shard was written")
        yield table


class _watch_run:  # noqa: N801 - used as a context manager, like contextlib's
    """Set a kernel cancel flag once the guard's run file no longer names the
    run (polled by a thread)."""

    def __init__(self, guard: WriteGuard) -> None:
        self.guard = guard
        self.cancel = np.zeros(1, dtype=np.int64)
        self.done = threading.Event()

    def __enter__(self) -> np.ndarray:
        threading.Thread(target=self._poll, daemon=True).start()
        return self.cancel

    def _poll(self) -> None:
        while not self.done.wait(STOP_POLL_SECONDS):
            if not self.guard.current():
                self.cancel[0] = 1
                return

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()


def describe_error(exc: BaseException) -> str:
    """``Type: message`` on one line."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def default_workers() -> int:
    """The cores this process may use."""
    count = getattr(os, "process_cpu_count", None)  # Python >= 3.13
    if count is not None:
        return int(count() or 1)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def run_in_process(tasks: Iterable[ShardTask], writers: int = 1) -> Generator[ShardOutcome, None, None]:
    """Shards one after another in this process; the files are built and
    written by ``writers`` threads while the kernel integrates the next shard
    (at most ``writers`` shards wait to be written, so memory stays bounded).

    On KeyboardInterrupt (or closing the generator) the kernel stops within
    a fraction of a second, and files being written stop at their next row
    group (at most 65536 rows: tens of milliseconds) and are removed: a
    large shard's file takes seconds to write, longer than the one second
    a stop may take. Their cells are computed again by the next run."""
    pool = cf.ThreadPoolExecutor(max_workers=max(1, writers), thread_name_prefix="lin2net-writer")
    pending: deque[tuple[ShardTask, float, cf.Future[None]]] = deque()
    abandon = threading.Event()
    try:
        for task in tasks:
            started = time.perf_counter()
            try:
                arrays = _simulate(task)
            except Exception:  # noqa: BLE001 - recomputed cell by cell below, after the pending writes
                arrays = None
            if arrays is None:
                while pending:
                    yield from _finish(pending.popleft())
                yield from compute_shard(task)  # failed: again, cell by cell, to isolate the bad cell
                continue
            pending.append((task, started, pool.submit(_write, task, arrays, abandon)))
            while len(pending) > max(1, writers) or (pending and pending[0][2].done()):
                yield from _finish(pending.popleft())
        while pending:
            yield from _finish(pending.popleft())
    finally:
        abandon.set()  # pending is empty unless the sweep is being stopped
        for _, _, future in pending:
            future.exception()  # wait: never leave a half-written file behind a running thread
        pool.shutdown(wait=True)


def _finish(pending: tuple[ShardTask, float, cf.Future[None]]) -> Iterator[ShardOutcome]:
    task, started, future = pending
    error = future.exception()
    seconds = time.perf_counter() - started
    if error is None:
        yield ShardOutcome(task.shard, seconds)
    elif len(task.shard.cells) > 1 and not isinstance(error, FINAL_ERRORS):
        yield from compute_shard(task)
    else:
        yield ShardOutcome(task.shard, seconds, describe_error(error))


def run_pool(tasks: Iterable[ShardTask], processes: int) -> Generator[ShardOutcome, None, None]:
    """Tasks on ``processes`` worker processes, outcomes in order of completion.

    At most two tasks per process are in flight, so memory stays bounded for
    any grid. If the consumer stops early (KeyboardInterrupt, an error, or
    closing the generator), the workers are terminated; a worker killed while
    writing leaves at most a temporary file, which the sweep removes. A
    worker that dies (e.g. killed for memory) fails its in-flight shards and
    the pool is replaced, so the other shards still run.
    """
    pending = iter(tasks)
    in_flight: dict[cf.Future[list[ShardOutcome]], ShardTask] = {}
    pool = _new_pool(processes)
    try:
        while True:
            while len(in_flight) < 2 * processes and (task := next(pending, None)) is not None:
                in_flight[pool.submit(compute_shard, task)] = task
            if not in_flight:
                return
            done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            broken = False
            for future in done:
                task = in_flight.pop(future)
                try:
                    outcomes = future.result()
                except Exception as exc:  # noqa: BLE001 - e.g. BrokenProcessPool: a worker died (OOM killer?)
                    broken |= isinstance(exc, BrokenProcessPool)
                    outcomes = [ShardOutcome(task.shard, 0.0, describe_error(exc))]
                yield from outcomes
            if broken:  # every task still in this pool is lost with it
                for task in in_flight.values():
                    yield ShardOutcome(task.shard, 0.0, "BrokenProcessPool: its worker pool broke while it was queued")
                in_flight.clear()
                _stop_pool(pool)
                pool = _new_pool(processes)
    finally:
        _stop_pool(pool)


def _new_pool(processes: int) -> cf.ProcessPoolExecutor:
    # spawn: workers start clean (no copied locks or threads from this process).
    return cf.ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Cancel queued tasks and terminate the workers now, without waiting for
    the running shards; returns once the worker processes are gone."""
    # ProcessPoolExecutor has no public way to stop running tasks; its
    # ``_processes`` (pid -> Process) is read before shutdown() clears it.
    processes = list(dict(getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=10)


def _init_worker(parent_pid: int) -> None:
    # Ctrl-C and a group-wide SIGTERM reach every process; the parent decides
    # what stops (it terminates its workers itself).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A worker orphaned by a killed parent stops within a second instead of
    # finishing its shards into a directory nobody is sweeping.
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    os._exit(1)
