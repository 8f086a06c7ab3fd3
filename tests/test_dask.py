"""``--scheduler``: shards on a real Dask cluster (LocalCluster on loopback)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lin2net.store.outdir import finished_cell_ids, shard_files
from lin2net.sweep.config import parse_config
from lin2net.sweep.dask_backend import DaskCluster, SchedulerError
from lin2net.sweep.executors import FAIL_CELLS_ENV
from lin2net.sweep.grid import expand_grid
from tests.conftest import write_yaml
from tests.test_resume_parallel import leftovers, shard_bytes
from tests.test_sweep_cli import SMALL

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


def local_cluster(workers: int, threads: int) -> Any:
    """Worker processes (with nannies) on 127.0.0.1, dashboards on free ports."""
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        worker_dashboard_address=":0",
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """Two worker processes, one thread each."""
    with local_cluster(2, 1) as local:
        yield local


@pytest.fixture
def failing_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Worker processes that raise in one chosen cell (set in their environment)."""
    bad = expand_grid(parse_config(SMALL))[2]
    monkeypatch.setenv(FAIL_CELLS_ENV, bad.cell_id)
    with local_cluster(1, 2) as local:
        local.bad_cell = bad  # type: ignore[attr-defined]
        yield local


def test_dask_run_equals_local_run(tmp_path: Path, cli, cluster) -> None:  # type: ignore[no-untyped-def]
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    local, remote = tmp_path / "local", tmp_path / "dask"
    one_cell = ("--shard-size", "40")  # one task per cell
    assert cli("sweep", config, "-o", local, "-q", "--workers", "1", *one_cell).exit_code == 0
    result = cli("sweep", config, "-o", remote, "-q", "--scheduler", cluster.scheduler_address, *one_cell)
    assert result.exit_code == 0, result.output
    assert "ran 8, skipped 0 already done, failed 0" in result.stderr
    assert len(shard_bytes(remote)) == 8 and shard_bytes(remote) == shard_bytes(local)
    assert leftovers(remote) == []
    run = json.loads((remote / "manifest.json").read_text())["runs"][-1]
    assert run["scheduler"] == cluster.scheduler_address and run["processes"] == 2

    # resuming on the cluster runs only the missing cells
    for path in shard_files(remote)[:3]:
        path.unlink()
    again = cli("sweep", config, "-o", remote, "-q", "--scheduler", cluster.scheduler_address, *one_cell)
    assert again.exit_code == 0 and "ran 3, skipped 5 already done" in again.stderr
    assert shard_bytes(remote) == shard_bytes(local)


def test_dask_summary_mode_equals_local_and_resumes(tmp_path: Path, cli, cluster) -> None:  # type: ignore[no-untyped-def]
    from lin2net.store.summary_file import summary_files

    config = write_yaml(tmp_path / "c.yaml", {**SMALL, "keep": "summary"})
    local, remote = tmp_path / "local", tmp_path / "dask"
    one_cell = ("--shard-size", "40")
    assert cli("sweep", config, "-o", local, "-q", "--workers", "1", *one_cell).exit_code == 0
    result = cli("sweep", config, "-o", remote, "-q", "--scheduler", cluster.scheduler_address, *one_cell)
    assert result.exit_code == 0, result.output
    assert len(summary_files(remote)) == 8 and not shard_files(remote)
    for path in summary_files(remote)[:2]:
        path.unlink()
    again = cli("sweep", config, "-o", remote, "-q", "--scheduler", cluster.scheduler_address, *one_cell)
    assert again.exit_code == 0 and "ran 2, skipped 6 already done" in again.stderr
    table = [cli("summarize", out, "--format", "csv").stdout for out in (local, remote)]
    assert table[0] == table[1] and len(table[0].splitlines()) == 9


def test_failed_task_is_retried_once_then_recorded(tmp_path: Path, cli, failing_cluster) -> None:  # type: ignore[no-untyped-def]
    bad = failing_cluster.bad_cell
    out = tmp_path / "out"
    result = cli("sweep", write_yaml(tmp_path / "c.yaml", SMALL), "-o", out, "-q", "--scheduler",
                 failing_cluster.scheduler_address)  # fmt: skip
    assert result.exit_code == 1
    assert "ran 8, skipped 0 already done, failed 1" in result.stderr
    assert f"1 of 8 cells failed: {bad.cell_id}" in result.stderr and "(after 2 attempts)" in result.stderr
    failed = json.loads((out / "manifest.json").read_text())["failed"]
    assert [f["cell_id"] for f in failed] == [bad.cell_id]
    # the shard failed, was computed cell by cell: the 7 good cells are kept, the bad one retried alone
    assert len(finished_cell_ids(out)) == 7 and leftovers(out) == []


def test_unreachable_scheduler_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(SchedulerError, match="cannot connect to the Dask scheduler at tcp://127.0.0.1:9"):
        DaskCluster("tcp://127.0.0.1:9", timeout=0.5)


def test_missing_dask_is_one_line_exit_2(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    out = tmp_path / "out"
    result = cli("sweep", write_yaml(tmp_path / "c.yaml", SMALL), "-o", out, "--scheduler", "tcp://127.0.0.1:9")
    assert result.exit_code == 2 and not out.exists()
    assert result.stderr == "error: --scheduler needs Dask distributed: pip install 'lin2net[dask]'\n"


def test_interrupting_a_dask_sweep_leaves_no_file_behind_the_manifest(tmp_path: Path, cluster) -> None:  # type: ignore[no-untyped-def]
    """Running Dask tasks cannot be killed: the stop file makes them write nothing,
    so the manifest written at the interrupt stays true afterwards."""
    import os
    import signal
    import time

    from tests.test_resume_parallel import SLOW, lin2net_process, manifest, wait_for_cells

    config = write_yaml(tmp_path / "slow.yaml", SLOW)
    out = tmp_path / "out"
    process = lin2net_process(
        "sweep", config, "-o", out, "-q", "--scheduler", cluster.scheduler_address, "--shard-size", "1"
    )
    wait_for_cells(out, 1, process)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130 and "interrupted" in stderr
    done = manifest(out)["cells"]["done"]
    assert done == len(finished_cell_ids(out)) >= 1
    time.sleep(2.0)  # tasks that were running when the sweep stopped have ended by now
    assert len(finished_cell_ids(out)) == done and leftovers(out) == []


@pytest.mark.parametrize("server", ["refused", "not dask"])
def test_a_bad_scheduler_address_is_one_line_at_once(tmp_path: Path, server: str) -> None:
    """Nothing listening, or a server that is not Dask's (it answers garbage):
    one line, exit 2, nothing written, no report at exit, and no 20 s wait."""
    import contextlib
    import socket
    import subprocess
    import threading
    import time

    stop = threading.Event()
    with socket.socket() as listener:  # closed whatever the outcome: no unraisable ResourceWarning
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        thread = None
        if server == "not dask":
            listener.listen()
            listener.settimeout(0.2)

            def answer_garbage() -> None:
                while not stop.is_set():
                    try:
                        connection, _ = listener.accept()
                    except OSError:  # timeout: look at the stop flag again
                        continue
                    with connection:
                        with contextlib.suppress(OSError):
                            connection.sendall(b"\xff" * 64)
                        stop.wait(5)

            thread = threading.Thread(target=answer_garbage, daemon=True)
            thread.start()
        else:
            listener.close()
        config = write_yaml(tmp_path / "c.yaml", SMALL)
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "lin2net", "sweep", str(config), "-o", str(tmp_path / "o"),
                 "--scheduler", f"tcp://127.0.0.1:{port}"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
        finally:
            stop.set()
            if thread is not None:
                thread.join(10)
    # The failure this guards against is a half-made client that waits 20 s at
    # exit: the bound is that, less a margin; starting Python and Dask on a
    # loaded CI machine takes several seconds of it.
    assert done.returncode == 2 and time.monotonic() - started < 19
    assert done.stderr.startswith("error: cannot connect to the Dask scheduler") and done.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_what_the_cluster_returns_is_checked_before_use() -> None:
    """A cluster that sends back anything but the shard's outcomes (a hostile or
    broken worker) stops the sweep with one line, not an AttributeError."""
    from lin2net.store.shards import form_shards
    from lin2net.sweep.dask_backend import _checked
    from lin2net.sweep.executors import ShardOutcome, ShardTask

    config = parse_config(SMALL)
    cells = expand_grid(config)
    shard, other = form_shards(cells, config.trajectories, 4 * config.trajectories)
    task = ShardTask(config, shard, Path("out"))
    good = [ShardOutcome(shard, 0.5)]
    assert _checked(good, task) is good
    for returned in (None, "rm -rf ~", [object()], [ShardOutcome(other, 0.5)], {"shard": shard}):
        with pytest.raises(SchedulerError, match="returned .* not its outcomes") as info:
            _checked(returned, task)
        assert "\n" not in str(info.value) and "trust" in str(info.value)
