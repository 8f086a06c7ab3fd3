"""The Python API (lin2net.run, lin2net.open, lin2net.trace): the same numbers as the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose
from typer.testing import CliRunner

import lin2net
from lin2net.analysis.summary import summarize
from lin2net.cli import app
from lin2net.errors import ConfigError, OutputError
from lin2net.store.outdir import read_trajectories

CONFIG = {
    "name": "api",
    "trajectories": 30,
    "grid": {"eta": [0.05, 0.3, 1.2], "lambda0": [0.5, 3.0], "phi": 1.0, "d": [2, 6]},
    "max_steps": 3000,
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("api") / "out"
    result = lin2net.run(CONFIG, out)
    assert isinstance(result, lin2net.Output)
    return out


def _sorted(table: object) -> object:
    frame = table.to_pandas()  # type: ignore[attr-defined]
    return frame.sort_values(["cell_id", "trajectory"]).reset_index(drop=True)


def test_run_in_memory_returns_the_rows_a_sweep_writes(swept: Path, tmp_path: Path) -> None:
    table = lin2net.run(CONFIG)
    assert not isinstance(table, lin2net.Output)
    memory, disk = _sorted(table), _sorted(read_trajectories(swept))
    assert memory.equals(disk)  # type: ignore[attr-defined]
    assert not list(tmp_path.iterdir())  # nothing left behind where we look


def test_open_verifies_and_reads(swept: Path, tmp_path: Path) -> None:
    out = lin2net.open(swept)
    assert out.axes["eta"] == [0.05, 0.3, 1.2]
    assert out.trajectories().num_rows == 3 * 2 * 2 * 30
    part = out.trajectories(columns=["eta", "q_ratio"], where="d = 6 and eta < 1")
    assert part.column_names == ["eta", "q_ratio"] and part.num_rows == 2 * 2 * 30
    assert len(out.to_pandas(where="d = 2")) == 3 * 2 * 30
    with pytest.raises(OutputError):
        lin2net.open(tmp_path / "missing")
    with pytest.raises(ConfigError, match="did you mean 'lambda0'"):
        out.trajectories(where="lamda0 > 1")


def test_summary_is_the_cli_summary(swept: Path) -> None:
    out = lin2net.open(swept)
    assert out.summary().equals(summarize(swept))
    assert out.summary(by="eta", where="d = 2").equals(summarize(swept, by=["eta"], where="d = 2"))


def test_to_xarray_labels_the_grid_axes(swept: Path) -> None:
    pytest.importorskip("xarray")
    out = lin2net.open(swept)
    array = out.to_xarray("q_ratio", "median")
    assert array.dims == ("eta", "lambda0", "d") and array.shape == (3, 2, 2)
    assert float(array.coords["phi"]) == 1.0
    frame = out.to_pandas()
    for eta in (0.05, 0.3):
        for d in (2, 6):
            group = frame[(frame.eta == eta) & (frame.lambda0 == 3.0) & (frame.d == d)]
            converged = group[group.status == "converged"]
            assert_allclose(float(array.sel(eta=eta, lambda0=3.0, d=d)), np.median(converged.q_ratio), rtol=1e-12)
            assert float(array.frac_converged.sel(eta=eta, lambda0=3.0, d=d)) == (group.status == "converged").mean()
    derived = out.to_xarray("eta * sharpness_T", "median", where="d = 2")
    assert derived.dims == ("eta", "lambda0") and float(derived.coords["d"]) == 2
    line = array.sel(d=6, lambda0=0.5)
    assert line.dims == ("eta",)


def test_plot_returns_a_figure_and_writes_it(swept: Path, tmp_path: Path) -> None:
    out = lin2net.open(swept)
    figure = out.plot()
    assert "trajectories per cell" in figure.get_suptitle()
    path = tmp_path / "line.png"
    figure = out.plot(kind="line", value="sharpness_T", hue="d", path=path)
    assert path.stat().st_size > 10_000 and figure.axes
    with pytest.raises(ConfigError, match="unknown kind"):
        out.plot(kind="pie")


def test_trace_is_the_cli_trace(tmp_path: Path) -> None:
    traced = lin2net.trace(eta=0.5, lambda0=3.0, d=10, trajectory=2)
    table = tmp_path / "t.csv"
    args = ["trace", "--eta", "0.5", "--lambda0", "3", "--d", "10", "--trajectory", "2", "-o", str(table)]
    assert CliRunner().invoke(app, args).exit_code == 0
    import pandas as pd

    cli = pd.read_csv(table)
    assert len(cli) == len(traced.table) and traced.status.label == "converged"
    assert_allclose(cli["q_ratio"].to_numpy(), traced.table["q_ratio"].to_numpy(), rtol=1e-15)
    explicit = lin2net.trace(eta=0.2, a=[1.0, 2.0], b=[0.5, 0.1])
    assert explicit.steps > 0
    with pytest.raises(ConfigError, match="give both a and b"):
        lin2net.trace(eta=0.2, a=[1.0])
