"""Where cells run: in this process, in a pool of local worker processes, or
(see :mod:`lin2net.dask_backend`) on a Dask cluster.

Every backend runs the same task, :func:`compute_cell`: simulate one cell and
write its file atomically, from the worker itself. A cell's numbers depend
only on the config and the cell, never on which worker ran it or how many
there were, so the files are byte for byte the same for any backend and any
number of workers. A cell that raises is reported as an outcome with an error
(failures are data): the other cells go on.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Generator, Iterable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from lin2net.cell import cell_tables, simulate_cell
from lin2net.config import SweepConfig
from lin2net.grid import Cell
from lin2net.store import write_cell

# Test hooks: comma-separated cell ids whose computation raises (FAIL) or
# whose worker process dies at once, as if killed for memory (KILL). Read in
# the worker, so they reach pool and Dask worker processes through their
# environment. Nothing outside the tests sets them.
FAIL_CELLS_ENV = "LIN2NET_TEST_FAIL_CELLS"
KILL_CELLS_ENV = "LIN2NET_TEST_KILL_CELLS"


@dataclass(frozen=True)
class CellTask:
    """One cell to simulate and write into ``out`` using up to ``threads`` threads."""

    config: SweepConfig
    cell: Cell
    out: Path
    threads: int = 1


@dataclass(frozen=True)
class CellOutcome:
    """``error`` is ``None`` when the cell's file is in place, else one line."""

    cell: Cell
    seconds: float
    error: str | None = None


def compute_cell(task: CellTask) -> CellOutcome:
    """Simulate ``task.cell`` and write its file; never raises an ``Exception``."""
    started = time.perf_counter()
    try:
        if task.cell.cell_id in os.environ.get(FAIL_CELLS_ENV, "").split(","):
            raise RuntimeError(f"injected failure for cell {task.cell.cell_id} ({FAIL_CELLS_ENV})")
        if task.cell.cell_id in os.environ.get(KILL_CELLS_ENV, "").split(","):
            os._exit(137)
        initial, results = simulate_cell(task.config, task.cell, threads=task.threads)
        write_cell(task.out, task.config, task.cell, cell_tables(task.cell, initial, results))
    except Exception as exc:  # noqa: BLE001 - failure isolation: any error of one cell is recorded, not fatal
        return CellOutcome(task.cell, time.perf_counter() - started, describe_error(exc))
    return CellOutcome(task.cell, time.perf_counter() - started)


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


def split_workers(workers: int, cells: int) -> tuple[int, int]:
    """``(processes, threads per process)`` for ``workers`` cores and ``cells`` cells."""
    processes = max(1, min(workers, cells))
    return processes, max(1, workers // processes)


def run_serial(tasks: Iterable[CellTask]) -> Generator[CellOutcome, None, None]:
    """Each task in turn, in this process."""
    for task in tasks:
        yield compute_cell(task)


def run_pool(tasks: Iterable[CellTask], processes: int) -> Generator[CellOutcome, None, None]:
    """Tasks on ``processes`` worker processes, outcomes in order of completion.

    At most two tasks per process are in flight, so memory stays bounded for
    any grid. If the consumer stops early (KeyboardInterrupt, an error, or
    closing the generator), the workers are terminated; a worker killed while
    writing leaves at most a hidden temporary file, which the sweep removes.
    A worker that dies (e.g. killed for memory) fails its in-flight cells and
    the pool is replaced, so the other cells still run.
    """
    pending = iter(tasks)
    in_flight: dict[cf.Future[CellOutcome], CellTask] = {}
    pool = _new_pool(processes)
    try:
        while True:
            while len(in_flight) < 2 * processes and (task := next(pending, None)) is not None:
                in_flight[pool.submit(compute_cell, task)] = task
            if not in_flight:
                return
            done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            broken = False
            for future in done:
                task = in_flight.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - e.g. BrokenProcessPool: a worker died (OOM killer?)
                    broken |= isinstance(exc, BrokenProcessPool)
                    outcome = CellOutcome(task.cell, 0.0, describe_error(exc))
                yield outcome
            if broken:  # every task still in this pool is lost with it
                for task in in_flight.values():
                    yield CellOutcome(task.cell, 0.0, "BrokenProcessPool: its worker pool broke while it was queued")
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
    the running cells; returns once the worker processes are gone."""
    # ProcessPoolExecutor has no public way to stop running tasks; its
    # ``_processes`` (pid -> Process) is read before shutdown() clears it.
    processes = list(dict(getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=10)


def _init_worker(parent_pid: int) -> None:
    # Ctrl-C reaches the whole process group; the parent decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker orphaned by a killed parent stops within a second instead of
    # finishing its cells into a directory nobody is sweeping.
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)
