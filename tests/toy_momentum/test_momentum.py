"""The toy heavy-ball dynamics through the protocol: sweep, summarize, trace."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lin2net.dynamics import registry
from lin2net.dynamics.cells import run_cell
from lin2net.sweep.config import parse_config
from lin2net.sweep.grid import expand_grid
from tests.conftest import trajectories_frame, write_yaml
from tests.toy_momentum import ENTRY

CONFIG: dict[str, Any] = {
    "name": "toy",
    "seed": 4,
    "trajectories": 12,
    "algorithm": "momentum",
    "grid": {"eta": 0.05, "lambda0": [0.5, 2.0], "d": 3, "beta": [0.0, 0.5]},
    "loss_tol": 1e-12,
    "max_steps": 20000,
    "integrator": "reduced",
}
RESULTS = ("status", "steps", "eps_T", "lambda_T", "sharpness_T", "log_q_ratio", "sum_eps2")
RESULTS += ("max_eta_sharpness", "eos_steps", "max_abs_eps")


@pytest.fixture
def momentum() -> Iterator[None]:
    registry.register(ENTRY)  # the toy's one registry line
    yield
    registry.unregister(ENTRY.name)


def test_a_dynamics_unknown_to_the_registry_is_refused(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("sweep", write_yaml(tmp_path / "toy.yaml", CONFIG), "-o", tmp_path / "out")
    assert result.exit_code == 2 and "algorithm" in result.output


def test_without_momentum_the_toy_is_gd_on_the_vectors_bit_for_bit(momentum: None) -> None:
    toy = parse_config(CONFIG)
    gd_raw = {**CONFIG, "algorithm": "gd", "integrator": "full"}
    gd_raw["grid"] = {k: v for k, v in CONFIG["grid"].items() if k != "beta"}
    gd = parse_config(gd_raw)
    toy_cells = [cell for cell in expand_grid(toy) if cell.value("beta") == 0.0]
    for toy_cell, gd_cell in zip(toy_cells, expand_grid(gd), strict=True):
        assert toy_cell.lambda0 == gd_cell.lambda0 and toy_cell.cell_id != gd_cell.cell_id
        ours, theirs = run_cell(toy, toy_cell), run_cell(gd, gd_cell)
        for column in RESULTS:
            assert ours.column(column).equals(theirs.column(column)), column


def test_the_toy_runs_through_sweep_summarize_and_trace(momentum: None, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    result = cli("sweep", write_yaml(tmp_path / "toy.yaml", CONFIG), "-o", out, "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    rows = trajectories_frame(out)
    assert len(rows) == 4 * 12 and set(rows["beta"]) == {0.0, 0.5}
    assert (rows["status"] == "converged").all()
    # Momentum 0.5 speeds the slow convergence up (about 1/(1 − β) = 2 times fewer steps).
    steps = rows.groupby("beta")["steps"].median()
    assert steps[0.5] < 0.75 * steps[0.0]

    summary = cli("summarize", out, "--format", "csv")
    assert summary.exit_code == 0, summary.output
    table = pd.read_csv(io.StringIO(summary.stdout))
    assert len(table) == 4 and (table["frac_converged"] == 1.0).all()
    assert sorted(table["beta"]) == [0.0, 0.0, 0.5, 0.5]
    by_beta = cli("summarize", out, "--by", "beta", "--format", "csv")
    assert by_beta.exit_code == 0, by_beta.output
    assert len(pd.read_csv(io.StringIO(by_beta.stdout))) == 2

    row = rows[(rows["beta"] == 0.5) & (rows["lambda0"] == 2.0) & (rows["trajectory"] == 5)].iloc[0]
    path = tmp_path / "trace.csv"
    traced = cli("trace", out, "--cell", row["cell_id"], "--trajectory", "5", "-o", path)
    assert traced.exit_code == 0, traced.output
    trace = pd.read_csv(path)
    last = trace.iloc[-1]
    assert last["t"] == row["steps"] and len(trace) == row["steps"] + 1
    # The trace is the driver's every-step mode: it ends on the sweep's row (CSV keeps 17 digits).
    assert np.float64(last["eps"]) == row["eps_T"] and np.float64(last["lambda"]) == row["lambda_T"]
    assert np.float64(last["log_q_ratio"]) == row["log_q_ratio"]
