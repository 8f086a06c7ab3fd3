"""`lin2net trace`: per-step values against hand computation, the sweep, and the files written."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from typer.testing import CliRunner

from lin2net.analysis.trace import start_from_vectors, sweep_initialization, trace_trajectory
from lin2net.cli import app
from lin2net.dynamics.cells import run_cell
from lin2net.dynamics.gd.reference import StopRule
from lin2net.store.outdir import read_trajectories
from lin2net.sweep.config import parse_config
from lin2net.sweep.grid import expand_grid
from lin2net.theory.closed_forms import full_hessian
from lin2net.theory.gradient_flow import GradientFlow

runner = CliRunner()
COLUMNS = [
    "t", "eps", "lambda", "loss", "q_ratio", "log_q_ratio", "sharpness", "eta_sharpness",
    "gf_eps", "gf_lambda", "gf_loss", "gf_sharpness",
]  # fmt: skip


def test_first_steps_against_hand_computation() -> None:
    """a = 1, b = 0.5, Φ = 1, η = 0.1 (d = 1).

    t = 0: ε = 0.5 − 1 = −0.5, λ = 1 + 0.25 = 1.25, loss = 0.125,
           S = (1.25 + √(1.5625 − 2 + 1))/2 = (1.25 + 0.75)/2 = 1.
    t = 1: a = 1 + 0.05·0.5 = 1.025, b = 0.5 + 0.05·1 = 0.55, so ε = 0.56375 − 1 = −0.43625,
           λ = 1.050625 + 0.3025 = 1.353125, Q(1)/Q(0) = |1 − 0.01·0.25| = 0.9975.
    """
    trace = trace_trajectory(start_from_vectors(np.array([1.0]), np.array([0.5]), 1.0), 0.1, StopRule(1e-10, 10_000))
    table = trace.table
    assert list(table.columns) == COLUMNS
    first = table.iloc[0]
    assert (first["t"], first["eps"], first["lambda"], first["loss"], first["q_ratio"]) == (0, -0.5, 1.25, 0.125, 1.0)
    assert first["sharpness"] == pytest.approx(1.0, rel=1e-15)
    assert first["eta_sharpness"] == pytest.approx(0.1, rel=1e-15)
    second = table.iloc[1]
    assert second["eps"] == pytest.approx(-0.43625, rel=1e-14)
    assert second["lambda"] == pytest.approx(1.353125, rel=1e-14)
    assert second["q_ratio"] == pytest.approx(0.9975, rel=1e-14)
    # Further steps against the vector update a ← a − ηεb, b ← b − ηεa and the exact Hessian.
    a, b = np.array([1.0]), np.array([0.5])
    for t in range(6):
        row = table.iloc[t]
        eps = float(a @ b) - 1.0
        assert row["eps"] == pytest.approx(eps, rel=1e-12)
        assert row["lambda"] == pytest.approx(float(a @ a + b @ b), rel=1e-13)
        assert row["q_ratio"] == pytest.approx(abs(a[0] ** 2 - b[0] ** 2) / 0.75, rel=1e-13)
        assert row["sharpness"] == pytest.approx(np.linalg.eigvalsh(full_hessian(a, b, 1.0))[-1], rel=1e-12)
        a, b = a - 0.1 * eps * b, b - 0.1 * eps * a
    assert trace.status.label == "converged"
    assert table["loss"].iloc[-1] <= 1e-10 < table["loss"].iloc[-2]
    assert trace.steps == len(table) - 1


def test_gradient_flow_columns() -> None:
    start = start_from_vectors(np.array([1.0, -0.3]), np.array([0.2, 0.4]), 1.0)
    trace = trace_trajectory(start, 0.2, StopRule(1e-10, 10_000))
    table = trace.table
    assert table["gf_lambda"].iloc[0] == pytest.approx(start.lam0, rel=1e-14)
    eps, lam = GradientFlow.from_vectors(start.a, start.b, 1.0).at(0.2 * table["t"].to_numpy())
    assert_allclose(table["gf_eps"], eps, rtol=1e-15)
    assert_allclose(table["gf_lambda"], lam, rtol=1e-15)
    # Along GF the loss never increases (dL/dt = −λε²) and λ approaches λ_GF.
    assert np.all(np.diff(table["gf_loss"]) <= 0)
    gap = np.abs(table["gf_lambda"] - trace.lambda_gf).to_numpy()
    assert gap[-1] < 1e-2 * gap[0]


@pytest.mark.parametrize("init", ["sphere", "gaussian"])
def test_trace_reproduces_sweep_rows(init: str) -> None:
    grid = {"eta": [0.05, 0.7], "lambda0": 2.0, "phi": 1.0, "d": 6}
    raw = {"name": "s", "seed": 11, "trajectories": 25, "grid": grid, "init": init}
    config = parse_config(raw)
    for cell in expand_grid(config):
        rows = run_cell(config, cell).to_pandas()
        for k in (0, 7, 24):
            start = sweep_initialization(eta=cell.eta, lambda0=2.0, phi=1.0, d=6, seed=11, init=init, trajectory=k)
            trace = trace_trajectory(start, cell.eta, StopRule(config.loss_tol, config.max_steps))
            row = rows.iloc[k]
            assert trace.status.label == row["status"] and trace.steps == row["steps"]
            assert trace.table["eps"].iloc[-1] == row["eps_T"]
            assert trace.table["lambda"].iloc[-1] == row["lambda_T"]
            assert trace.table["log_q_ratio"].iloc[-1] == pytest.approx(row["log_q_ratio"], rel=1e-12, abs=1e-15)
            assert start.eps0 == row["eps0"] and start.q0 == row["q0"] and start.lam0 == row["lambda_init"]


def test_divergent_trace_stops() -> None:
    start = start_from_vectors(np.array([2.0]), np.array([1.0]), 1.0)
    trace = trace_trajectory(start, 1.5, StopRule(1e-10, 1000))
    assert trace.status.label == "diverged"
    last = trace.table.iloc[-1]
    assert not (abs(last["eps"]) <= 1e30 and abs(last["lambda"]) <= 1e30)


def test_cli_writes_table_and_plot(tmp_path: Path) -> None:
    csv, parquet, png = tmp_path / "t.csv", tmp_path / "t.parquet", tmp_path / "t.png"
    args = ["trace", "--eta", "0.1", "--a", "1", "--b", "0.5", "--phi", "1"]
    result = runner.invoke(app, [*args, "-o", str(csv), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "converged at T =" in result.output
    table = pd.read_csv(csv)
    assert list(table.columns) == COLUMNS
    assert table["eps"].iloc[1] == pytest.approx(-0.43625, rel=1e-14)
    assert runner.invoke(app, [*args, "-o", str(parquet)]).exit_code == 0
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), table, check_exact=False, rtol=1e-15)
    image = np.asarray(matplotlib.image.imread(png))
    assert image.shape[:2] == (round(9.0 * 120), round(7.5 * 120))
    rgb = image[..., :3]
    assert (rgb.min(axis=2) < 0.9).mean() > 0.02 and rgb.std() > 0.05


def test_cli_random_init_with_limits(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    args = ["trace", "--eta", "0.9", "--lambda0", "0.05", "--d", "3", "--seed", "2", "--trajectory", "4"]
    result = runner.invoke(app, [*args, "--max-steps", "7", "--loss-tol", "1e-12", "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) == 8 and "max_steps at T = 7" in result.output


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--a", "1,2"], "--a/--b"),
        (["--a", "1,2", "--b", "1"], "--a/--b"),
        (["--a", "1", "--b", "x"], "--b"),
        (["--a", "1", "--b", "2", "--lambda0", "3"], "--lambda0"),
        ([], "--lambda0"),
        (["--lambda0", "1", "-o", "t.txt"], "--output"),
        (["--lambda0", "1", "--plot", "t.gif"], "--plot"),
        (["--lambda0", "1", "--init", "uniform"], "--init"),
        (["--lambda0", "-1"], "--lambda0"),
        (["--lambda0", "1", "--d", "0"], "--d"),
        (["--lambda0", "1", "--seed", "-2"], "--seed"),
        (["--lambda0", "1", "--phi", "nan"], "--phi"),
        (["--lambda0", "1", "--max-steps", "0"], "--max-steps"),
        (["--lambda0", "1", "--max-steps", "100000000000"], "--max-steps: must be > 0 and at most 10000000"),
    ],
)
def test_cli_bad_options_exit_2_with_one_line(args: list[str], key: str) -> None:
    result = runner.invoke(app, ["trace", "--eta", "0.1", *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {key}") and result.output.strip().count("\n") == 0


@pytest.mark.parametrize("eta", ["0", "-0.5", "nan", "inf"])
@pytest.mark.parametrize("start", [["--lambda0", "1"], ["--a", "1", "--b", "0.5"]])
def test_cli_bad_eta_is_named_as_the_option(eta: str, start: list[str]) -> None:
    result = runner.invoke(app, ["trace", "--eta", eta, *start])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: --eta: must be a finite number > 0") and result.output.count("\n") == 1


def test_every_new_command_has_help_with_an_example() -> None:
    for command in ("check", "plot", "trace"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0
        assert "Example: lin2net " + command in result.output


@pytest.fixture(scope="module")
def traced_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep with stable, edge-of-stability and diverging cells (compiled integrator, as by default)."""
    from lin2net.sweep.runner import run_sweep

    out = tmp_path_factory.mktemp("trace") / "out"
    config = parse_config(
        {"name": "t", "seed": 5, "trajectories": 12, "grid": {"eta": [0.1, 0.9, 2.5], "lambda0": [0.5, 2.0], "d": 3}}
    )
    run_sweep(config, out)
    return out


def test_trace_cell_ends_on_the_sweep_row(traced_sweep: Path, tmp_path: Path) -> None:
    """trace OUT --cell ID --trajectory K re-simulates that trajectory with the sweep's own
    parameters: its last row is the sweep's row for it."""
    frame = read_trajectories(traced_sweep).to_pandas()
    statuses = set()
    for cell_id, cell in frame.groupby("cell_id"):
        for k in (0, 5, 11):
            row = cell[cell["trajectory"] == k].iloc[0]
            path = tmp_path / f"{cell_id}-{k}.parquet"
            result = runner.invoke(
                app, ["trace", str(traced_sweep), "--cell", cell_id, "--trajectory", str(k), "-o", str(path)]
            )
            assert result.exit_code == 0, result.output
            assert f"{row['status']} at T = {row['steps']}:" in result.output
            last = pd.read_parquet(path).iloc[-1]
            assert last["t"] == row["steps"]
            assert last["lambda"] == pytest.approx(row["lambda_T"], rel=1e-13)
            assert last["eps"] == pytest.approx(row["eps_T"], rel=1e-13, abs=1e-300)
            assert last["log_q_ratio"] == pytest.approx(row["log_q_ratio"], rel=1e-12, abs=1e-15)
            statuses.add(row["status"])
    assert statuses >= {"converged", "diverged"}


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--cell", "000000000000"], "error: --cell: no cell '000000000000' in the grid of"),
        (["--cell", "ID", "--trajectory", "12"], "error: --trajectory: must be in 0 .. 11"),
        (["--cell", "ID", "--eta", "0.1"], "error: --eta: not used with OUT --cell"),
        (["--cell", "ID", "--seed", "3"], "error: --seed: not used with OUT --cell"),
        ([], "error: --cell: give OUT and --cell CELL_ID together"),
    ],
)
def test_trace_cell_errors_are_one_line(traced_sweep: Path, args: list[str], start: str) -> None:
    cell_id = read_trajectories(traced_sweep, ["cell_id"]).to_pandas()["cell_id"].iloc[0]
    args = [cell_id if a == "ID" else a for a in args]
    result = runner.invoke(app, ["trace", str(traced_sweep), *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(start) and result.output.count("\n") == 1, result.output
    if "no cell" in start:
        assert "lin2net cells" in result.output


def test_diverging_trace_is_drawn_on_log_axes() -> None:
    """A diverging run spans tens of decades: sharpness and Q(t)/Q(0) go on log axes
    (linear, they would be flat lines under an offset of 1e60); a converging one stays linear."""
    from lin2net.analysis.plotting import draw_trace

    diverging = trace_trajectory(start_from_vectors(np.array([2.0]), np.array([1.0]), 1.0), 1.5, StopRule(1e-10, 1000))
    assert diverging.table["sharpness"].max() > 1e20
    scales = [ax.get_yscale() for ax in draw_trace(diverging).axes[:3]]
    assert scales == ["log", "log", "log"]
    stable = trace_trajectory(start_from_vectors(np.array([1.0]), np.array([0.5]), 1.0), 0.1, StopRule(1e-10, 1000))
    assert [ax.get_yscale() for ax in draw_trace(stable).axes[:3]] == ["log", "linear", "linear"]


# ---- trace figures (issue 18 §1) ----


def test_trace_figure_axes_follow_the_run_not_the_flow() -> None:
    """The gradient-flow overlay does not set the loss axis (the flow's loss falls to 1e-300),
    and 2/η far above S(t) is not drawn (it would flatten S(t)); its value goes to the legend."""
    from lin2net.analysis.plotting import draw_trace

    stable = trace_trajectory(start_from_vectors(np.array([1.0]), np.array([0.5]), 1.0), 0.1, StopRule(1e-10, 1000))
    figure = draw_trace(stable)
    ax_loss, ax_sharp, _ = figure.axes[:3]
    loss = stable.table["loss"].to_numpy()
    low, high = ax_loss.get_ylim()
    assert low >= loss[loss > 0].min() / 10 and high <= loss.max() * 10
    s_low, s_high = ax_sharp.get_ylim()
    sharp = stable.table["sharpness"].to_numpy()
    assert s_high < 2 / 0.1  # 2/η = 20 is far above S(t) ≈ 2: not in view
    assert s_high - s_low < 2 * (sharp.max() - sharp.min()) + 1
    labels = [t.get_text() for t in ax_sharp.get_legend().get_texts()]
    assert "2/η = 20 (off scale)" in labels


def test_trace_title_states_every_parameter_and_the_trajectory(tmp_path: Path) -> None:
    from lin2net.analysis.plotting import trace_title

    args = ["trace", "--eta", "0.3", "--lambda0", "2", "--d", "4", "--trajectory", "0,2", "--plot"]
    result = runner.invoke(app, [*args, str(tmp_path / "t.png")])
    assert result.exit_code == 0, result.output
    assert result.output.count("trajectory ") == 2
    runs = [(0, trace_trajectory(start_from_vectors(np.array([1.0]), np.array([0.5]), 1.0), 0.1, StopRule(1e-10, 99)))]
    title = trace_title(runs, {"algorithm": "SGD", "η": 0.1, "λ(0)": 1.0, "B": 4, "σ": 0.1, "seed": 0})
    assert title.startswith("SGD trace, trajectory 0\n") and "B = 4, σ = 0.1" in title


def test_sgd_trace_from_cli_parameters_equals_the_sweep_row(tmp_path: Path) -> None:
    """An SGD trace from --eta --lambda0 --d --batch-size --label-noise ends on the row the
    one-cell sweep with the same parameters writes."""
    from lin2net.sweep.config import parse_config
    from lin2net.sweep.runner import run_sweep

    raw = {
        "name": "s",
        "algorithm": "sgd",
        "trajectories": 3,
        "grid": {"eta": 0.2, "lambda0": 1.0, "phi": 1.0, "d": 4, "batch_size": 4, "label_noise": 0.0},
        "data": {"n": 100},
        "max_steps": 2000,
    }
    out = tmp_path / "out"
    run_sweep(parse_config(raw), out)
    row = read_trajectories(out).to_pandas().sort_values("trajectory").iloc[2]
    table = tmp_path / "t.csv"
    args = ["trace", "--eta", "0.2", "--lambda0", "1", "--d", "4", "--batch-size", "4", "--max-steps", "2000"]
    result = runner.invoke(app, [*args, "--trajectory", "2", "-o", str(table), "--plot", str(tmp_path / "t.png")])
    assert result.exit_code == 0, result.output
    last = pd.read_csv(table).iloc[-1]
    assert int(last["t"]) == row["steps"]
    assert last["q_ratio"] == pytest.approx(row["q_ratio"], rel=1e-12)


def test_sgd_only_options_need_batch_size() -> None:
    result = runner.invoke(app, ["trace", "--eta", "0.2", "--lambda0", "1", "--label-noise", "0.1"])
    assert result.exit_code == 2 and result.output.startswith("error: --label-noise: an SGD parameter")


def test_cells_lists_ids_that_trace_accepts(traced_sweep: Path) -> None:
    result = runner.invoke(app, ["cells", str(traced_sweep), "--format", "csv", "--where", "eta > 0"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("cell_id,")
    cell_id = lines[1].split(",")[0]
    result = runner.invoke(app, ["trace", str(traced_sweep), "--cell", cell_id, "--trajectory", "0,1"])
    assert result.exit_code == 0, result.output


def test_a_missing_out_does_not_exist(tmp_path: Path) -> None:
    for command in ("summarize", "check", "plot", "cells"):
        result = runner.invoke(app, [command, str(tmp_path / "nope")])
        assert result.exit_code == 2 and result.output.strip().endswith("nope does not exist"), result.output
