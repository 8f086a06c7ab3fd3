"""A ``model: {family: deep}`` sweep's rows against the deep family's own reference.

An explicit start (``init: {explicit: {layers: …}}``) swept over η: each row's T,
status, sharpness_T, q_ratio and lambda_gf equal those of
lin2net.dynamics.deep.reference's GD and DeepModel.gradient_flow_sharpness from
the same θ (two GD loops over the same model: equal to rounding).
"""

from __future__ import annotations

import numpy as np
import pytest

import lin2net
from lin2net.dynamics.deep.model import DeepModel
from lin2net.dynamics.deep.reference import integrate
from lin2net.dynamics.families import parse_explicit
from lin2net.dynamics.protocol import Status, StopRule

LAYERS = [[[0.5], [-0.2]], [[0.8, 0.1], [-0.3, 0.6]], [[0.9, 0.4]]]


@pytest.mark.parametrize("layers", [LAYERS, [[[0.3]], [[1.2]], [[0.9]], [[0.7]]]])
def test_rows_equal_the_family_reference(layers: list) -> None:
    etas = [0.05, 0.3, 0.6, 1.5]
    config = {
        "model": {"family": "deep", "depth": len(layers)},
        "grid": {"eta": etas, "phi": 1.0},
        "init": {"explicit": {"layers": layers}},
        "max_steps": 3000,
        "loss_tol": 1e-10,
    }
    rows = lin2net.run(config).to_pandas().sort_values("eta")
    theta = np.array([parse_explicit("deep", {"layers": layers}).theta])
    model = DeepModel(len(layers), len(layers[0]), 1.0)
    reference = integrate(model, np.repeat(theta, len(etas), axis=0), np.array(etas), StopRule(1e-10, 3000)).results
    assert list(rows["status"]) == [Status(s).label for s in reference.status]
    assert "converged" in set(rows["status"]) and len(set(rows["status"])) > 1
    np.testing.assert_array_equal(rows["steps"], reference.steps)
    np.testing.assert_allclose(rows["sharpness_T"], reference.sharpness_T, rtol=1e-12)
    np.testing.assert_allclose(rows["q_ratio"], reference.q_ratio, rtol=1e-12)
    np.testing.assert_allclose(rows["lambda_gf"], model.gradient_flow_sharpness(theta)[0], rtol=1e-15)
    np.testing.assert_allclose(rows["lambda_init"], float(theta[0] @ theta[0]), rtol=1e-15)
