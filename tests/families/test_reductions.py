"""Exact reductions, through ``lin2net sweep``: deep at depth 2 and vector at m = 1 on
whitened data are today's shallow model (same seed and grid: the same starts), and
relu with every pre-activation positive along the run is the linear (vector) model.

Steps and status equal; sharpness_T, q_ratio, lambda_gf and lambda_T within 1e-10
relative. The shallow rows come from today's default (compiled) integrator on the
reduced map; the families step θ ∈ R^{2d} through the generic dynamics, so the
floats agree to rounding, not bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.conftest import trajectories_frame, write_yaml

GRID = {"eta": [0.1, 0.3], "lambda0": [0.5, 4.0], "phi": [1.0, 2.0], "d": [1, 3]}
SHALLOW: dict[str, Any] = {"name": "s", "seed": 11, "trajectories": 8, "grid": GRID, "loss_tol": 1e-12}
SHALLOW["max_steps"] = 20_000
FLOATS = ("sharpness_T", "q_ratio", "lambda_gf", "lambda_T")
AXES = ["eta", "lambda0", "phi", "d", "trajectory"]


def sweep(cli: Any, tmp_path: Path, name: str, raw: dict[str, Any]) -> pd.DataFrame:
    out = tmp_path / name
    result = cli("sweep", write_yaml(tmp_path / f"{name}.yaml", raw), "-o", out, "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    return trajectories_frame(out).sort_values(AXES).reset_index(drop=True)


def assert_same_rows(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert len(ours) == len(theirs) > 0
    assert (ours[AXES].to_numpy() == theirs[AXES].to_numpy()).all()
    assert (ours["status"] == theirs["status"]).all() and (ours["steps"] == theirs["steps"]).all()
    for column in FLOATS:
        a, b = ours[column].to_numpy(), theirs[column].to_numpy()
        assert np.allclose(a, b, rtol=1e-10, atol=0.0), (column, np.max(np.abs(a - b) / np.abs(b)))


def test_deep_at_depth_two_is_the_shallow_model(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    shallow = sweep(cli, tmp_path, "shallow", SHALLOW)
    deep = sweep(cli, tmp_path, "deep", {**SHALLOW, "model": {"family": "deep", "depth": 2}})
    assert (shallow["status"] == "converged").mean() > 0.9  # the comparison is about converged runs
    assert_same_rows(deep, shallow)
    # ε is f − Φ, signed, as the shallow ε
    assert np.allclose(deep["eps0"], shallow["eps0"], rtol=1e-12, atol=1e-14)


def test_vector_at_one_input_on_whitened_data_is_the_shallow_model(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    shallow = sweep(cli, tmp_path, "shallow", SHALLOW)
    raw = {**SHALLOW, "model": {"family": "vector", "inputs": 1}, "data": {"n": 20, "x": "whitened"}}
    vector = sweep(cli, tmp_path, "vector", raw)
    assert_same_rows(vector, shallow)
    assert np.allclose(vector["eps0"], np.abs(shallow["eps0"]), rtol=1e-12, atol=1e-14)  # √(2L) = |ε|


def test_relu_with_positive_preactivations_is_the_linear_model(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x = [[1.0, 0.5], [0.3, 1.2], [0.8, 0.9], [1.5, 0.2]]
    base: dict[str, Any] = {
        "name": "r",
        "model": {"family": "vector", "inputs": 2},
        "data": {"x": x, "y": [1.25, 0.9, 1.25, 1.6]},
        "init": {"explicit": {"A": [[0.6, 0.4], [0.5, 0.7], [0.3, 0.2]], "b": [0.5, 0.4, 0.6]}},
        "grid": {"eta": [0.05, 0.2]},
        "loss_tol": 1e-12,
        "max_steps": 20_000,
    }
    linear = sweep(cli, tmp_path, "linear", base)
    start = base["init"]["explicit"]
    relu_start = {"init": {"explicit": {"a": start["A"], "b": start["b"]}}}  # neuron j's weights: row j of A
    relu = sweep(cli, tmp_path, "relu", {**base, **relu_start, "model": {"family": "relu", "inputs": 2}})
    assert (linear["status"] == "converged").all()  # y = x·(1, 0.5): the linear model interpolates
    assert (relu["steps"].to_numpy() == linear["steps"].to_numpy()).all()
    for column in ("sharpness_T", "lambda_T", "q_ratio", "lambda_gf"):
        assert np.allclose(relu[column], linear[column], rtol=1e-10, atol=0.0, equal_nan=True), column
    # L(T) <= loss_tol = 1e-12 is a square of a difference of nearly equal outputs (rounding ~1e-16 each):
    assert np.allclose(relu["loss_T"], linear["loss_T"], rtol=0.0, atol=1e-20)
