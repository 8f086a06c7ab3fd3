"""`lin2net check`: Theorem 1's bounds against sweeps, including a sweep built to break one."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from lin2net.analysis.check import check_sweep, check_table
from lin2net.analysis.trace import sweep_initialization, trace_trajectory
from lin2net.cli import app
from lin2net.dynamics.cells import run_cell
from lin2net.dynamics.gd.reference import StopRule
from lin2net.store.outdir import read_trajectories
from lin2net.sweep.config import parse_config
from lin2net.sweep.grid import expand_grid
from lin2net.sweep.runner import run_sweep
from lin2net.theory import theorems
from tests.conftest import trajectories_frame

runner = CliRunner()


def _find_lower_bound_violation() -> tuple[float, float, float]:
    """Search (η, λ0) inside Theorem 1's step-size regime for the cell where the
    lower bound exp(−√η ε0²/Φ) < Q(T)/Q(0) is broken the most; returns (η, λ0, margin)."""
    config = parse_config(
        {
            "name": "search",
            "trajectories": 60,
            "grid": {"eta": [0.02, 0.05, 0.1, 0.2, 0.3, 0.45], "lambda0": {"geomspace": [0.01, 1.0, 7]}, "d": 1},
        }
    )
    best = (0.0, 0.0, np.inf)
    for cell in expand_grid(config):
        row = check_table(run_cell(config, cell))
        if row["in_regime"] and row["lower_worst_margin"] < best[2]:
            best = (cell.eta, cell.lambda0, row["lower_worst_margin"])
    return best


@pytest.fixture(scope="module")
def violating_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float]:
    eta, lambda0, margin = _find_lower_bound_violation()
    assert margin < -1e-3, "the search should find a clear violation of the lower bound"
    out = tmp_path_factory.mktemp("violation") / "out"
    config = parse_config(
        {
            "name": "violation",
            "trajectories": 60,
            "grid": {"eta": [0.01, eta], "lambda0": sorted({lambda0, 4.0}), "d": 1},
        }
    )
    run_sweep(config, out)
    return out, eta, lambda0


def test_check_reports_the_violation(violating_sweep: tuple[Path, float, float]) -> None:
    out, eta, lambda0 = violating_sweep
    report = check_sweep(out)
    lower = report.totals["lower"]
    assert lower["fails"] > 0
    assert lower["worst_eta"] == eta and lower["worst_lambda0"] == lambda0
    failing = report.failing("lower")
    assert (failing["lower_worst_margin"] < 0).all()
    assert ((failing["eta"] == eta) & (failing["lambda0"] == lambda0)).any()
    # The small-step, large-scale cell keeps the bound.
    benign = report.cells[(report.cells["eta"] == 0.01) & (report.cells["lambda0"] == 4.0)].iloc[0]
    assert benign["in_regime"] == 60 and benign["lower_fails"] == 0
    assert any("lower bound" in line and "FAILS" in line for line in report.sentences())


def test_violation_is_in_the_vectors_not_an_artifact(violating_sweep: tuple[Path, float, float]) -> None:
    """The same cell stepped as vectors (integrator: full) breaks the bound by the same margin."""
    _, eta, lambda0 = violating_sweep
    raw = {"name": "v", "trajectories": 60, "grid": {"eta": eta, "lambda0": lambda0, "d": 1}}
    reduced, full = (parse_config({**raw, "integrator": kind}) for kind in ("reduced", "full"))
    cell = expand_grid(reduced)[0]
    rows = [check_table(run_cell(config, cell)) for config in (reduced, full)]
    assert rows[0]["lower_fails"] == rows[1]["lower_fails"] > 0
    assert rows[1]["lower_worst_margin"] == pytest.approx(rows[0]["lower_worst_margin"], rel=1e-6)


def test_upper_bound_holds_where_eta_max_eps_below_one(tmp_path: Path) -> None:
    config = parse_config(
        {"name": "ok", "trajectories": 50, "grid": {"eta": [0.01, 0.1], "lambda0": [0.5, 2.0], "d": [1, 5]}}
    )
    run_sweep(config, tmp_path / "out")
    report = check_sweep(tmp_path / "out")
    assert report.totals["upper"]["fails"] == 0
    assert report.totals["upper"]["in_regime"] == report.cells["in_regime"].sum() > 300
    assert any("upper bound" in line and "holds for all" in line for line in report.sentences())


def test_check_counts_match_a_direct_computation(violating_sweep: tuple[Path, float, float]) -> None:
    out, _, _ = violating_sweep
    frame = trajectories_frame(out)
    in_regime = frame["thm1_regime"] & (frame["status"] == "converged")
    log_lower = np.log(frame["thm1_lower"])
    fails = in_regime & (frame["log_q_ratio"] < log_lower - theorems.rounding_tolerance(frame["steps"], log_lower))
    report = check_sweep(out)
    assert report.totals["lower"]["in_regime"] == in_regime.sum()
    assert report.totals["lower"]["fails"] == fails.sum()


def test_cli_check_table_and_exports(violating_sweep: tuple[Path, float, float], tmp_path: Path) -> None:
    out, _, _ = violating_sweep
    result = runner.invoke(app, ["check", str(out)])
    assert result.exit_code == 0, result.output
    assert "FAILS" in result.output and "lower" in result.output
    # the terminal tables carry check's own columns (not the summary's)
    for header in ("in_regime", "holds", "fails", "passing"):
        assert header in result.output, header
    csv_path = tmp_path / "check.csv"
    result = runner.invoke(app, ["check", str(out), "-o", str(csv_path)])
    assert result.exit_code == 0, result.output
    exported = pd.read_csv(csv_path)
    total = exported[exported["cell_id"] == "ALL"].iloc[0]
    report = check_sweep(out)
    assert total["lower_fails"] == report.totals["lower"]["fails"] > 0
    assert len(exported) == len(report.cells) + 1
    md = tmp_path / "check.md"
    assert runner.invoke(app, ["check", str(out), "--format", "markdown", "-o", str(md)]).exit_code == 0
    assert md.read_text().startswith("| cell_id |")
    result = runner.invoke(app, ["check", str(out), "--format", "csv"])
    assert result.exit_code == 0
    assert pd.read_csv(io.StringIO(result.stdout)).shape[0] == len(report.cells) + 1


def test_cli_check_errors_are_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and result.output.startswith("error:")
    result = runner.invoke(app, ["check", str(tmp_path), "--format", "table", "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    empty = tmp_path / "empty"
    run_sweep(parse_config({"grid": {"eta": 0.1, "lambda0": 1.0}, "trajectories": 2}), empty)
    for shard in (empty / "shards").iterdir():
        shard.unlink()
    result = runner.invoke(app, ["check", str(empty)])
    assert result.exit_code == 2 and "no finished cells" in result.output


def test_check_table_handles_empty_regime() -> None:
    table = pa.table(
        {
            "cell_id": ["x"],
            "eta": [5.0],
            "lambda0": [1.0],
            "phi": [1.0],
            "d": [1],
            "eps0": [-1.0],
            "lambda_init": [1.0],
            "status": ["diverged"],
            "steps": [3],
            "sum_eps2": [np.inf],
            "log_q_ratio": [np.inf],
            "sharpness_T": [np.inf],
        }
    )
    row = check_table(table)
    assert row["in_regime"] == 0 and row["lower_fails"] == 0 and np.isnan(row["lower_worst_margin"])
    assert row["slow"] == 0 and row["linear"] == 0


def test_theorem2_outcomes_past_one_over_phi(tmp_path: Path) -> None:
    """η = 1.5 > 1/Φ: every minimum has η·λ ≥ 2Φη = 3, so none is stable. Trajectories in
    Theorem 2's second ('converges, possibly slowly') regime diverge or only pass through
    small loss; check tallies them, and the passing ones really leave the minimum again."""
    config = parse_config(
        {"name": "t2", "trajectories": 200, "grid": {"eta": [0.05, 1.5], "lambda0": 1.0, "d": 1}, "max_steps": 20000}
    )
    run_sweep(config, tmp_path / "out")
    report = check_sweep(tmp_path / "out")
    table = report.theorem2().set_index("regime")
    assert table.loc["linear", "converged"] == table.loc["linear", "trajectories"] > 100
    slow = table.loc["slow"]
    assert slow["diverged"] > 0 and slow["passing"] > 0 and slow["converged"] == 0
    assert slow[["converged", "passing", "diverged", "max_steps"]].sum() == slow["trajectories"]
    assert any("contradicts" in line for line in report.theorem2_sentences())
    # A passing trajectory: traced on past T (with a tolerance it cannot meet), its loss grows again.
    frame = trajectories_frame(tmp_path / "out")
    passing = frame[(frame["eta"] == 1.5) & (frame["status"] == "converged")].iloc[0]
    assert passing["eta"] * passing["sharpness_T"] >= 2
    start = sweep_initialization(
        eta=1.5, lambda0=1.0, phi=1.0, d=1, seed=0, init="sphere", trajectory=int(passing["trajectory"])
    )
    later = trace_trajectory(start, 1.5, StopRule(1e-300, int(passing["steps"]) + 100)).table
    assert later["loss"].iloc[int(passing["steps"])] <= 1e-10
    assert later["loss"].iloc[int(passing["steps"]) :].max() > 1e-3


@pytest.mark.parametrize("columns", ["80", "200"])
def test_check_tables_fit_the_terminal_with_whole_ids(violating_sweep: tuple[Path, float, float], columns: str) -> None:
    out, _, _ = violating_sweep
    result = runner.invoke(app, ["check", str(out)], env={"COLUMNS": columns})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= int(columns)
    header = next(line for line in lines if line.startswith("┃ cell_id"))
    assert "worst_margin" in header and "fails" in header
    ids = set(read_trajectories(out, ["cell_id"]).to_pandas()["cell_id"])
    rows = [line.strip("│ ").split("│")[0].strip() for line in lines if line.startswith("│")]
    assert any(row in ids for row in rows)  # ids are never split across lines
    assert ("not shown for lack of width" in result.stdout) == (columns == "80")


def test_check_of_all_cells_at_once_equals_the_per_cell_reference(
    violating_sweep: tuple[Path, float, float], tmp_path: Path
) -> None:
    """check_sweep reduces (cells, trajectories) arrays; check_table one cell's table at a time."""
    from lin2net.analysis.check import CHECK_COLUMNS, cell_tables, summarize_checks

    mixed = tmp_path / "mixed"
    config = {"trajectories": 30, "grid": {"eta": [0.05, 0.6, 1.4], "lambda0": [0.5, 3.0], "d": [1, 3]}}
    run_sweep(parse_config({**config, "max_steps": 300}), mixed, shard_rows=90)  # several shard files
    for out in (violating_sweep[0], mixed):
        reference = summarize_checks(check_table(t) for t in cell_tables(read_trajectories(out, CHECK_COLUMNS)))
        report = check_sweep(out)
        pd.testing.assert_frame_equal(report.cells, reference.cells)
        assert report.totals == reference.totals
