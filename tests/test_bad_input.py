"""Bad input never gives a traceback: malformed configs and ``--set`` strings
exit 2 with one line and write nothing; unwritable outputs and writes failing
midway give a clear error and never leave a file that looks complete."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lin2net.cli import app
from lin2net.errors import ConfigError
from lin2net.sweep.config import GRID_KEYS, TOP_LEVEL_KEYS, apply_overrides, parse_config, parse_yaml
from tests.conftest import write_yaml
from tests.test_resume_parallel import leftovers
from tests.test_sweep_cli import SMALL

RUNNER = CliRunner()
# Examples per test and randomness come from the profile loaded in conftest.py.
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(GRID_KEYS)), inner, max_size=3),
    ),
    max_leaves=8,
)
keys = st.one_of(st.sampled_from(TOP_LEVEL_KEYS), st.text(min_size=1, max_size=10))
grid_keys = st.one_of(st.sampled_from(GRID_KEYS), st.text(min_size=1, max_size=10))
printable = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@st.composite
def malformed_configs(draw: st.DrawFn) -> Any:
    """A valid config with one thing broken, or something that is not a config at all."""
    raw: dict[str, Any] = json.loads(json.dumps(SMALL))
    kind = draw(st.sampled_from(["top", "grid", "drop", "axis-form", "whole"]))
    if kind == "top":
        raw[draw(keys)] = draw(values)
    elif kind == "grid":
        raw["grid"][draw(grid_keys)] = draw(values)
    elif kind == "drop":
        key = draw(st.sampled_from(["grid", "grid.eta", "grid.lambda0"]))
        if key == "grid":
            del raw["grid"]
        else:
            del raw["grid"][key.split(".")[1]]
    elif kind == "axis-form":
        form = draw(st.sampled_from(["linspace", "geomspace", draw(st.text(max_size=8))]))
        raw["grid"][draw(st.sampled_from(GRID_KEYS))] = {form: draw(st.lists(scalars, max_size=4))}
    else:
        return draw(values)
    return raw


def invalid(check: Any) -> bool:
    """True if ``check()`` raises ConfigError (any other exception propagates)."""
    try:
        check()
    except ConfigError:
        return True
    return False


def assert_one_line_exit_2(result: Any, out: Path) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.slow  # property-based: hundreds of examples
@FUZZ
@given(raw=malformed_configs())
def test_malformed_config_exits_2_in_one_line(tmp_path: Path, raw: Any) -> None:
    assume(invalid(lambda: parse_config(raw)))
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = tmp_path / "out"
    assert_one_line_exit_2(RUNNER.invoke(app, ["sweep", str(config), "-o", str(out)]), out)


@pytest.mark.slow  # property-based: hundreds of examples
@FUZZ
@given(text=printable)
def test_arbitrary_config_text_exits_2_in_one_line(tmp_path: Path, text: str) -> None:
    assume(invalid(lambda: parse_config(parse_yaml(text))))
    config = tmp_path / "bad.yaml"
    config.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    assert_one_line_exit_2(RUNNER.invoke(app, ["sweep", str(config), "-o", str(out)]), out)


key_paths = st.one_of(
    st.sampled_from([*TOP_LEVEL_KEYS, *(f"grid.{k}" for k in GRID_KEYS), "init.explicit.a", "grid.eta.linspace"]),
    st.text(max_size=12),
)
set_strings = st.one_of(
    printable,
    st.builds(lambda k, v: f"{k}={v}", key_paths, printable),
    st.builds(lambda k, v: f"{k}={json.dumps(v)}", key_paths, values),
)


@pytest.mark.slow  # property-based: hundreds of examples
@FUZZ
@given(settings_=st.lists(set_strings, min_size=1, max_size=3))
def test_malformed_set_exits_2_in_one_line(tmp_path: Path, settings_: list[str]) -> None:
    assume(invalid(lambda: parse_config(apply_overrides(json.loads(json.dumps(SMALL)), settings_))))
    config = write_yaml(tmp_path / "good.yaml", SMALL)
    out = tmp_path / "out"
    args = ["sweep", str(config), "-o", str(out)]
    for setting in settings_:
        args += ["--set", setting]
    assert_one_line_exit_2(RUNNER.invoke(app, args), out)


def test_output_path_that_cannot_be_a_directory(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "out"):
        result = cli("sweep", config, "-o", out)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "not a directory" in result.stderr.lower()
    assert blocker.read_text() == "x"


def test_unwritable_output_directory(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    def refuse(self: Path, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    out = tmp_path / "locked" / "out"
    result = cli("sweep", write_yaml(tmp_path / "c.yaml", SMALL), "-o", out)
    assert result.exit_code == 2 and not out.exists()
    assert result.stderr == f"error: cannot create output directory {out}: Permission denied\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_read_only_parent_directory(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        result = cli("sweep", write_yaml(tmp_path / "c.yaml", SMALL), "-o", locked / "out")
        assert result.exit_code == 2 and "Permission denied" in result.stderr and result.stderr.count("\n") == 1
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    "failure",
    [OSError(errno.ENOSPC, "No space left on device"), pa.ArrowInvalid("simulated encoder failure")],
    ids=["disk-full", "arrow-error"],
)
def test_cell_write_failing_midway_leaves_no_file(
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
) -> None:
    real_write = pq.ParquetWriter.write_table

    def write_half_then_fail(writer: pq.ParquetWriter, table: pa.Table, **kwargs: Any) -> None:
        real_write(writer, table, **kwargs)
        writer.close()
        data = Path(writer.where).read_bytes()
        Path(writer.where).write_bytes(data[: len(data) // 2])  # a truncated file under the temporary name
        raise failure

    monkeypatch.setattr(pq.ParquetWriter, "write_table", write_half_then_fail)
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    out = tmp_path / "out"
    result = cli("sweep", config, "-o", out, "--quiet", "--workers", "1")
    assert result.exit_code == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: 8 of 8 cells failed:") and str(failure.args[-1]) in error
    assert list((out / "shards").iterdir()) == [] and leftovers(out) == []
    assert len(json.loads((out / "manifest.json").read_text())["failed"]) == 8

    monkeypatch.setattr(pq.ParquetWriter, "write_table", real_write)  # the disk has room again: a rerun finishes
    again = cli("sweep", config, "-o", out, "--quiet", "--workers", "1")
    assert again.exit_code == 0 and "ran 8, skipped 0" in again.stderr


# --- paths and file-system failures, through every command ------------------------------------------

PATH_KINDS = ("missing", "through-file", "symlink-loop", "long-name", "long-path", "nul", "not-utf8", "directory")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished sweep, and beside it a regular file, a symlink loop and a config."""
    from lin2net.sweep.runner import run_sweep

    root = tmp_path_factory.mktemp("paths")
    config = parse_config({**SMALL, "trajectories": 4, "grid": {**SMALL["grid"], "d": 1}})
    run_sweep(config, root / "out")
    (root / "file").write_text("x")
    (root / "loop").symlink_to(root / "loop")
    write_yaml(root / "good.yaml", {**SMALL, "trajectories": 4})
    return root


def bad_path(root: Path, kind: str, tail: str, suffix: str) -> str:
    """A path of the given kind, as the command line passes it (a str; bytes that are not
    UTF-8 arrive as surrogate escapes)."""
    name = (tail or "x") + suffix
    return {
        "missing": str(root / "missing" / name),
        "through-file": str(root / "file" / name),
        "symlink-loop": str(root / "loop" / name),
        "long-name": str(root / ("n" * 256 + suffix)),
        "long-path": str(root / "/".join(["p" * 200] * 25) / name),
        "nul": str(root / f"a\x00{name}"),
        "not-utf8": str(root / f"\udcff{name}"),
        "directory": str(root),
    }[kind]


def command_lines(root: Path, path: str) -> dict[str, list[str]]:
    """Every command, with ``path`` in each place a command takes a path."""
    out, config = str(root / "out"), str(root / "good.yaml")
    return {
        "sweep CONFIG": ["sweep", path, "-o", str(root / "never")],
        "sweep -o": ["sweep", config, "-o", path, "--quiet"],
        "summarize OUT": ["summarize", path],
        "summarize -o": ["summarize", out, "-o", path],
        "check OUT": ["check", path],
        "check -o": ["check", out, "-o", path],
        "plot OUT": ["plot", path],
        "plot -o": ["plot", out, "-o", path],
        "trace OUT": ["trace", path, "--cell", "000000000000"],
        "trace -o": ["trace", "--eta", "0.1", "--lambda0", "1", "-o", path],
        "trace --plot": ["trace", "--eta", "0.1", "--lambda0", "1", "--plot", path],
    }


def assert_one_error_line(result: Any, what: object) -> None:
    assert result.exit_code == 2, (what, result.exit_code, result.output, result.exception)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, (what, result.stderr)
    assert "Traceback" not in result.output, what


SUFFIXES = {"sweep CONFIG": ".yaml", "sweep -o": "", "summarize -o": ".csv", "check -o": ".md", "plot -o": ".png"}
SUFFIXES |= {"trace -o": ".csv", "trace --plot": ".png"}


@settings(FUZZ, max_examples=60)
@given(
    kind=st.sampled_from(PATH_KINDS),
    place=st.sampled_from(sorted(command_lines(Path("/"), "p"))),
    tail=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), max_size=12),
)
def test_bad_paths_exit_2_in_one_line_through_every_command(finished: Path, kind: str, place: str, tail: str) -> None:
    """Missing, through a regular file, in a symlink loop, a name or path too long for the
    file system, a NUL byte, not UTF-8, a directory where a file goes: one line, exit 2,
    before anything runs; nothing written."""
    assume(tail not in ("", ".", "..") and not tail.isspace())
    if kind == "missing":
        assume(place not in ("sweep -o",))  # a missing output directory is created: not an error
    if kind == "directory":
        assume(place not in ("summarize OUT", "check OUT", "plot OUT", "trace OUT", "sweep -o"))
    path = bad_path(finished, kind, tail, SUFFIXES.get(place, ""))
    before = sorted(p.name for p in finished.iterdir())
    result = RUNNER.invoke(app, command_lines(finished, path)[place])
    assert_one_error_line(result, (kind, place, path))
    assert sorted(p.name for p in finished.iterdir()) == before


def test_not_utf8_config_text_and_config_directory(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "latin1.yaml"
    config.write_bytes("name: caf\xe9\n".encode("latin-1"))
    result = cli("sweep", config, "-o", tmp_path / "out")
    assert_one_error_line(result, "latin-1")
    assert "it is not UTF-8 text" in result.stderr and not (tmp_path / "out").exists()
    result = cli("sweep", tmp_path, "-o", tmp_path / "out")
    assert_one_error_line(result, "directory")
    assert "Is a directory" in result.stderr


@pytest.mark.parametrize(
    ("code", "text"), [(errno.EROFS, "Read-only file system"), (errno.ENOSPC, "No space left on device")]
)
@pytest.mark.parametrize("place", ["summarize -o", "check -o", "plot -o", "trace -o", "trace --plot"])
def test_read_only_or_full_file_system_when_writing_a_result(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, text: str, place: str
) -> None:
    """The file is written under a temporary name and renamed: when the file system refuses,
    one line, exit 2, and neither the file nor its temporary name is left."""
    import lin2net.store.outdir

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(code, text)

    monkeypatch.setattr(lin2net.store.outdir.os, "replace", refuse)
    path = tmp_path / f"result{SUFFIXES[place]}"
    result = RUNNER.invoke(app, command_lines(finished, str(path))[place])
    assert_one_error_line(result, place)
    assert text in result.stderr and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "text"), [(errno.EROFS, "Read-only file system"), (errno.ENOSPC, "No space left on device")]
)
def test_read_only_or_full_file_system_for_a_sweep(
    tmp_path: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    text: str,  # type: ignore[no-untyped-def]
) -> None:
    """OUT cannot be created (read-only) or its config cannot be written (full): one line, exit 2."""

    def refuse(self: Path, *args: Any, **kwargs: Any) -> None:
        raise OSError(code, text, str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    out = tmp_path / "out"
    result = cli("sweep", write_yaml(tmp_path / "c.yaml", SMALL), "-o", out, "--quiet")
    assert_one_error_line(result, text)
    assert text in result.stderr and not out.exists()


@pytest.mark.parametrize("target", ["name", "grid.eta", "trajectories", "init.explicit.a", "--set"])
def test_alias_bomb_through_the_command_line(tmp_path: Path, cli, target: str) -> None:  # type: ignore[no-untyped-def]
    """Nine lines of nested aliases (9**9 values) under a known key, or in --set: one line, exit 2."""
    from tests.test_config import BOMB_TARGETS, _alias_bomb

    config, out = tmp_path / "bomb.yaml", tmp_path / "out"
    if target == "--set":
        config.write_text(yaml.safe_dump(SMALL))
        bomb = "{" + _alias_bomb().replace("\n", ", ").rstrip(", ") + ", b: *a8}"
        result = cli("sweep", config, "-o", out, "--set", f"grid.eta={bomb}")
    else:
        config.write_text(_alias_bomb() + BOMB_TARGETS[target])
        result = cli("sweep", config, "-o", out)
    assert_one_error_line(result, target)
    assert "YAML aliases expand to more than 1000000 values" in result.stderr and not out.exists()


def test_entry_point_prints_one_line_errors(tmp_path: Path) -> None:
    """The installed entry point (``python -m lin2net``), not only the in-process runner."""
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "lin2net", "summarize", str(tmp_path), "-f", "xx"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == "error: --format: 'xx' is not one of 'table', 'csv', 'markdown', 'parquet' " + (
        "(see 'lin2net summarize --help')\n"
    )


# ---------------------------------------------------------------- round 3: bounded inputs, environment, tracebacks


def test_duplicate_axis_values_are_found_in_linear_time() -> None:
    """Comparisons grow linearly with the values (``list.count`` per value was
    quadratic: 10^6 values took hours)."""
    from lin2net.sweep.config import _first_duplicate

    compared = [0]

    class Value(float):
        def __eq__(self, other: object) -> bool:
            compared[0] += 1
            return float.__eq__(self, other)  # type: ignore[arg-type]

        __hash__ = float.__hash__

    values = [Value(i) for i in range(20_000)]
    assert _first_duplicate(values) is None and compared[0] <= len(values)
    assert _first_duplicate([*values, Value(7.0), Value(3.0)]) == 3.0
    many = parse_config({**SMALL, "grid": {**SMALL["grid"], "eta": [0.001 * (i + 1) for i in range(100_000)]}})
    assert len(many.axes["eta"]) == 100_000


def test_a_config_too_large_is_refused_by_its_size(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "huge.yaml"
    config.write_text("grid: {eta: [" + "1, " * 2_100_000 + "1], lambda0: [1]}\n")  # 6 MB, no alias anywhere
    result = cli("sweep", config, "-o", tmp_path / "out")
    assert_one_error_line(result, "larger than 4 MB")
    assert "larger than 4 MB" in result.stderr and "alias" not in result.stderr and not (tmp_path / "out").exists()


def test_a_config_of_too_many_values_is_refused_by_their_count(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "many.yaml"
    config.write_text("grid: {eta: [0.1], lambda0: [1]}\nnotes: [" + "1, " * 300_000 + "1]\n")  # 0.9 MB
    result = cli("sweep", config, "-o", tmp_path / "out")
    assert_one_error_line(result, "holds more than 250000 values")
    assert (
        "holds more than 250000 values" in result.stderr
        and "alias" not in result.stderr
        and not (tmp_path / "out").exists()
    )


@pytest.mark.slow
def test_dev_zero_as_a_config_is_refused_at_once(tmp_path: Path) -> None:
    """Reading stops after the size limit: no OOM killer (a 2 GB address-space
    limit turns a read without bound into a MemoryError traceback)."""
    import resource
    import subprocess
    import sys

    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    run = subprocess.run(
        [sys.executable, "-m", "lin2net", "sweep", "/dev/zero", "-o", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, preexec_fn=limit_memory,
    )  # fmt: skip
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "larger than 4 MB" in run.stderr, run.stderr


def test_an_explicit_init_without_phi_takes_the_default_phi(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    config = write_yaml(
        tmp_path / "e.yaml", {"init": {"explicit": {"a": [1, 0.5], "b": [0.2, 0.1]}}, "grid": {"eta": [0.1, 0.5]}}
    )
    assert parse_config(yaml.safe_load(config.read_text())).axes["phi"] == (1.0,)
    planned = cli("sweep", config, "-o", tmp_path / "out", "--dry-run")
    assert planned.exit_code == 0, planned.output
    result = cli("sweep", config, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    from lin2net.store.outdir import read_trajectories

    assert set(read_trajectories(tmp_path / "out", ["phi"]).column("phi").to_pylist()) == {1.0}


def test_a_malformed_scheduler_address_is_one_line(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("distributed")
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    result = cli("sweep", config, "-o", tmp_path / "out", "--scheduler", "tcp://[::1")
    assert_one_error_line(result, "--scheduler")
    assert not (tmp_path / "out").exists()


def test_trace_refuses_what_sweep_refuses_and_names_plot(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    huge = cli("trace", "--eta", "0.1", "--a", "1e200", "--b", "0")
    assert_one_error_line(huge, "--a/--b")
    assert huge.exit_code == 2 and "1e+150" in huge.stderr
    gif = cli("trace", "--eta", "0.1", "--a", "1,2", "--b", "0,1", "--plot", tmp_path / "x.gif")
    assert gif.exit_code == 2 and gif.stderr.startswith("error: --plot: unknown figure format '.gif'")


def test_the_largest_valid_parameters_give_rows_without_warnings(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """η = λ0 = 1e150 is valid: the sweep records what happens (pytest turns
    every warning into an error here)."""
    for integrator in ("compiled", "reduced", "full"):
        config = {"grid": {"eta": [1e150], "lambda0": [1e150]}, "trajectories": 4, "max_steps": 100}
        path = write_yaml(tmp_path / f"{integrator}.yaml", {**config, "integrator": integrator})
        result = cli("sweep", path, "-o", tmp_path / integrator, "-q")
        assert result.exit_code == 0 and "failed 0" in result.stderr, result.output


def _entry_point(*args: str, env: dict[str, str] | None = None, limit: int | None = None) -> Any:
    import resource
    import subprocess
    import sys

    def limit_memory() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "lin2net", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})}, preexec_fn=limit_memory,
    )  # fmt: skip


@pytest.mark.slow
def test_columns_0_still_prints_the_error_line(tmp_path: Path) -> None:
    """rich prints at width COLUMNS: 0 made every line, the error too, vanish."""
    run = _entry_point("sweep", str(tmp_path / "missing.yaml"), env={"COLUMNS": "0"})
    assert run.returncode == 2 and run.stderr == f"error: config file not found: {tmp_path / 'missing.yaml'}\n"
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    done = _entry_point("sweep", str(config), "-o", str(tmp_path / "out"), "-q", env={"COLUMNS": "0"})
    assert done.returncode == 0 and "ran 8" in done.stderr


@pytest.mark.slow
def test_numba_num_threads_0_is_one_line(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    run = _entry_point("sweep", str(config), "-o", str(tmp_path / "out"), "-q", env={"NUMBA_NUM_THREADS": "0"})
    assert run.returncode == 2 and run.stderr.startswith("error: NUMBA_NUM_THREADS:") and run.stderr.count("\n") == 1


@pytest.mark.slow
@pytest.mark.parametrize("limit", [400 << 20, 1536 << 20])
def test_a_low_memory_limit_is_one_line_that_says_so(tmp_path: Path, limit: int) -> None:
    """``ulimit -v``: whatever fails first (an allocation, loading llvmlite) is
    one line that explains itself, never a traceback or a bare 'OSError'."""
    config = write_yaml(tmp_path / "c.yaml", SMALL)
    run = _entry_point("sweep", str(config), "-o", str(tmp_path / "out"), "-q", limit=limit)
    assert "Traceback" not in run.stderr and run.stderr != "error: OSError\n", run.stderr
    if run.returncode != 0:
        assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1, run.stderr
        assert len(run.stderr) > len("error: OSError\n")


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.2, 0.4, 0.7])
def test_ctrl_c_while_starting_is_one_line(tmp_path: Path, delay: float) -> None:
    import signal
    import subprocess
    import sys
    import time

    config = write_yaml(tmp_path / "c.yaml", SMALL)
    process = subprocess.Popen(
        [sys.executable, "-m", "lin2net", "sweep", str(config), "-o", str(tmp_path / "out"), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    if "init_import_site" in stderr:  # Python itself was still starting (a loaded machine): no lin2net code ran yet
        return
    assert "Traceback" not in stderr, stderr
    assert process.returncode in (130, -signal.SIGINT, 0), (process.returncode, stderr)
    if process.returncode == 130:
        assert stderr.startswith("error: ") and stderr.count("\n") == 1 and "interrupted" in stderr
