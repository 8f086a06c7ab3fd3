"""vector at m = 1 on whitened, noise-free data is today's model: a sweep of each, same
seed and grid (the same sphere starts: fam-core draws θ from the shallow stream when
D = 2d), gives the same rows: T and status equal, the floats within 1e-10."""

from __future__ import annotations

import numpy as np
import pytest

import lin2net


def rows(model: dict | None) -> dict:
    config = {
        "name": "reduction",
        "seed": 3,
        "trajectories": 8,
        "max_steps": 600,
        "grid": {"eta_lambda0": [0.5, 1.5, 1.9, 3.0], "lambda0": [1.0, 3.0], "phi": [1.0], "d": [3]},
    }
    if model is not None:
        config["model"] = model
        config["data"] = {"n": 16, "x": "whitened"}
    table = lin2net.run(config).to_pandas()  # type: ignore[union-attr]
    return table.sort_values(["eta_lambda0", "lambda0", "trajectory"]).reset_index(drop=True)


def test_vector_m1_whitened_rows_equal_the_shallow_rows() -> None:
    shallow, vector = rows(None), rows({"family": "vector", "inputs": 1})
    assert len(shallow) == len(vector) == 64
    assert (shallow.status == vector.status).all()
    assert (shallow.steps == vector.steps).all()
    assert set(shallow.status) >= {"converged"}
    done = shallow.status == "converged"
    for column in ("sharpness_T", "q_ratio", "lambda_gf", "lambda_T", "q0", "sharpness0"):
        a, b = shallow.loc[done, column].to_numpy(), vector.loc[done, column].to_numpy()
        assert np.allclose(b, a, rtol=1e-10, atol=0), column
    assert np.allclose(vector.lambda_gf, shallow.lambda_gf, rtol=1e-10)  # every start, converged or not
    assert vector.max_eta_sharpness.to_numpy() == pytest.approx(shallow.max_eta_sharpness.to_numpy(), rel=1e-10)
