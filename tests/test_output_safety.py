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


# ---------------------------------------------------------------- round 3: the lock, overwrites, links, versions


def _finished(tmp_path: Path, cli, name: str = "out", *flags: str) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    config = write_yaml(tmp_path / f"{name}.yaml", SMALL)
    out = tmp_path / name
    result = cli("sweep", config, "-o", out, "-q", *FOUR_SHARDS, *flags)
    assert result.exit_code == 0, result.output
    return config, out


def test_a_sweep_whose_output_directory_is_replaced_stops_and_writes_nothing_more(tmp_path: Path) -> None:
    """Sweep A runs; the user deletes OUT and sweep B (another seed) fills a new
    OUT at the same path. A's lock is on the deleted directory: A must notice
    that OUT is no longer the directory it locked, write nothing into B's
    files (shards, manifest) and stop with one line."""
    from lin2net.store.outdir import OutputReplaced
    from lin2net.sweep.config import parse_config
    from lin2net.sweep.runner import run_sweep

    out = tmp_path / "out"
    config_a, config_b = parse_config(SMALL), parse_config({**SMALL, "seed": SMALL["seed"] + 1})
    b_files: dict[str, str] = {}

    def replace_out(cell, seconds):  # type: ignore[no-untyped-def]
        if b_files:
            return
        out.rename(out.with_name("gone"))  # as rm -rf, atomically (A's writer thread may be mid-file)
        run_sweep(config_b, out, workers=1, shard_rows=40)
        b_files.update(snapshot(out))

    with pytest.raises(OutputReplaced) as stopped:
        run_sweep(config_a, out, workers=1, shard_rows=40, on_cell_done=replace_out)
    assert "removed or replaced" in str(stopped.value) and "\n" not in str(stopped.value)
    assert snapshot(out) == b_files and len(shard_files(out)) == 8
    assert read_trajectories(out).num_rows == 8 * 40


def test_an_interrupted_overwrite_is_finished_by_running_it_again(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A stop after config.yaml is deleted (and before the shards are) must not
    strand OUT: every command says what happened, and the same --overwrite
    finishes the job."""
    _, out = _finished(tmp_path, cli)
    other = write_yaml(tmp_path / "other.yaml", {**SMALL, "seed": 99})
    unlink = Path.unlink

    def stopped_midway(path: Path, missing_ok: bool = False) -> None:
        if path.parent.name == "shards" and path.suffix == ".parquet":
            raise KeyboardInterrupt
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", stopped_midway)
    assert cli("sweep", other, "-o", out, "-q", "--overwrite").exit_code == 130
    monkeypatch.setattr(Path, "unlink", unlink)
    assert not (out / "config.yaml").exists() and shard_files(out)
    told = cli("summarize", out)
    assert told.exit_code == 2 and "--overwrite of" in told.stderr and "interrupted" in told.stderr
    assert cli("sweep", other, "-o", out, "-q").exit_code == 2  # a plain resume does not guess
    again = cli("sweep", other, "-o", out, "-q", "--overwrite", *FOUR_SHARDS)
    assert again.exit_code == 0, again.output
    clean = tmp_path / "clean"
    assert cli("sweep", other, "-o", clean, "-q", *FOUR_SHARDS).exit_code == 0
    assert shard_bytes(out) == shard_bytes(clean) and leftovers(out) == []


def test_a_file_failing_verification_is_never_overwritten_when_set_aside_names_are_taken(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config, out = _finished(tmp_path, cli)
    victim = shard_files(out)[0]
    garbage = b"not a shard, but nobody may destroy it"
    victim.write_bytes(garbage)
    taken = [victim.with_name(f".{victim.name}.corrupt")]
    taken += [victim.with_name(f".{victim.name}.corrupt-{i}") for i in range(1, 1000)]
    for path in taken:
        path.write_text("an earlier one")
    before = {path: path.read_bytes() for path in taken}
    result = cli("sweep", config, "-o", out, "-q", *FOUR_SHARDS)
    assert result.exit_code == 0, result.output
    assert {path: path.read_bytes() for path in taken} == before
    kept = [p for p in out.joinpath("shards").iterdir() if p.name.startswith(".") and p.read_bytes() == garbage]
    assert len(kept) == 1 and read_trajectories(out).num_rows == 8 * 40


def test_a_marker_that_lin2net_did_not_write_does_not_make_a_folder_lins(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / ".lin2net").write_text("{}")
    (folder / "config.yaml").write_text("my: config\n")
    (folder / "manifest.json").write_text('{"my": "manifest"}\n')
    before = snapshot(folder)
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    for flags in ((), ("--overwrite",)):
        result = cli("sweep", config, "-o", folder, "-q", *flags)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert snapshot(folder) == before


def test_temporary_files_are_exclusive_and_links_are_never_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secrets

    from lin2net.store.outdir import atomic_write

    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "folder"
    folder.mkdir()
    final = folder / "table.csv"
    # A link planted under the temporary name (lin2net <= 0.1 used <pid>; now a random token).
    monkeypatch.setattr(secrets, "token_hex", lambda n=8: "0" * (2 * n))
    for name in (f".tmp-lin2net-{os.getpid()}-table.csv.partial", f".tmp-lin2net-{'0' * 16}-table.csv.partial"):
        (folder / name).symlink_to(outside)
    with pytest.raises(OutputError):
        atomic_write(final, lambda temp: temp.write_text("written"))
    assert outside.read_text() == "precious" and not final.exists()
    # A final name that is a link is refused, not followed.
    link = folder / "linked.csv"
    link.symlink_to(outside)
    with pytest.raises(OutputError, match="symbolic link"):
        atomic_write(link, lambda temp: temp.write_text("written"))
    assert outside.read_text() == "precious" and link.is_symlink()


def test_a_symlinked_shards_folder_is_refused_by_every_command(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config, out = _finished(tmp_path, cli)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(out / "shards", elsewhere)
    (elsewhere / "part-0000000000000000.parquet").write_bytes(b"a user's file")
    (out / "shards").symlink_to(elsewhere)
    before = snapshot(elsewhere)
    for args in (
        ["sweep", config, "-o", out, "-q"],
        ["sweep", config, "-o", out, "-q", "--overwrite"],
        ["sweep", config, "-o", out, "--dry-run"],
        ["summarize", out],
        ["check", out],
        ["plot", out, "-o", tmp_path / "f.png"],
    ):
        result = cli(*args)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "link" in result.stderr, (
            args,
            result.output,
        )
    assert snapshot(elsewhere) == before


@pytest.mark.parametrize("command", ["summarize", "check", "plot"])
def test_outputs_inside_out_own_folders_are_refused(tmp_path: Path, cli, command: str) -> None:  # type: ignore[no-untyped-def]
    config, out = _finished(tmp_path, cli, "out", "--set", "grid.lambda0=[0.5, 2.0]")
    before = snapshot(out)
    suffix = ".png" if command == "plot" else ".csv"
    for target in (out / "shards" / f"x{suffix}", out / ("config.yaml" if command != "plot" else "manifest.json")):
        result = cli(command, out, "-o", target)
        assert result.exit_code == 2 and result.stderr.startswith("error: --output: cannot write"), result.output
    assert snapshot(out) == before
    assert cli("sweep", config, "-o", out, "-q", "--set", "grid.lambda0=[0.5, 2.0]", *FOUR_SHARDS).exit_code == 0


def test_a_figure_lin2net_wrote_into_out_is_its_own_until_changed(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config, out = _finished(tmp_path, cli)
    plotted = cli("plot", out)
    assert plotted.exit_code == 0, plotted.output
    assert (out / "figure3.png").is_file()
    other = write_yaml(tmp_path / "other.yaml", {**SMALL, "seed": 5})
    result = cli("sweep", other, "-o", out, "-q", "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (out / "figure3.png").exists()
    assert cli("plot", out).exit_code == 0
    with open(out / "figure3.png", "ab") as handle:
        handle.write(b"the user's edit")
    refused = cli("sweep", config, "-o", out, "-q", "--overwrite")
    assert refused.exit_code == 2 and "figure3.png" in refused.stderr and (out / "figure3.png").exists()


def test_results_of_another_rows_version_are_not_mixed_in(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """An OUT written by a lin2net whose kernel gives other numbers (recorded
    as another rows version, or none) is not resumed as 'already done'."""
    config, out = _finished(tmp_path, cli)
    info = json.loads((out / "provenance.json").read_text())
    info.pop("rows_version")
    (out / "provenance.json").write_text(json.dumps(info))
    shards = shard_bytes(out)
    for command in (["sweep", config, "-o", out, "-q"], ["sweep", config, "-o", out, "--dry-run"]):
        refused = cli(*command)
        assert refused.exit_code == 2 and refused.stderr.count("\n") == 1, refused.output
        assert "another lin2net version" in refused.stderr and "--overwrite" in refused.stderr
    assert shard_bytes(out) == shards
    assert cli("summarize", out).exit_code == 0  # reading it is fine
    replaced = cli("sweep", config, "-o", out, "-q", "--overwrite", *FOUR_SHARDS)
    assert replaced.exit_code == 0 and json.loads((out / "provenance.json").read_text())["rows_version"]


def test_an_alias_bomb_in_out_config_is_one_line(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config, out = _finished(tmp_path, cli)
    levels = [
        "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"
    ]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 32)}]" for i in range(1, 5)]
    (out / "config.yaml").write_text("\n".join(levels) + "\n")
    for command in (["sweep", config, "-o", out, "-q"], ["sweep", config, "-o", out, "--dry-run"], ["summarize", out]):
        result = cli(*command)
        assert result.exit_code == 2 and "aliases expand" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("text", ['{"runs": 5}', "[1]", '{"failed": 5}', '{"failed": [1, {"cell_id": 3}]}'])
def test_a_malformed_manifest_is_never_a_traceback(tmp_path: Path, cli, text: str) -> None:  # type: ignore[no-untyped-def]
    config, out = _finished(tmp_path, cli)
    (out / "shards" / shard_files(out)[0].name).unlink()  # a missing cell: readers consult the manifest
    for args in (["summarize", out], ["check", out], ["plot", out, "-o", tmp_path / "f.png"]):
        (out / "manifest.json").write_text(text)
        result = cli(*args)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    (out / "manifest.json").write_text(text)
    result = cli("sweep", config, "-o", out, "-q", *FOUR_SHARDS)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["cells"]["done"] == 8


def test_an_overwritten_output_file_keeps_its_permissions(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    _, out = _finished(tmp_path, cli)
    table = tmp_path / "summary.csv"
    assert cli("summarize", out, "-o", table).exit_code == 0
    table.chmod(0o600)
    assert cli("summarize", out, "-o", table).exit_code == 0
    assert table.stat().st_mode & 0o777 == 0o600


def test_a_file_written_twice_is_set_aside_as_a_duplicate_and_overwrite_still_works(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """A verified shard whose cells another file holds (a Dask task that outlived
    its run) is not corrupt: it is set aside as a duplicate, which --overwrite
    may remove, being lin2net's own verified file."""
    config, out = _finished(tmp_path, cli)
    wide = tmp_path / "wide"
    assert cli("sweep", config, "-o", wide, "-q", "--shard-size", "160").exit_code == 0
    shutil.copy(shard_files(wide)[0], out / "shards")  # holds cells that out's own files hold
    result = cli("sweep", config, "-o", out, "-q", *FOUR_SHARDS)
    assert result.exit_code == 0, result.output
    names = [p.name for p in (out / "shards").iterdir()]
    assert not any(".corrupt" in n for n in names) and sum(".duplicate" in n for n in names) == 1
    assert read_trajectories(out).num_rows == 8 * 40
    other = write_yaml(tmp_path / "other.yaml", {**SMALL, "seed": 5})
    assert cli("sweep", other, "-o", out, "-q", "--overwrite").exit_code == 0
