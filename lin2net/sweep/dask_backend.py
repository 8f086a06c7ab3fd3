"""Shards on an existing Dask distributed cluster (``lin2net sweep --scheduler``).

Each shard is one Dask task running :func:`lin2net.sweep.executors.compute_shard`
on a worker, which writes the shard file itself, atomically, into the output
directory: that directory must be the same path on every worker (a shared
file system) and lin2net must be importable there. The coordinating process
keeps a bounded number of tasks in flight (two per worker thread), retries a
failed task once (a lost worker, a transient file-system error) and then
records it as failed. Running tasks cannot be killed from here: every task
carries its run's token, which OUT's run file holds while the run goes on.
When the sweep is interrupted it removes the run file, which running tasks
poll (their kernel stops within a fraction of a second), and it waits a few
seconds for them to return. A task checks the token again just before the
rename that makes its file count, so a task that outlives its sweep (an
interrupted client, one killed with kill -9 and then resumed with a new
token) writes nothing.

A client runs what the cluster returns: connect only to clusters you trust
(docs/cluster.md). What comes back is checked before use: anything but the
outcomes of the shard that was sent stops the sweep with one line.

Dask is optional: ``pip install 'lin2net[dask]'``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from lin2net.errors import Lin2netError
from lin2net.store.shards import Shard
from lin2net.sweep.executors import ShardOutcome, ShardTask, compute_shard, describe_error


class SchedulerError(Lin2netError):
    """Dask is not installed or the scheduler cannot be reached (nothing written).

    A failed connection can leave a half-made client whose finalizer waits 20 s
    and prints a report at exit; ``exit_now`` tells the CLI to end the process
    at once after printing its one line (nothing was written, nothing to flush)."""

    exit_code = 2
    exit_now = False


class DaskCluster(AbstractContextManager["DaskCluster"]):
    """A client connected to the scheduler at ``address`` (``tcp://host:8786``)."""

    def __init__(self, address: str, timeout: float = 5.0) -> None:
        try:
            import distributed
        except ImportError:
            raise SchedulerError("--scheduler needs Dask distributed: pip install 'lin2net[dask]'") from None
        _probe(address)
        self.client: Any = _connect(distributed, address, timeout)
        self.address = address

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()

    def threads(self) -> int:
        """Worker threads in the cluster now (at least 1)."""
        nthreads: dict[str, int] = self.client.nthreads()
        return max(1, sum(nthreads.values()))

    def run(
        self, tasks: Iterable[ShardTask], retries: int = 1, stop: Callable[[], None] | None = None, wait: float = 3.0
    ) -> Generator[ShardOutcome, None, None]:
        """Run ``tasks``; outcomes in order of completion. A task whose shard
        fails (or whose worker dies) is resubmitted up to ``retries`` times.
        Closed early, it calls ``stop()`` (which tells running tasks to stop:
        the run file goes), cancels what is queued and waits up to ``wait``
        seconds for running tasks to end."""
        import distributed

        limit = 2 * self.threads()
        pending = iter(tasks)
        attempts: dict[str, int] = {}
        futures: Any = distributed.as_completed(loop=self.client.loop, with_results=False)  # type: ignore[no-untyped-call]
        in_flight: dict[Any, ShardTask] = {}

        def submit(task: ShardTask) -> None:
            attempts[task.shard.shard_id] = attempts.get(task.shard.shard_id, 0) + 1
            future = self.client.submit(compute_shard, task, pure=False)
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
                    outcomes: list[ShardOutcome] = _checked(future.result(), task)
                elif future.status == "error":  # e.g. KilledWorker, or unpicklable on the scheduler
                    outcomes = [ShardOutcome(task.shard, 0.0, describe_error(future.exception()))]
                else:
                    outcomes = [ShardOutcome(task.shard, 0.0, f"Dask task {future.status}")]
                future.release()
                for outcome in outcomes:
                    if outcome.error is None:
                        yield outcome
                        continue
                    count = attempts.get(outcome.shard.shard_id, attempts[task.shard.shard_id])
                    if count <= retries:
                        attempts[outcome.shard.shard_id] = count
                        submit(replace(task, shard=outcome.shard))  # again, only the cells that failed
                        continue
                    yield replace(outcome, error=f"{outcome.error} (after {count} attempts)")
                if (following := next(pending, None)) is not None:
                    submit(following)
        finally:
            if in_flight:
                if stop is not None:
                    with contextlib.suppress(OSError):
                        stop()
                # Cancelling does not stop a task already running on a worker:
                # wait (bounded) for those to end; told by their stop file, they
                # end within a fraction of a second and write nothing.
                with contextlib.suppress(Exception):  # noqa: BLE001 - best effort: the files are counted after
                    distributed.wait(list(in_flight), timeout=wait)  # type: ignore[no-untyped-call]
                self.client.cancel(list(in_flight))


def _checked(result: Any, task: ShardTask) -> list[ShardOutcome]:
    """``result`` if it is what :func:`compute_shard` returns for ``task`` (a list
    of outcomes of the task's cells), else SchedulerError: a cluster that sends
    back anything else is not running lin2net's task."""
    cells = set(task.shard.cells)
    if isinstance(result, list) and all(
        type(outcome) is ShardOutcome
        and type(outcome.shard) is Shard
        and isinstance(outcome.error, (str, type(None)))
        and isinstance(outcome.seconds, float)
        and set(outcome.shard.cells) <= cells
        for outcome in result
    ):
        return result
    raise SchedulerError(
        f"the Dask cluster returned {type(result).__name__!s:.40} for shard {task.shard.shard_id}, not its outcomes; "
        "the sweep stopped (connect only to clusters you trust)"
    )


def _probe(address: str, timeout: float = 1.0) -> None:
    """Fail within ``timeout`` when nothing listens at a tcp:// address (the
    Dask client would retry for its whole timeout before saying so)."""
    import socket
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(address if "://" in address else f"tcp://{address}")
        hostname = parts.hostname
    except ValueError as exc:  # 'tcp://[::1': an unclosed IPv6 bracket
        raise SchedulerError(f"--scheduler: not an address: {address!r} ({describe_error(exc)})") from None
    if parts.scheme not in ("tcp", "tls") or hostname is None:
        return  # other transports: leave it to the client
    try:
        port = parts.port or 8786
        with socket.create_connection((hostname, port), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise SchedulerError(f"cannot connect to the Dask scheduler at {address}: {describe_error(exc)}") from None


def _clip(exc: BaseException) -> str:
    text = describe_error(exc)
    return text if len(text) <= 200 else text[:197] + "..."


def _connect(distributed: Any, address: str, timeout: float) -> Any:
    """A client of the scheduler at ``address``, or SchedulerError within about
    ``timeout`` seconds: the connection is made in a helper thread, because a
    server that is not Dask's can stall the client's handshake past its own
    timeout."""
    import threading

    outcome: dict[str, Any] = {}

    def connect() -> None:
        try:
            outcome["client"] = distributed.Client(address, timeout=timeout, set_as_default=False)
        except BaseException as exc:  # noqa: BLE001 - reported below, whatever the handshake raised
            outcome["error"] = exc

    thread = threading.Thread(target=connect, name="lin2net-dask-connect", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if "client" in outcome:
        return outcome["client"]
    reason = _clip(outcome["error"]) if "error" in outcome else f"no answer within {timeout:g} s"
    failure = SchedulerError(f"cannot connect to the Dask scheduler at {address}: {reason}")
    failure.exit_now = True  # a half-made client would wait 20 s at exit and print a report
    raise failure
