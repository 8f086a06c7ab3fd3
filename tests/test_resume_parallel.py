"""Scale and reliability: resume, worker pools, failures, interrupts, dry run,
overrides and summaries of incomplete sweeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from lin2net.errors import ConfigError
from lin2net.store.outdir import MANIFEST_FILE, exclusive_use, finished_cell_ids, shard_files, temporary_files
from lin2net.sweep.config import apply_overrides, load_config, parse_config
from lin2net.sweep.executors import FAIL_CELLS_ENV, KILL_CELLS_ENV
from lin2net.sweep.grid import expand_grid
from lin2net.sweep.runner import FILE_OVERHEAD, ROW_BYTES, run_sweep
from tests.conftest import trajectories_frame, write_yaml
from tests.test_sweep_cli import SMALL

ROOT = Path(__file__).resolve().parents[1]
# Every trajectory runs to max_steps: about 0.4 s per cell, slow enough to stop midway.
SLOW = {
    "name": "slow",
    "seed": 1,
    "trajectories": 50,
    "grid": {"eta": [0.001, 0.0011, 0.0012, 0.0013], "lambda0": [0.5, 0.6], "d": 3},
    "loss_tol": 1e-30,
    "max_steps": 20000,
    "integrator": "reduced",  # the NumPy path: ~0.3 s a cell, slow enough to interrupt midway
}


ONE_CELL_SHARDS = ("--shard-size", "1")  # every shard holds one cell: many files, fine-grained progress


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in shard_files(out)}


def leftovers(out: Path) -> list[str]:
    """Anything in OUT that is not a finished file lin2net writes."""
    names = {".lin2net", "config.yaml", "provenance.json", MANIFEST_FILE, "shards"}
    odd = [p.name for p in out.iterdir() if p.name not in names]
    shards = out / "shards"
    return odd + [p.name for p in shards.iterdir() if p.suffix != ".parquet" or not p.name.startswith("part-")]


def manifest(out: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((out / MANIFEST_FILE).read_text())  # type: ignore[no-any-return]


def lin2net_process(*args: str | Path) -> subprocess.Popen[str]:
    """``python -m lin2net ARGS`` as the leader of its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "lin2net", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_cells(out: Path, count: int, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(finished_cell_ids(out)) < count:  # hidden temporary files do not count
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "sweep made no progress"
        time.sleep(0.05)


def slow_sweep_midway(tmp_path: Path, out: Path, workers: int, cells: int) -> tuple[Path, subprocess.Popen[str]]:
    """The SLOW config, and a ``sweep`` of it into ``out`` by a subprocess that
    has finished ``cells`` cells (and is still running)."""
    config = write_yaml(tmp_path / "slow.yaml", SLOW)
    process = lin2net_process("sweep", config, "-o", out, "--quiet", "--workers", str(workers), *ONE_CELL_SHARDS)
    wait_for_cells(out, cells, process)
    return config, process


def wait_until_group_gone(pgid: int, timeout: float = 20) -> None:
    """Every process of the group (the sweep and its workers) has exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, "worker processes outlived the sweep"
        time.sleep(0.1)


@pytest.mark.slow  # many trajectories or subprocesses: CI's slow pass (issue 19 §5, fast suite within 90 s)
def test_rows_are_identical_for_any_workers_and_shard_size(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """The NumPy path runs on a pool of processes, the compiled kernel on
    threads: files are byte for byte the same for any worker count, and the
    rows the same for any shard size."""
    reference = None
    for integrator in ("reduced", "compiled"):
        config = write_yaml(tmp_path / f"{integrator}.yaml", {**SMALL, "integrator": integrator})
        runs = {}
        for workers in (1, 2, 3):
            out = tmp_path / f"{integrator}{workers}"
            result = cli("sweep", config, "-o", out, "--quiet", "--workers", workers, "--shard-size", "80")
            assert result.exit_code == 0, result.output
            runs[workers] = shard_bytes(out)
            run = manifest(out)["runs"][-1]
            processes = min(workers, 4) if integrator == "reduced" else 1
            assert (run["processes"], run["shards_to_run"]) == (processes, 4)
        assert len(runs[1]) == 4 and runs[1] == runs[2] == runs[3]  # byte for byte, metadata included
        whole = tmp_path / f"{integrator}-whole"
        assert cli("sweep", config, "-o", whole, "--quiet").exit_code == 0 and len(shard_files(whole)) == 1
        key = ["cell_id", "trajectory"]
        a = trajectories_frame(tmp_path / f"{integrator}1").sort_values(key).reset_index(drop=True)
        b = trajectories_frame(whole).sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
        if reference is not None:  # the kernel equals the NumPy reference on status and steps
            assert (a.status == reference.status).all() and (a.steps == reference.steps).all()
        reference = a


def test_threads_reach_the_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled kernel runs in this process with every worker as a thread."""
    seen: list[int | None] = []
    import lin2net.sweep.executors as executors

    real = executors.simulate_cells

    def spy(config, cells, threads=None, cancel=None, part=None):  # type: ignore[no-untyped-def]
        seen.append(threads)
        return real(config, cells, threads=threads, cancel=cancel, part=part)

    monkeypatch.setattr(executors, "simulate_cells", spy)
    config = parse_config(SMALL)
    report = run_sweep(config, tmp_path / "o", workers=2)
    assert seen == [2] and (report.processes, report.threads, report.shards) == (1, 2, 1)


@pytest.mark.slow
def test_sigkill_midway_then_rerun_equals_uninterrupted_run(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "killed"
    config, process = slow_sweep_midway(tmp_path, out, workers=2, cells=2)
    process.kill()  # SIGKILL to the sweep only: its orphaned workers must stop by themselves
    process.communicate()
    wait_until_group_gone(process.pid)
    finished = set(shard_bytes(out))
    assert 2 <= len(finished) < 8
    assert manifest(out)["status"] == "running"  # the killed run could not record its end

    rerun = cli("sweep", config, "-o", out, "--quiet", "--workers", "2", *ONE_CELL_SHARDS)
    assert rerun.exit_code == 0, rerun.output
    ran, skipped = 8 - len(finished), len(finished)
    assert f"ran {ran}, skipped {skipped} already done, failed 0" in rerun.stderr
    last = manifest(out)
    assert last["status"] == "complete" and last["cells"] == {"total": 8, "done": 8, "failed": 0, "missing": 0}
    assert (last["runs"][-1]["ran"], last["runs"][-1]["skipped"]) == (ran, skipped)
    assert len(last["runs"]) == 2

    reference = tmp_path / "reference"
    assert cli("sweep", config, "-o", reference, "--quiet", "--workers", "1", *ONE_CELL_SHARDS).exit_code == 0
    assert shard_bytes(out) == shard_bytes(reference)
    assert leftovers(out) == []


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_workers_within_a_second_and_keeps_finished_cells(
    tmp_path: Path, signum: int, code: int
) -> None:
    out = tmp_path / "out"
    _, process = slow_sweep_midway(tmp_path, out, workers=2, cells=1)
    started = time.monotonic()
    os.killpg(process.pid, signum)  # Ctrl-C in a terminal, or a job scheduler's SIGTERM, to the whole group
    _, stderr = process.communicate(timeout=30)
    stopped = time.monotonic() - started
    assert process.returncode == code
    assert stderr.strip().splitlines() == [stderr.strip()] and "interrupted" in stderr and "Traceback" not in stderr
    assert "rerun the same command to resume" in stderr
    wait_until_group_gone(process.pid)
    assert stopped < 1.5, f"took {stopped:.2f} s to stop"
    assert leftovers(out) == [] and temporary_files(out) == []
    files = shard_files(out)
    assert 1 <= len(files) < 8
    for path in files:
        assert pq.read_table(path).num_rows == 50
    record = manifest(out)
    assert record["status"] == "interrupted" and record["cells"]["done"] == len(files)
    time.sleep(1.0)  # no orphaned worker finishes a shard later
    assert len(shard_files(out)) == len(files)


def test_a_locked_output_directory_is_refused_in_one_line(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    out = tmp_path / "out"
    with exclusive_use(out):
        refused = cli("sweep", config, "-o", out, "-q", "-j", "1")
        assert refused.exit_code == 2
        assert refused.stderr == f"error: output directory {out} is in use by another lin2net sweep; " + (
            "wait for it to finish (then rerun to resume), or choose another -o\n"
        )
        assert list(out.iterdir()) == []  # nothing written
    released = cli("sweep", config, "-o", out, "-q", "-j", "1")
    assert released.exit_code == 0 and len(finished_cell_ids(out)) == 8


@pytest.mark.slow
def test_a_second_sweep_into_a_running_output_stops_and_the_first_finishes(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    config, first = slow_sweep_midway(tmp_path, out, workers=1, cells=1)
    second = cli("sweep", config, "-o", out, "-q", "-j", "1")
    assert second.exit_code == 2 and "is in use by another lin2net sweep" in second.stderr
    assert first.poll() is None  # the refusal left the running sweep alone
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0 and "ran 8, skipped 0 already done, failed 0" in stderr
    record = manifest(out)
    assert record["status"] == "complete" and len(record["runs"]) == 1 and len(finished_cell_ids(out)) == 8
    again = cli("sweep", config, "-o", out, "-q", "-j", "1")  # the lock went with the first process
    assert again.exit_code == 0 and "ran 0, skipped 8 already done" in again.stderr


BIGGER = {**SMALL, "name": "bigger", "grid": {**SMALL["grid"], "eta": [0.1, 0.5, 0.9], "d": [1, 5, 2]}}


def test_extend_runs_only_the_new_cells_and_matches_a_fresh_sweep(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    assert cli("sweep", write_yaml(tmp_path / "small.yaml", SMALL), "-o", out, "-q", "-j", "1").exit_code == 0
    before, config_before = shard_bytes(out), (out / "config.yaml").read_bytes()
    bigger = write_yaml(tmp_path / "bigger.yaml", BIGGER)

    refused = cli("sweep", bigger, "-o", out, "-q", "-j", "1")
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "holds a smaller grid of this config (grid.eta: 1 more value, grid.d: 1 more value here)" in refused.stderr
    assert "pass --extend" in refused.stderr
    assert shard_bytes(out) == before and (out / "config.yaml").read_bytes() == config_before

    plan = cli("sweep", bigger, "-o", out, "--extend", "--dry-run")
    assert plan.exit_code == 0 and "extending: 8 of 18 cells already done" in plan.stdout
    assert "to run: 10 cells in 1 shard file" in plan.stdout and shard_bytes(out) == before

    extended = cli("sweep", bigger, "-o", out, "-q", "-j", "2", "--extend")
    assert extended.exit_code == 0, extended.output
    assert "18 cells, 720 trajectories" in extended.stderr and "ran 10, skipped 8 already done" in extended.stderr
    assert {name: data for name, data in shard_bytes(out).items() if name in before} == before  # old cells untouched
    assert yaml.safe_load((out / "config.yaml").read_text()) == parse_config(BIGGER).resolved()
    record = manifest(out)
    assert record["status"] == "complete" and record["cells"]["total"] == 18 and record["runs"][-1]["extend"] is True

    fresh = tmp_path / "fresh"
    assert cli("sweep", bigger, "-o", fresh, "-q", "-j", "1").exit_code == 0
    key = ["cell_id", "trajectory"]
    extended_data = trajectories_frame(out).sort_values(key).reset_index(drop=True)
    fresh_data = trajectories_frame(fresh).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(extended_data, fresh_data)
    summary = cli("summarize", out, "--format", "csv")
    assert summary.exit_code == 0 and summary.stderr == "" and len(summary.stdout.strip().splitlines()) == 1 + 18

    again = cli("sweep", bigger, "-o", out, "-q", "-j", "1")  # now simply the same config: resumes
    assert again.exit_code == 0 and "ran 0, skipped 18 already done" in again.stderr


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"grid": {**SMALL["grid"], "eta": [0.1, 0.5]}}, "grid.eta is [0.1, 0.9] in OUT, [0.1, 0.5] here"),
        ({"grid": {**BIGGER["grid"]}, "seed": 4}, "seed is 3 in OUT, 4 here"),
        ({"grid": {**BIGGER["grid"]}, "max_steps": 100}, "max_steps is 4000 in OUT, 100 here"),
    ],
)
def test_extend_refuses_anything_but_added_axis_values(tmp_path: Path, cli, change: dict, named: str) -> None:  # type: ignore[no-untyped-def,type-arg]
    out = tmp_path / "out"
    assert cli("sweep", write_yaml(tmp_path / "small.yaml", SMALL), "-o", out, "-q", "-j", "1").exit_code == 0
    before = shard_bytes(out)
    result = cli("sweep", write_yaml(tmp_path / "other.yaml", {**SMALL, **change}), "-o", out, "-q", "--extend")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert f"({named}); --extend only adds axis values; pass --overwrite" in result.stderr
    assert shard_bytes(out) == before
    both = cli("sweep", write_yaml(tmp_path / "b.yaml", BIGGER), "-o", out, "--extend", "--overwrite")
    assert both.exit_code == 2 and "not both" in both.stderr and shard_bytes(out) == before


@pytest.mark.slow
def test_interrupt_inside_run_sweep_terminates_the_pool(tmp_path: Path) -> None:
    """KeyboardInterrupt while cells are in flight: workers gone, no partial files."""
    import multiprocessing

    reported: list[object] = []

    def interrupt_after_two(cell: object, seconds: float) -> None:
        reported.append(cell)
        if len(reported) == 2:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(parse_config(SLOW), out, workers=2, on_cell_done=interrupt_after_two, shard_rows=1)
    assert multiprocessing.active_children() == []
    assert leftovers(out) == []
    files = len(shard_bytes(out))
    assert 2 <= files < 8 and manifest(out)["status"] == "interrupted" and manifest(out)["cells"]["done"] == files
    assert temporary_files(out) == []


def test_a_failing_cell_is_recorded_and_retried_by_a_rerun(
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    out = tmp_path / "out"
    cells = expand_grid(parse_config(SMALL))
    bad = cells[5]
    monkeypatch.setenv(FAIL_CELLS_ENV, bad.cell_id)  # reaches the spawned workers
    failed = cli("sweep", config, "-o", out, "--quiet", "--workers", "2", "--set", "integrator=reduced")
    assert failed.exit_code == 1
    assert "ran 8, skipped 0 already done, failed 1" in failed.stderr
    error_line = failed.stderr.strip().splitlines()[-1]
    assert error_line.startswith("error: 1 of 8 cells failed: " + bad.cell_id) and "injected failure" in error_line
    assert finished_cell_ids(out) == {c.cell_id for c in cells if c is not bad}  # the shard's other cells are kept
    record = manifest(out)
    assert record["status"] == "incomplete" and record["cells"]["missing"] == 1
    assert [f["cell_id"] for f in record["failed"]] == [bad.cell_id]
    assert record["failed"][0]["error"].startswith("RuntimeError: injected failure")
    assert record["failed"][0]["parameters"]["eta"] == bad.eta

    summary = cli("summarize", out, "--format", "csv")
    assert summary.exit_code == 0 and len(summary.stdout.strip().splitlines()) == 1 + 7
    assert "1 of 8 cells are missing" in summary.stderr and "1 of them failed" in summary.stderr

    monkeypatch.delenv(FAIL_CELLS_ENV)
    retried = cli("sweep", config, "-o", out, "--quiet", "--workers", "2", "--set", "integrator=reduced")
    assert retried.exit_code == 0 and "ran 1, skipped 7 already done, failed 0" in retried.stderr
    assert manifest(out)["failed"] == [] and manifest(out)["status"] == "complete"
    assert cli("summarize", out, "--format", "csv").stderr == ""


@pytest.mark.slow
def test_a_dying_worker_fails_its_cells_and_the_others_finish(
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    out = tmp_path / "out"
    cells = expand_grid(parse_config(SMALL))
    monkeypatch.setenv(KILL_CELLS_ENV, cells[1].cell_id)  # its worker exits like an OOM kill
    reduced = ("--set", "integrator=reduced", "--shard-size", "40")
    result = cli("sweep", config, "-o", out, "--quiet", "--workers", "2", *reduced)
    assert result.exit_code == 1 and "BrokenProcessPool" in result.stderr
    failed = {f["cell_id"] for f in manifest(out)["failed"]}
    # the killed cell and those queued in the same pool fail; a fresh pool runs the rest
    assert cells[1].cell_id in failed and len(failed) <= 4
    assert finished_cell_ids(out) == {c.cell_id for c in cells if c.cell_id not in failed}
    assert leftovers(out) == []
    monkeypatch.delenv(KILL_CELLS_ENV)
    retried = cli("sweep", config, "-o", out, "--quiet", "--workers", "2", *reduced)
    assert retried.exit_code == 0 and f"ran {len(failed)}, skipped {8 - len(failed)}" in retried.stderr


def test_summarize_names_missing_cells_of_an_incomplete_sweep(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    assert cli("sweep", config, "-o", out, "-q", "-j", "1", "--shard-size", "40").exit_code == 0
    for path in shard_files(out)[:3]:
        path.unlink()
    result = cli("summarize", out, "--format", "csv")
    assert result.exit_code == 0 and len(result.stdout.strip().splitlines()) == 1 + 5
    assert result.stderr.strip() == f"note: 3 of 8 cells are missing from {out}; the summary covers the 5 finished"


def test_dry_run_reports_and_writes_nothing(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    out = tmp_path / "out"
    fresh = cli("sweep", config, "-o", out, "--dry-run", "--set", "grid.phi=[1, 2]")
    assert fresh.exit_code == 0 and not out.exists()
    assert "new output directory" in fresh.stdout and "nothing written" in fresh.stdout
    assert "eta          0.1, 0.9" in fresh.stdout and "phi          1, 2" in fresh.stdout
    assert "16 x 40 trajectories = 640 trajectories" in fresh.stdout
    assert "to run: 16 cells in 1 shard file" in fresh.stdout
    assert (
        "estimated run time: " in fresh.stdout and "from a pilot of 128 of its trajectories of 16 cells" in fresh.stdout
    )
    estimate = FILE_OVERHEAD + ROW_BYTES * 16 * 40
    assert f"estimated output size: {estimate / 1000:.1f} kB" in fresh.stdout

    assert cli("sweep", config, "-o", out, "-q", "-j", "1", "--shard-size", "40").exit_code == 0
    for path in shard_files(out)[:3]:
        path.unlink()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    partial = cli("sweep", config, "-o", out, "--dry-run", "--shard-size", "40")
    assert partial.exit_code == 0 and "resuming: 5 of 8 cells already done" in partial.stdout
    assert "to run: 3 cells in 3 shard files" in partial.stdout
    size = sum(p.stat().st_size for p in shard_files(out)) / (5 * 40) * 3 * 40 + FILE_OVERHEAD * 3
    assert f"estimated output size: {size / 1000:.1f} kB" in partial.stdout
    other = cli("sweep", config, "-o", out, "--dry-run", "--set", "seed=4")
    assert other.exit_code == 2 and "seed is 3 in OUT, 4 here" in other.stderr
    assert "would be replaced" in cli("sweep", config, "-o", out, "--dry-run", "--overwrite", "--set", "seed=4").stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_set_overrides_are_validated_and_recorded(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    out = tmp_path / "out"
    sets = ["--set", "max_steps=1000", "--set", "grid.d=[1,2]", "--set", "loss_tol=1e-8", "--set", "grid.eta=0.2"]
    result = cli("sweep", config, "-o", out, "-q", "-j", "1", *sets)
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["max_steps"] == 1000 and resolved["loss_tol"] == 1e-8
    assert resolved["grid"]["d"] == [1, 2] and resolved["grid"]["eta"] == [0.2]
    assert manifest(out)["runs"][-1]["overrides"] == ["max_steps=1000", "grid.d=[1,2]", "loss_tol=1e-8", "grid.eta=0.2"]
    assert len(finished_cell_ids(out)) == 1 * 2 * 1 * 2
    # the same overrides resume; without them the config differs
    assert "ran 0, skipped 4" in cli("sweep", config, "-o", out, "-q", *sets).stderr
    # a setting is named before the grid's lists
    assert "(loss_tol is 1e-08 in OUT, 1e-10 here)" in cli("sweep", config, "-o", out, "-q").stderr
    only_grid = ["--set", "max_steps=1000", "--set", "grid.d=[1,2]", "--set", "loss_tol=1e-8"]
    assert "(grid.eta is [0.2] in OUT, [0.1, 0.9] here)" in cli("sweep", config, "-o", out, "-q", *only_grid).stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("max_steps", "--set: expected key=value"),
        ("=3", "--set: expected key=value"),
        ("grid..d=1", "--set: expected key=value"),
        ("max_steps=-1", "max_steps: must be > 0, got -1"),
        ("grid.d=[0]", "grid.d: must be a positive integer, got 0.0"),
        ("grid.width=3", "grid.width: unknown key"),
        ("grid.eta.linspace=1", "--set grid.eta.linspace: grid.eta is [0.1, 0.9] (list), not a mapping"),
        ("seed=[1", "malformed YAML in --set seed"),
        ("init=explicit", "init: explicit init needs vectors"),
    ],
)
def test_bad_set_exits_2_in_one_line(tmp_path: Path, cli, setting: str, message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("sweep", write_yaml(tmp_path / "c.yaml", SMALL), "-o", tmp_path / "out", "--set", setting)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_apply_overrides_builds_nested_keys_and_leaves_the_input_alone() -> None:
    raw = {"grid": {"eta": 0.1}, "seed": 1}
    result = apply_overrides(raw, ["grid.lambda0={geomspace: [0.1, 1, 3]}", "seed=2", "name=x=y"])
    assert result == {"grid": {"eta": 0.1, "lambda0": {"geomspace": [0.1, 1, 3]}}, "seed": 2, "name": "x=y"}
    assert raw == {"grid": {"eta": 0.1}, "seed": 1}
    assert apply_overrides(None, ["grid.eta=1"]) == {"grid": {"eta": 1}}
    with pytest.raises(ConfigError, match="seed is 1, not a mapping"):
        apply_overrides(raw, ["seed.x=1"])


def test_load_config_with_overrides_matches_the_edited_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", SMALL)
    edited = write_yaml(tmp_path / "c2.yaml", {**SMALL, "max_steps": 7, "grid": {**SMALL["grid"], "d": [3]}})
    assert load_config(path, ["max_steps=7", "grid.d=[3]"]) == load_config(edited)


def test_workers_option_is_checked(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    zero = cli("sweep", config, "-o", tmp_path / "o", "--workers", "0")
    assert zero.exit_code == 2 and "--workers: must be >= 1, got 0" in zero.stderr
    both = cli("sweep", config, "-o", tmp_path / "o", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1")
    assert both.exit_code == 2 and "not both" in both.stderr
    assert not (tmp_path / "o").exists()


# One shard whose kernel call runs for minutes: every trajectory to max_steps at a tiny step.
LONG_KERNEL = {
    "name": "long",
    "seed": 2,
    "trajectories": 4000,
    "grid": {"eta": 1e-6, "lambda0": [0.5, 0.6], "d": 2},
    "loss_tol": 1e-300,
    "max_steps": 2**40,
}


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_compiled_kernel_in_the_main_process(tmp_path: Path, signum: int, code: int) -> None:
    """The kernel runs in this process (the default for the compiled kernel):
    Ctrl-C or SIGTERM mid-kernel stops it within a second, writes nothing half-done."""
    out = tmp_path / "out"
    config = write_yaml(tmp_path / "long.yaml", LONG_KERNEL)
    process = lin2net_process("sweep", config, "-o", out, "--quiet")
    deadline = time.monotonic() + 60
    while not (out / "manifest.json").exists():  # the run has started: the kernel is next
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    time.sleep(1.5)
    started = time.monotonic()
    os.killpg(process.pid, signum)
    try:
        _, stderr = process.communicate(timeout=30)
    finally:  # a sweep that ignored the signal must not outlive the test (it would run for minutes)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    stopped = time.monotonic() - started
    assert process.returncode == code, stderr
    assert stderr.strip().count("\n") == 0 and "interrupted" in stderr and "Traceback" not in stderr
    assert stopped < 1.5, f"took {stopped:.2f} s to stop"
    assert leftovers(out) == [] and temporary_files(out) == [] and shard_files(out) == []
    record = manifest(out)
    assert record["status"] == "interrupted" and record["cells"]["done"] == 0


def test_a_task_of_a_run_that_ended_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dask tasks cannot be killed: one that outlives its run (the client was
    interrupted, or killed and then resumed with a new run token) checks the
    token before it writes and again just before the rename that makes its
    file count, so it never adds a file behind the manifest or beside the new
    run's files."""
    from lin2net.store import shard_file
    from lin2net.store.outdir import RUN_FILE, WriteGuard, end_run, prepare_output_dir, start_run
    from lin2net.store.shards import form_shards
    from lin2net.sweep.executors import ShardTask, compute_shard

    config = parse_config(SMALL)
    out = tmp_path / "out"
    prepare_output_dir(out, config, overwrite=False)
    first, second = form_shards(expand_grid(config), config.trajectories, 4 * config.trajectories)
    orphan = WriteGuard(run_file=out / RUN_FILE, token=start_run(out))
    current = WriteGuard(run_file=out / RUN_FILE, token=start_run(out))  # a resume took over
    (stale,) = compute_shard(ShardTask(config, first, out, 1, orphan))
    assert stale.error is not None and stale.error.startswith("Stopped")
    assert shard_files(out) == [] and temporary_files(out) == []

    write = shard_file.write_shard_file

    def run_ends_midway(*args, **kwargs):  # type: ignore[no-untyped-def]
        write(*args, **kwargs)
        end_run(out)  # the run stops while this task is writing its file

    monkeypatch.setattr("lin2net.store.outdir.write_shard_file", run_ends_midway)
    (late,) = compute_shard(ShardTask(config, second, out, 1, current))
    assert late.error is not None and late.error.startswith("RunEnded")
    assert shard_files(out) == [] and temporary_files(out) == []
    monkeypatch.undo()
    fresh = WriteGuard(run_file=out / RUN_FILE, token=start_run(out))
    (done,) = compute_shard(ShardTask(config, second, out, 1, fresh))
    assert done.error is None and len(shard_files(out)) == 1


def test_dry_run_states_peak_memory_and_a_sweep_beyond_it_is_refused(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from lin2net.sweep import runner

    big = write_yaml(tmp_path / "big.yaml", {**SMALL, "trajectories": 100_000, "grid": {"eta": 0.1, "lambda0": 1.0}})
    shard = ("--shard-size", "100000")  # one cell, one shard, one thread: base + one shard's rows
    planned = cli("sweep", big, "-o", tmp_path / "out", "--dry-run", "-j", "1", *shard)
    peak = runner.MEMORY_BASE + 100_000 * runner.MEMORY_PER_TRAJECTORY
    assert planned.exit_code == 0 and f"peak memory: about {peak / 1e6:.1f} MB" in planned.stdout, planned.output
    monkeypatch.setattr(runner, "machine_memory", lambda: 100_000_000)
    warned = cli("sweep", big, "-o", tmp_path / "out", "--dry-run", "-j", "1", *shard)
    assert warned.exit_code == 0 and "warning: more than this machine allows (100.0 MB)" in warned.stdout
    refused = cli("sweep", big, "-o", tmp_path / "out", "-q", "-j", "1", *shard)
    assert refused.exit_code == 2 and refused.stderr.startswith("error: --shard-size: shards of 100000 trajectories")
    assert refused.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


def test_the_pilot_is_stratified_over_every_axis() -> None:
    """Striding through the grid held the innermost axes fixed (on an SGD grid,
    only σ = 0 was timed): every value of a short axis is in the pilot, and a
    long axis is spanned from end to end."""
    from lin2net.sweep.runner import pilot_cells

    config = parse_config(
        {**SMALL, "grid": {"eta": {"geomspace": [0.01, 1, 50]}, "lambda0": [1, 2, 3], "phi": [1, 2, 3, 4]}}
    )
    cells = expand_grid(config)
    chosen = pilot_cells(config, cells)
    assert len(chosen) >= 16 and len({c.cell_id for c in chosen}) == len(chosen)
    assert {c.lambda0 for c in chosen} == {1.0, 2.0, 3.0} and {c.phi for c in chosen} == {1.0, 2.0, 3.0, 4.0}
    etas = {c.eta for c in chosen}
    assert min(config.axes["eta"]) in etas and max(config.axes["eta"]) in etas
    assert pilot_cells(config, cells) == chosen  # the same pilot every time


def test_a_pilot_that_cannot_see_the_end_of_long_trajectories_says_lower_bound(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from lin2net.sweep.runner import PILOT_MAX_STEPS

    slow = {"trajectories": 4, "grid": {"eta": 1e-9, "lambda0": 1.0}, "max_steps": 10 * PILOT_MAX_STEPS}
    planned = cli("sweep", write_yaml(tmp_path / "slow.yaml", slow), "-o", tmp_path / "out", "--dry-run")
    assert planned.exit_code == 0, planned.output
    assert "estimated run time: at least " in planned.stdout and "a lower bound" in planned.stdout
    quick = cli("sweep", write_yaml(tmp_path / "quick.yaml", SMALL), "-o", tmp_path / "out", "--dry-run")
    assert "estimated run time: " in quick.stdout and "lower bound" not in quick.stdout


def test_a_stop_abandons_a_shard_file_being_written_at_its_next_row_group(tmp_path: Path) -> None:
    """Writing a large shard takes seconds; a stop must not wait for it: the
    writer stops between row groups and removes its temporary file."""
    import threading

    from lin2net.dynamics.cells import simulate_cells
    from lin2net.store.outdir import prepare_output_dir
    from lin2net.store.shards import form_shards
    from lin2net.sweep.executors import ShardTask, Stopped, _write

    config = parse_config(SMALL)
    out = tmp_path / "out"
    prepare_output_dir(out, config, overwrite=False)
    (shard,) = form_shards(expand_grid(config), config.trajectories)
    arrays = simulate_cells(config, shard.cells)
    abandon = threading.Event()
    abandon.set()
    with pytest.raises(Stopped):
        _write(ShardTask(config, shard, out), arrays, abandon)
    assert shard_files(out) == [] and temporary_files(out) == []
    _write(ShardTask(config, shard, out), arrays, threading.Event())
    assert len(shard_files(out)) == 1


LARGE_CELL = {
    "name": "large-cell",
    "seed": 5,
    "trajectories": 70_000,  # more than one row group (65 536): split into parts at --shard-size 1000
    "grid": {"eta": [0.2, 0.6], "lambda0": 1.5, "d": 3},
    "max_steps": 60,
}


@pytest.mark.parametrize(
    "extra",
    [
        {},
        pytest.param({"integrator": "reduced"}, marks=pytest.mark.slow),
        pytest.param(
            {
                "algorithm": "sgd",
                "data": {"n": 4},
                "grid": {**LARGE_CELL["grid"], "batch_size": [2], "label_noise": [0.1]},
            },
            marks=pytest.mark.slow,
        ),
    ],
    ids=["compiled", "reduced", "sgd"],
)
def test_a_cell_larger_than_a_shard_runs_in_parts_with_the_same_rows(tmp_path: Path, cli, extra: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    """Memory is bounded by --shard-size whatever the cell size: a cell of more
    trajectories streams through several shard files (parts), whose rows
    equal a one-shard run's; the cell counts as done once all parts are, and
    a resume recomputes only a missing part."""
    from lin2net.store.outdir import scan_shards
    from lin2net.sweep.config import load_config

    config = write_yaml(tmp_path / "large.yaml", {**LARGE_CELL, **extra})
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert cli("sweep", config, "-o", whole, "-q", "-j", "1", "--shard-size", str(1 << 20)).exit_code == 0
    result = cli("sweep", config, "-o", parts, "-q", "-j", "1", "--shard-size", "1000")
    assert result.exit_code == 0 and "ran 2, skipped 0" in result.stderr, result.output
    assert len(shard_files(whole)) == 1 and len(shard_files(parts)) == 4
    assert all(pq.read_metadata(p).num_rows <= 65_536 for p in shard_files(parts))
    key = ["cell_id", "trajectory"]
    expected = trajectories_frame(whole).sort_values(key).reset_index(drop=True)
    got = trajectories_frame(parts).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert finished_cell_ids(parts) == finished_cell_ids(whole)
    shard_files(parts)[0].unlink()  # one part missing: its cell is not done
    assert len(scan_shards(parts, load_config(config)).finished) == 1
    again = cli("sweep", config, "-o", parts, "-q", "-j", "1", "--shard-size", "1000")
    assert again.exit_code == 0 and "ran 1, skipped 1" in again.stderr and len(shard_files(parts)) == 4
    assert trajectories_frame(parts).sort_values(key).reset_index(drop=True).equals(expected)
    assert cli("summarize", parts).exit_code == 0
