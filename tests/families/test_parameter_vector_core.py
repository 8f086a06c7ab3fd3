"""The generic dynamics on θ (lin2net/dynamics/parameter_vector.py): sharpness by
eigvalsh and by warm-started Lanczos, the GD step, measured Q, mini-batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lin2net.dynamics.deep.model import DeepModel
from lin2net.dynamics.driver import run
from lin2net.dynamics.family_cells import simulate_cell
from lin2net.dynamics.parameter_vector import (
    EXACT_SIZE,
    ParameterVectorDynamics,
    lanczos_top,
    minibatch_rows,
    run_parameters,
    start_state,
    top_eigenvalue,
)
from lin2net.dynamics.protocol import StopRule
from lin2net.kernels.counter_rng import trajectory_keys
from lin2net.sweep.config import parse_config
from lin2net.sweep.grid import expand_grid
from tests.conftest import trajectories_frame, write_yaml

BIG = DeepModel(3, 7, 1.0)  # D = 2·7 + 49 = 63 > EXACT_SIZE: Lanczos


def exact_top(model: Any, theta: np.ndarray) -> np.ndarray:
    top: np.ndarray = np.linalg.eigvalsh(model.hessian(theta))[:, -1]
    return top


def test_lanczos_is_the_top_eigenvalue_to_1e_10_from_a_cold_start() -> None:
    assert BIG.size > EXACT_SIZE
    rng = np.random.default_rng(5)
    for scale in (0.3, 1.0, 3.0):
        theta = scale * rng.standard_normal((6, BIG.size)) / np.sqrt(BIG.size) * 2
        ours, direction = top_eigenvalue(BIG, theta, np.zeros_like(theta))
        assert np.allclose(ours, exact_top(BIG, theta), rtol=1e-10, atol=0.0), scale
        assert np.allclose(np.linalg.norm(direction, axis=1), 1.0)


def test_warm_started_lanczos_along_a_gd_trajectory_matches_eigvalsh() -> None:
    rng = np.random.default_rng(9)
    theta = rng.standard_normal((4, BIG.size))
    theta *= np.sqrt(4.0) / np.linalg.norm(theta, axis=1, keepdims=True)
    dynamics = ParameterVectorDynamics(BIG)
    params = run_parameters(0.05, 4)
    state = dynamics.start(start_state(BIG, theta), params)
    for t in range(30):
        assert np.allclose(state.sharpness, exact_top(BIG, state.theta), rtol=1e-10, atol=0.0), t
        state, _ = dynamics.step(state, params, t, dynamics.observe(state, params))


def test_lanczos_survives_an_invariant_krylov_space() -> None:
    # At θ = (a, b) with a = b = 0 except one coordinate the Hessian has few distinct
    # eigenvalues: the Krylov space from e_1 breaks down after a few steps.
    model = DeepModel(2, 30, 1.0)  # D = 60
    theta = np.zeros((2, model.size))
    theta[:, 0], theta[:, 30] = 1.0, 2.0
    start = np.zeros_like(theta)
    start[:, 0] = 1.0
    top, _ = lanczos_top(model, theta, start, 24)
    assert np.allclose(top, exact_top(model, theta), rtol=1e-12)


def test_a_gd_step_is_theta_minus_eta_gradient_and_q_is_measured() -> None:
    model = DeepModel(3, 2, 1.5)
    theta = np.random.default_rng(1).standard_normal((3, model.size))
    dynamics = ParameterVectorDynamics(model)
    params = run_parameters(0.01, 3)
    state = dynamics.start(start_state(model, theta), params)
    moved, _ = dynamics.step(state, params, 0, dynamics.observe(state, params))
    assert np.array_equal(moved.theta, theta - 0.01 * model.gradient(theta))
    expected = np.log(model.imbalance(moved.theta) / model.imbalance(theta))
    assert np.allclose(dynamics.measured_log_q(moved), expected, rtol=1e-13)
    obs = dynamics.observe(moved, params)
    assert np.allclose(obs.lam, np.sum(moved.theta**2, axis=1)) and np.allclose(obs.loss, model.loss(moved.theta))
    assert np.allclose(obs.eta_sharpness, 0.01 * exact_top(model, moved.theta), rtol=1e-12)


def test_the_driver_stops_each_row_where_the_rule_says() -> None:
    model = DeepModel(3, 1, 1.0)
    theta = np.array([[0.9, 1.0, 1.1], [1.0, 1.0, 1.0]])  # the second starts at f = Φ
    outcome = run(
        ParameterVectorDynamics(model), start_state(model, theta), run_parameters(0.1, 2), StopRule(1e-20, 500)
    )
    assert outcome.results.steps[1] == 0 and outcome.results.status[1] == 0
    assert 0 < outcome.results.steps[0] < 500 and outcome.results.status[0] == 0


def test_minibatches_are_distinct_rows_reproducible_and_nested() -> None:
    keys = trajectory_keys(3, np.arange(5, dtype=np.int64))
    rows = minibatch_rows(keys, 7, 4, 10)
    assert rows.shape == (5, 4) and rows.min() >= 0 and rows.max() < 10
    assert all(len(set(row)) == 4 for row in rows.tolist())
    assert np.array_equal(rows, minibatch_rows(keys, 7, 4, 10))
    assert np.array_equal(minibatch_rows(keys, 7, 2, 10), rows[:, :2])  # a smaller batch is a prefix
    assert not np.array_equal(rows, minibatch_rows(keys, 8, 4, 10))
    assert np.array_equal(minibatch_rows(keys[2:3], 7, 4, 10), rows[2:3])  # a row alone: the same batch
    full = np.sort(minibatch_rows(keys, 0, 10, 10), axis=1)
    assert (full == np.arange(10)).all()


VECTOR_SGD: dict[str, Any] = {
    "name": "v",
    "seed": 4,
    "trajectories": 3,
    "algorithm": "sgd",
    "model": {"family": "vector", "inputs": 2},
    "data": {"n": 6, "x": "gaussian"},
    "grid": {"eta": 0.1, "lambda0": 1.0, "d": 2, "batch_size": [2, 6]},
    "loss_tol": 1e-12,
    "max_steps": 300,
}


def test_sgd_with_the_full_batch_is_gd_and_a_row_is_resimulated_alone() -> None:
    sgd = parse_config(VECTOR_SGD)
    small, full = expand_grid(sgd)
    gd_raw = {k: v for k, v in VECTOR_SGD.items() if k != "algorithm"}
    gd_raw["grid"] = {k: v for k, v in VECTOR_SGD["grid"].items() if k != "batch_size"}
    gd = parse_config(gd_raw)
    _, gd_rows = simulate_cell(gd, expand_grid(gd)[0])
    _, full_rows = simulate_cell(sgd, full)
    assert np.array_equal(full_rows.steps, gd_rows.steps) and np.array_equal(full_rows.lambda_T, gd_rows.lambda_T)
    _, small_rows = simulate_cell(sgd, small)
    assert not np.array_equal(small_rows.lambda_T, gd_rows.lambda_T)
    _, alone = simulate_cell(sgd, small, 1, 2)
    assert alone.lambda_T[0] == small_rows.lambda_T[1] and alone.steps[0] == small_rows.steps[1]


@pytest.mark.parametrize("family", ["deep", "vector", "relu"])
def test_every_family_sweeps_summarizes_traces_and_plots(cli, tmp_path: Path, family: str) -> None:  # type: ignore[no-untyped-def]
    raw: dict[str, Any] = {
        "name": family,
        "seed": 2,
        "trajectories": 3,
        "grid": {"eta": [0.05, 0.1], "lambda0": 1.0, "d": 2 if family == "vector" else 1},
        "loss_tol": 1e-10,
        "max_steps": 400,
    }  # d = 1 for deep and relu: their λ_GF is exact and cheap there (a root find; a closed form)
    if family == "deep":
        raw |= {"model": {"family": "deep"}}
        raw["grid"]["depth"] = [2, 3]
    else:
        raw |= {"model": {"family": family, "inputs": 2}, "data": {"n": 8, "x": "whitened"}}
        raw |= {"algorithm": "sgd"}
        raw["grid"]["batch_size"] = [4, 8]
    out = tmp_path / "out"
    result = cli("sweep", write_yaml(tmp_path / "c.yaml", raw), "-o", out, "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    rows = trajectories_frame(out)
    assert len(rows) == 4 * 3
    assert np.allclose(rows["lambda_init"], 1.0) and (rows["q0"] >= 0).all()
    assert np.allclose(rows["loss0"], 0.5 * rows["eps0"] ** 2, rtol=1e-12)
    summary = cli("summarize", out, "--format", "csv")
    assert summary.exit_code == 0 and summary.stdout.count("\n") == 5, summary.output
    row = rows.sort_values(["eta", "trajectory"]).iloc[-1]
    table, figure = tmp_path / "t.csv", tmp_path / "t.png"
    traced = cli(
        "trace", out, "--cell", row["cell_id"], "--trajectory", str(row["trajectory"]), "-o", table, "--plot", figure
    )
    assert traced.exit_code == 0, traced.output
    import pandas as pd

    trace = pd.read_csv(table)
    last = trace.iloc[-1]
    assert last["t"] == row["steps"] and np.float64(last["lambda"]) == row["lambda_T"]
    assert np.float64(last["sharpness"]) == row["sharpness_T"] and np.float64(last["log_q_ratio"]) == row["log_q_ratio"]
    assert "lambda_gf" in trace.columns and figure.stat().st_size > 0
    assert np.float64(trace["lambda_gf"].iloc[0]) == row["lambda_gf"] or np.isnan(row["lambda_gf"])
    plot = cli("plot", out, "-o", tmp_path / "p.png", "--x", "eta")
    assert plot.exit_code in (0, 2), plot.output  # a plot of one swept axis, or a one-line reason
    assert "Traceback" not in plot.output


def test_check_states_which_theorems_apply(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw = {
        "name": "d",
        "seed": 1,
        "trajectories": 4,
        "model": {"family": "deep"},
        "grid": {"eta": [0.1, 0.5], "lambda0": 3.0, "d": 2, "depth": [2, 3]},
        "loss_tol": 1e-12,
    }
    out = tmp_path / "out"
    assert cli("sweep", write_yaml(tmp_path / "c.yaml", raw), "-o", out, "--workers", "1", "--quiet").exit_code == 0
    checked = cli("check", out, "--format", "csv")
    assert checked.exit_code == 0, checked.output
    assert "only to its depth-2 cells" in checked.stderr and "converged in-regime" in checked.stderr
    deeper = tmp_path / "deeper"
    raw["grid"]["depth"] = [3]  # type: ignore[index]
    assert cli("sweep", write_yaml(tmp_path / "e.yaml", raw), "-o", deeper, "--workers", "1", "--quiet").exit_code == 0
    refused = cli("check", deeper)
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "no theorem of the seed paper applies" in refused.stderr
