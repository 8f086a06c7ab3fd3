"""Shared helpers: small configs and an in-process CLI runner; hypothesis profiles."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest
import typer.testing
import yaml
from hypothesis import settings
from typer.testing import CliRunner

from lin2net.cli import app
from lin2net.sweep.config import SweepConfig, parse_config

# Property-based tests draw the same examples on every run by default, so a
# test run (and CI) is reproducible; HYPOTHESIS_PROFILE=explore draws fresh,
# many more examples, to hunt for new failures.
settings.register_profile("reproducible", max_examples=150, derandomize=True, deadline=None, database=None)
settings.register_profile("explore", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))


def pytest_configure(config: pytest.Config) -> None:
    """Fill numba's cache once per run, before any xdist worker starts
    (tests/warm_kernels.py says why); workers (``workerinput``) skip it, and so
    does a run that finds the cache as the last warm-up left it."""
    if hasattr(config, "workerinput") or os.environ.get("LIN2NET_TEST_NO_WARM"):
        return
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    cache = getattr(config, "cache", None)  # None under -p no:cacheprovider: always warm up
    if cache is not None and cache.get(_WARM_KEY, None) == _kernel_inputs(root):
        return
    done = subprocess.run([sys.executable, "-m", "tests.warm_kernels"], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:  # the tests that need the kernels will say what is wrong
        print(f"tests/warm_kernels.py failed:\n{done.stderr}", file=sys.stderr)
    elif cache is not None:
        cache.set(_WARM_KEY, _kernel_inputs(root))


_WARM_KEY = "lin2net/warm_kernels"


def _kernel_inputs(root: Path) -> list[str]:
    """What numba's cache of lin2net's kernels depends on, as a list to compare
    with the last warm-up's: the interpreter, numba and its settings, and the
    size and modification time of every lin2net source file and cache file
    (any edit, or a cache file numba wrote or someone removed, warms up again)."""
    import sys
    from importlib.metadata import version

    files = sorted((*root.glob("lin2net/**/*.py"), *root.glob("lin2net/**/__pycache__/*.nb[ic]")))
    numba_settings = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("NUMBA_"))
    stats = [f"{f.relative_to(root)} {f.stat().st_size} {f.stat().st_mtime_ns}" for f in files]
    return [sys.version, version("numba"), *numba_settings, *stats]


def _command_built_once() -> None:
    """Make typer's ``CliRunner.invoke`` build the click command of an app once.

    typer rebuilds it from the app's function signatures on every ``invoke``
    (it evaluates every annotation: ~20 ms, several seconds over the suite's
    hundreds of in-process commands); lin2net's app does not change during a
    run. The command is what ``lin2net`` itself builds once per process, so
    each ``invoke`` still runs the same command as a fresh process would."""
    build = getattr(typer.testing, "_get_command", None)
    if build is None or hasattr(build, "cache_info"):  # another typer, or already done
        return
    typer.testing._get_command = functools.lru_cache(maxsize=None)(build)  # type: ignore[attr-defined]


_command_built_once()


def make_config(**overrides: Any) -> SweepConfig:
    """A small valid config; keyword arguments replace top-level keys."""
    raw: dict[str, Any] = {
        "name": "test",
        "seed": 7,
        "trajectories": 64,
        "grid": {"eta": [0.05, 0.3], "lambda0": [0.5, 2.0], "phi": 1.0, "d": [1, 4]},
        "loss_tol": 1e-12,
        "max_steps": 5000,
    }
    raw.update(overrides)
    return parse_config(raw)


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


class Cli:
    """``cli(*args)`` runs ``lin2net args`` in-process; ``cli.env(COLUMNS="80")(*args)``
    with extra environment variables."""

    def __init__(self, runner: CliRunner, env: dict[str, str] | None = None) -> None:
        self.runner = runner
        self.extra = env or {}

    def __call__(self, *args: Any) -> Any:
        return self.runner.invoke(app, [a if isinstance(a, str) else str(a) for a in args], env=self.extra)

    def env(self, **variables: str) -> Cli:
        return Cli(self.runner, {**self.extra, **variables})


@pytest.fixture
def cli(runner: CliRunner) -> Cli:
    return Cli(runner)


def trajectories_frame(out: Path) -> Any:
    """Every trajectory of ``out`` as a DataFrame, label columns as plain strings
    (categories differ between outputs that hold different cells)."""
    from lin2net.store.outdir import read_trajectories

    frame = read_trajectories(out).to_pandas()
    for column in frame.columns:
        if frame[column].dtype.name == "category":
            frame[column] = frame[column].astype(str)
    return frame


def plain(table: Any) -> Any:
    """``table`` with dictionary columns decoded to strings and no metadata, for
    comparing tables whose dictionaries were built from different cells."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(index, field.name, table.column(index).cast(pa.string()))
    return table.replace_schema_metadata(None).combine_chunks()
