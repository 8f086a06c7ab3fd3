"""lin2net deletes only what it wrote, and uses a result only once verified.

* Decoys: directories holding a user's files, under lin2net's own names and
  others, survive every command with every flag byte for byte.
* Corruption matrix: a shard file replaced by garbage, truncated, emptied,
  bit-flipped anywhere, or swapped for another sweep's is reported by name,
  never read as data, and recomputed by a rerun, which then equals a clean run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lin2net.errors import OutputError
from lin2net.store.outdir import read_trajectories, shard_files
from tests.conftest import plain, write_yaml
from tests.test_resume_parallel import leftovers, shard_bytes
from tests.test_sweep_cli import SMALL

FOUR_SHARDS = ("--shard-size", "80")  # SMALL has 8 cells of 40 trajectories


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: a hash of each file, the target of each link."""
    entries: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            entries[name] = "link:" + os.readlink(path)
        elif path.is_file():
            entries[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            entries[name] = "dir"
    return entries


def make_decoy(root: Path) -> Path:
    """A user's project folder that looks a little like a lin2net output."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text("name: my experiment\nlr: 0.1\n")
    (root / "manifest.json").write_text('{"mine": true}\n')
    (root / "provenance.json").write_text("{}\n")
    (root / ".tmp-notes").write_text("scratch\n")
    (root / ".tmp-lin2net-1-x.partial").write_text("looks like ours, is not in a lin2net output\n")
    (root / "cells").mkdir()
    (root / "cells" / "measurements.csv").write_text("t,value\n0,1\n")
    (root / "cells" / "0123456789ab.parquet").write_bytes(b"PAR1 not really")
    (root / "shards").mkdir()
    (root / "shards" / "part-0000000000000000.parquet").write_bytes(b"user data")
    (root / "shards" / "notes.txt").write_text("mine\n")
    elsewhere = root.parent / f"{root.name}-target"
    elsewhere.mkdir(exist_ok=True)
    (elsewhere / "precious.txt").write_text("do not delete\n")
    (root / "link").symlink_to(elsewhere, target_is_directory=True)
    return root


@pytest.mark.parametrize(
    "flags",
    [(), ("--overwrite",), ("--extend",), ("--dry-run",), ("--dry-run", "--overwrite"), ("-j", "2", "--overwrite")],
)
def test_a_decoy_directory_survives_sweep_with_every_flag(tmp_path: Path, cli, flags: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    decoy = make_decoy(tmp_path / "project")
    before, outside = snapshot(decoy), snapshot(tmp_path / "project-target")
    result = cli("sweep", write_yaml(tmp_path / "c.yaml", SMALL), "-o", decoy, *flags)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "not a lin2net output" in result.stderr
    assert snapshot(decoy) == before and snapshot(tmp_path / "project-target") == outside


@pytest.mark.parametrize("command", [["summarize"], ["check"], ["plot"], ["summarize", "--format", "csv"]])
def test_a_decoy_directory_survives_the_reading_commands(tmp_path: Path, cli, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    decoy = make_decoy(tmp_path / "project")
    before = snapshot(decoy)
    result = cli(*command, decoy)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert snapshot(decoy) == before


def test_dot_in_a_project_folder_is_refused_even_with_overwrite(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    project = make_decoy(tmp_path / "project")
    config = write_yaml(project / "sweep.yaml", SMALL)
    before = snapshot(project)
    monkeypatch.chdir(project)
    result = cli("sweep", "sweep.yaml", "-o", ".", "--overwrite")
    assert result.exit_code == 2 and "not a lin2net output" in result.stderr
    assert snapshot(project) == before and config.exists()


def test_overwrite_clears_only_lin2net_files_and_refuses_anything_else(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    other = write_yaml(tmp_path / "other.yaml", {**SMALL, "seed": 9})
    assert cli("sweep", config, "-o", out, "-q", *FOUR_SHARDS).exit_code == 0

    for intruder in (out / "notes.txt", out / "shards" / "mine.csv", out / "shards" / "part-user.parquet"):
        intruder.write_text("user data\n")
        before = snapshot(out)
        refused = cli("sweep", other, "-o", out, "--overwrite", "-q")
        assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
        assert str(intruder.relative_to(out)) in refused.stderr and "nothing was deleted" in refused.stderr
        assert snapshot(out) == before
        intruder.unlink()

    # a symlinked shards/ folder is never followed, emptied or left behind with old cells in it
    real = tmp_path / "elsewhere"
    shutil.move(out / "shards", real)
    (out / "shards").symlink_to(real, target_is_directory=True)
    before, target = snapshot(out), snapshot(real)
    refused = cli("sweep", other, "-o", out, "--overwrite", "-q")
    assert refused.exit_code == 2 and "symbolic link" in refused.stderr
    assert snapshot(out) == before and snapshot(real) == target
    (out / "shards").unlink()
    shutil.move(real, out / "shards")

    replaced = cli("sweep", other, "-o", out, "--overwrite", "-q", *FOUR_SHARDS)
    assert replaced.exit_code == 0 and "ran 8, skipped 0" in replaced.stderr
    assert leftovers(out) == [] and len(shard_files(out)) == 4
    assert read_trajectories(out).num_rows == 8 * 40


# ---------------------------------------------------------------- corruption


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ (1 << (position % 8))]) + data[position + 1 :]


def _column_middle(path: Path, name: str) -> int:
    """A byte in the middle of column ``name``'s pages in the first row group."""
    group = pq.read_metadata(path).row_group(0)
    chunk = next(group.column(i) for i in range(group.num_columns) if group.column(i).path_in_schema == name)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    return int(start + chunk.total_compressed_size // 2)


CORRUPTIONS = {
    "garbage": lambda data, path: os.urandom(len(data)),
    "truncated to half": lambda data, path: data[: len(data) // 2],
    "truncated by one byte": lambda data, path: data[:-1],
    "footer cut off": lambda data, path: data[:-8],
    "empty": lambda data, path: b"",
    "a flipped bit in the cell ids": lambda data, path: _flip(data, _column_middle(path, "cell_id")),
    "a flipped bit in the statuses": lambda data, path: _flip(data, _column_middle(path, "status")),
    "a flipped bit in the step counts": lambda data, path: _flip(data, _column_middle(path, "steps")),
}


@pytest.fixture(scope="module")
def clean_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """A finished SMALL sweep in four shard files, and their bytes."""
    from typer.testing import CliRunner

    from lin2net.cli import app

    root = tmp_path_factory.mktemp("clean")
    out = root / "out"
    config = write_yaml(root / "c.yaml", SMALL)
    result = CliRunner().invoke(app, ["sweep", str(config), "-o", str(out), "-q", *FOUR_SHARDS])
    assert result.exit_code == 0, result.output
    return out, shard_bytes(out)


def _damaged_copy(tmp_path: Path, clean: Path, victim_data: bytes | None) -> tuple[Path, Path]:
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    victim = shard_files(out)[1]
    if victim_data is not None:
        victim.write_bytes(victim_data)
    return out, victim


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_a_damaged_shard_is_named_never_read_and_recomputed(tmp_path: Path, cli, clean_sweep, kind: str) -> None:  # type: ignore[no-untyped-def]
    clean, reference = clean_sweep
    victim_name = sorted(reference)[1]
    damaged = CORRUPTIONS[kind](reference[victim_name], clean / "shards" / victim_name)
    out, victim = _damaged_copy(tmp_path, clean, damaged)
    _assert_detected_and_repaired(tmp_path, cli, out, victim, reference)


def test_a_dangling_symlink_with_a_shard_name_is_not_a_result(tmp_path: Path, cli, clean_sweep) -> None:  # type: ignore[no-untyped-def]
    clean, reference = clean_sweep
    out, victim = _damaged_copy(tmp_path, clean, None)
    victim.unlink()
    victim.symlink_to(tmp_path / "nowhere.parquet")
    _assert_detected_and_repaired(tmp_path, cli, out, victim, reference)


@pytest.mark.parametrize("change", [{"seed": 4}, {"max_steps": 3000}, {"trajectories": 41}])
def test_another_sweeps_shard_under_the_right_name_is_rejected(tmp_path: Path, cli, clean_sweep, change) -> None:  # type: ignore[no-untyped-def]
    """Another seed gives the same cells (ids do not include the seed), so the
    same shard name: only the footer's settings tell the files apart."""
    clean, reference = clean_sweep
    stranger = tmp_path / "stranger"
    config = write_yaml(tmp_path / "s.yaml", {**SMALL, **change})
    assert cli("sweep", config, "-o", stranger, "-q", *FOUR_SHARDS).exit_code == 0
    victim_name = sorted(reference)[1]
    foreign = stranger / "shards" / victim_name
    if not foreign.exists():  # other trajectories per cell: other shards; take any
        foreign = shard_files(stranger)[0]
    out, victim = _damaged_copy(tmp_path, clean, foreign.read_bytes())
    _assert_detected_and_repaired(tmp_path, cli, out, victim, reference)


def _assert_detected_and_repaired(
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
    out: Path,
    victim: Path,
    reference: dict[str, bytes],
) -> None:
    for command in (["summarize"], ["check"], ["summarize", "--format", "csv"]):
        result = cli(*command, out)
        assert result.exit_code != 0, (command, result.output)
        assert result.stderr.count("\n") == 1 and victim.name in result.stderr and "Traceback" not in result.output
    dry = cli("sweep", write_yaml(tmp_path / "c.yaml", SMALL), "-o", out, "--dry-run", *FOUR_SHARDS)
    assert dry.exit_code == 0 and "resuming: 6 of 8 cells already done" in dry.stdout
    assert "shard files failing verification: 1" in dry.stdout
    rerun = cli("sweep", tmp_path / "c.yaml", "-o", out, "-q", *FOUR_SHARDS)
    assert rerun.exit_code == 0, rerun.output
    assert f"note: {victim}" in rerun.stderr and "moved to" in rerun.stderr
    assert "ran 2, skipped 6 already done, failed 0" in rerun.stderr
    assert shard_bytes(out) == reference  # recomputed byte for byte
    moved = [p.name for p in (out / "shards").iterdir() if ".corrupt" in p.name]
    assert moved == [f".{victim.name}.corrupt"]  # set aside (hidden from readers), never deleted
    assert cli("summarize", out, "--format", "csv").exit_code == 0


def test_bit_flips_anywhere_are_detected_or_harmless(clean_sweep, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A flip at any of many positions spread over the file (pages, page
    headers, footer) either makes the read fail with the file named, or reads
    back exactly the clean data (a flip in bytes nobody decodes)."""
    clean, reference = clean_sweep
    expected = plain(read_trajectories(clean))
    name = sorted(reference)[1]
    data = reference[name]
    out, victim = _damaged_copy(tmp_path, clean, None)
    positions = sorted({*range(0, len(data), max(1, len(data) // 150)), *range(len(data) - 600, len(data), 7)})
    detected = 0
    for position in positions:
        victim.write_bytes(_flip(data, position))
        try:
            table = read_trajectories(out)
        except OutputError as error:
            assert victim.name in str(error) and "\n" not in str(error)
            detected += 1
            continue
        assert plain(table).equals(expected), f"a flip at byte {position} of {len(data)} changed the data silently"
    assert detected >= len(positions) // 2  # the rest fell on bytes nobody decodes (names, provenance text)


def test_a_shard_holds_its_cells_and_settings_in_its_footer(clean_sweep) -> None:  # type: ignore[no-untyped-def]
    clean, reference = clean_sweep
    footer = json.loads(pq.read_metadata(clean / "shards" / sorted(reference)[0]).metadata[b"lin2net.shard"])
    assert footer["format"] == 2 and footer["rows"] == 2 * 40
    assert [cell["rows"] for cell in footer["cells"]] == [40, 40]
    assert set(footer["checksums"]) == set(pq.read_schema(clean / "shards" / sorted(reference)[0]).names)
    assert pq.ParquetFile(clean / "shards" / sorted(reference)[0]).metadata.row_group(0).num_rows == 80


def test_an_output_of_lin2net_0_1_is_refused_with_what_to_do(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """The one-file-per-cell layout is never misread (nor replaced)."""
    old = tmp_path / "old"
    (old / "cells").mkdir(parents=True)
    (old / "config.yaml").write_text(json.dumps({"name": "x", "seed": 0}))
    (old / "provenance.json").write_text(json.dumps({"lin2net": "0.1.0", "numpy": "2.0"}))
    (old / "cells" / "0123456789ab.parquet").write_bytes(b"PAR1")
    before = snapshot(old)
    for args in (["summarize", old], ["check", old], ["sweep", write_yaml(tmp_path / "c.yaml", SMALL), "-o", old]):
        result = cli(*args, "--overwrite") if args[0] == "sweep" else cli(*args)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert "lin2net 0.1" in result.stderr and "new -o" in result.stderr
    assert snapshot(old) == before


def test_provenance_names_the_versions_and_the_checkout(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    import numba

    out = tmp_path / "out"
    assert cli("sweep", write_yaml(tmp_path / "c.yaml", SMALL), "-o", out, "-q").exit_code == 0
    info = json.loads((out / "provenance.json").read_text())
    assert info["numba"] == numba.__version__ and info["lin2net"] and info["pyarrow"]
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        assert info["git_commit"].split("+")[0] == head.strip()
    footer = json.loads(pq.read_metadata(shard_files(out)[0]).metadata[b"lin2net.provenance"])
    assert footer["numba"] == numba.__version__
