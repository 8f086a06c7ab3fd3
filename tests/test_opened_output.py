"""An opened output (lin2net.store.opened): the config read once, shard files
verified in full once and recorded in OUT/.verified.json, a file changed
behind the record's back checked again, --verify checking everything; and
the read commands load only the libraries they use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lin2net.store.shard_file as shard_file
from lin2net.analysis.summary import summary_rows
from lin2net.store.opened import VERIFIED_FILE, open_output
from lin2net.store.outdir import shard_files
from lin2net.sweep.runner import run_sweep
from tests.conftest import Cli, make_config

ROOT = Path(__file__).resolve().parent.parent


def _sweep(out: Path) -> Path:
    run_sweep(make_config(trajectories=40), out, shard_rows=80)  # 8 cells in 4 shard files
    return out


def _count_full_checks(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record the files read_verified (the full-content check) reads."""
    checked: list[Path] = []
    original = shard_file.read_verified

    def counting(footer: shard_file.ShardFooter, columns: list[str] | None = None) -> object:
        checked.append(footer.path)
        return original(footer, columns)

    monkeypatch.setattr(shard_file, "read_verified", counting)
    return checked


def _flip_a_data_bit(path: Path, keep_mtime: bool) -> None:
    """Flip one bit in the middle of the file (data pages, not the footer);
    with ``keep_mtime``, put the modification time back."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10
    with open(path, "r+b") as handle:  # same inode, same size
        handle.write(data)
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert after.st_size == before.st_size and after.st_ino == before.st_ino


def test_verification_is_paid_once_and_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _sweep(tmp_path / "out")
    checked = _count_full_checks(monkeypatch)
    first = open_output(out)
    assert len(first.shards) == 4 and first.rows == 8 * 40 and first.complete and first.missing == []
    assert sorted(checked) == shard_files(out)
    record = json.loads((out / VERIFIED_FILE).read_text())
    assert sorted(record["files"]) == [p.name for p in shard_files(out)]
    checked.clear()
    again = open_output(out)
    assert [s.cell_ids for s in again.shards] == [s.cell_ids for s in first.shards] and checked == []
    assert open_output(out, verify=True).shards and sorted(checked) == shard_files(out)
    summary = again.summary(by=["eta"])  # the public face: config, trajectories, summary
    assert again.config.trajectories == 40 and list(summary["trajectories"]) == [4 * 40, 4 * 40]
    assert again.trajectories(["eta", "q_ratio"]).column_names == ["eta", "q_ratio"]


def test_a_file_changed_behind_the_record_is_checked_again(tmp_path: Path, cli: Cli) -> None:
    out = _sweep(tmp_path / "out")
    assert cli("summarize", out, "--format", "csv").exit_code == 0  # verifies and records
    victim = shard_files(out)[1]
    _flip_a_data_bit(victim, keep_mtime=False)  # same size and inode, a new mtime
    result = cli("summarize", out, "--format", "csv")
    assert result.exit_code == 2 and victim.name in result.output and "failed verification" in result.output


def test_a_flipped_bit_under_an_unchanged_record_is_found_by_verify(tmp_path: Path, cli: Cli) -> None:
    out = _sweep(tmp_path / "out")
    assert cli("summarize", out, "--format", "csv").exit_code == 0
    victim = shard_files(out)[2]
    _flip_a_data_bit(victim, keep_mtime=True)  # size, inode, mtime and footer as recorded
    for command in (["summarize", out, "--verify"], ["check", out, "--verify"], ["plot", out, "--verify"]):
        result = cli(*command)
        assert result.exit_code == 2, command
        assert victim.name in result.output and "failed verification" in result.output, result.output


def test_a_touched_file_is_checked_and_recorded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _sweep(tmp_path / "out")
    assert len(open_output(out).shards) == 4  # verified and recorded
    touched = shard_files(out)[0]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 1_000_000_000))
    checked = _count_full_checks(monkeypatch)
    assert len(open_output(out).shards) == 4 and checked == [touched]
    checked.clear()
    assert len(open_output(out).shards) == 4 and checked == []


def test_overwrite_removes_the_record(tmp_path: Path) -> None:
    out = _sweep(tmp_path / "out")
    assert len(open_output(out).shards) == 4  # verified and recorded
    assert (out / VERIFIED_FILE).is_file()
    run_sweep(make_config(trajectories=40, seed=8), out, overwrite=True)  # refuses files that are not lin2net's
    assert not (out / VERIFIED_FILE).exists() and open_output(out).rows == 8 * 40


def test_csv_without_pandas_equals_pandas_csv(tmp_path: Path) -> None:
    out = _sweep(tmp_path / "out")
    for by in (None, ["eta"], ["phi", "d"]):
        rows = summary_rows(out, by)
        assert rows.to_csv() == rows.df().to_csv(index=False)


LOADED = """\
import sys
from lin2net.cli import app
try:
    app(prog_name="lin2net", args=sys.argv[1:])
except SystemExit:
    pass
heavy = ("pandas", "numba", "pyarrow", "matplotlib", "duckdb")
print("loaded:" + ",".join(name for name in heavy if name in sys.modules), file=sys.stderr)
"""


def _loaded(*args: str | Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED, *map(str, args)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("loaded:"), done.stderr
    return set(filter(None, line.removeprefix("loaded:").split(",")))


def test_short_commands_import_only_what_they_use(tmp_path: Path) -> None:
    out = _sweep(tmp_path / "out")
    assert len(open_output(out).shards) == 4  # recorded: the next reads trust the files
    assert _loaded("--help") == set()
    assert _loaded("summarize", out, "--format", "csv") == {"duckdb"}
