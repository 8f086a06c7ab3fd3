"""Cells on an existing Dask distributed cluster (``lin2net sweep --scheduler``).

Each cell is one Dask task running :func:`lin2net.executors.compute_cell` on
a worker, which writes the cell file itself, atomically, into the output
directory: that directory must be the same path on every worker (a shared
file system) and lin2net must be importable there. The coordinating process
keeps a bounded number of tasks in flight (two per worker thread), retries a
failed task once (a lost worker, a transient file-system error) and then
records it as failed.

Dask is optional: ``pip install 'lin2net[dask]'``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from lin2net.errors import Lin2netError
from lin2net.executors import CellOutcome, CellTask, compute_cell, describe_error


class SchedulerError(Lin2netError):
    """Dask is not installed or the scheduler cannot be reached (nothing written)."""

    exit_code = 2


class DaskCluster(AbstractContextManager["DaskCluster"]):
    """A client connected to the scheduler at ``address`` (``tcp://host:8786``)."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        try:
            import distributed
        except ImportError:
            raise SchedulerError("--scheduler needs Dask distributed: pip install 'lin2net[dask]'") from None
        try:
            self.client: Any = distributed.Client(address, timeout=timeout, set_as_default=False)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            raise SchedulerError(f"cannot connect to the Dask scheduler at {address}: {describe_error(exc)}") from None
        self.address = address

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()

    def threads(self) -> int:
        """Worker threads in the cluster now (at least 1)."""
        nthreads: dict[str, int] = self.client.nthreads()
        return max(1, sum(nthreads.values()))

    def run(self, tasks: Iterable[CellTask], retries: int = 1) -> Generator[CellOutcome, None, None]:
        """Run ``tasks``; outcomes in order of completion. A task whose cell
        fails (or whose worker dies) is resubmitted up to ``retries`` times."""
        import distributed

        limit = 2 * self.threads()
        pending = iter(tasks)
        attempts: dict[str, int] = {}
        futures: Any = distributed.as_completed(loop=self.client.loop, with_results=False)  # type: ignore[no-untyped-call]
        in_flight: dict[Any, CellTask] = {}

        def submit(task: CellTask) -> None:
            attempts[task.cell.cell_id] = attempts.get(task.cell.cell_id, 0) + 1
            future = self.client.submit(compute_cell, task, pure=False)
            in_flight[future] = task
            futures.add(future)

        try:
            for task in pending:
                submit(task)
                if len(in_flight) >= limit:
                    break
            for future in futures:
                task = in_flight.pop(future)
                if future.status == "finished":
                    outcome: CellOutcome = future.result()
                elif future.status == "error":  # e.g. KilledWorker, or unpicklable on the scheduler
                    outcome = CellOutcome(task.cell, 0.0, describe_error(future.exception()))
                else:
                    outcome = CellOutcome(task.cell, 0.0, f"Dask task {future.status}")
                future.release()
                if outcome.error is not None:
                    if attempts[task.cell.cell_id] <= retries:
                        submit(task)
                        continue
                    outcome = replace(outcome, error=f"{outcome.error} (after {attempts[task.cell.cell_id]} attempts)")
                yield outcome
                if (following := next(pending, None)) is not None:
                    submit(following)
        finally:
            if in_flight:
                self.client.cancel(list(in_flight))
