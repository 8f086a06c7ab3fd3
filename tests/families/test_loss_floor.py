"""The stop rule on noisy labels: a model with a loss floor converges within loss_tol of it.

With label noise (``data.noise > 0``) or labels no linear map fits, the vector model's
loss never falls below its floor (½ mean of the least-squares residual,
VectorModel.loss_floor), so ½ε² = L <= loss_tol alone would end every row at
max_steps. The generic dynamics' tolerance is loss_floor + loss_tol where the model
has a floor (lin2net.dynamics.parameter_vector.loss_floor); relu has no known floor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lin2net.dynamics import families
from lin2net.dynamics.deep.model import DeepModel
from lin2net.dynamics.family_cells import simulate_cell
from lin2net.dynamics.parameter_vector import ParameterVectorDynamics, loss_floor, run_parameters
from lin2net.dynamics.protocol import Status, StopRule
from lin2net.sweep.config import parse_config
from lin2net.sweep.grid import expand_grid

NOISY: dict[str, Any] = {
    "name": "noisy",
    "seed": 3,
    "trajectories": 6,
    "model": {"family": "vector", "inputs": 2},
    "data": {"n": 20, "x": "whitened", "noise": 0.3},
    "grid": {"eta": [0.1, 0.3], "lambda0": 1.0, "d": 2},
    "loss_tol": 1e-10,
    "max_steps": 20_000,
}


def test_a_noisy_vector_sweep_converges_within_loss_tol_of_the_floor() -> None:
    config = parse_config(NOISY)
    for cell in expand_grid(config):
        model = families.build_model(config, cell)
        assert model.loss_floor > 1e3 * config.loss_tol  # ½ε² <= loss_tol alone could never hold
        _, rows = simulate_cell(config, cell)
        assert (rows.status == Status.CONVERGED).all() and (rows.steps < config.max_steps).all()
        excess = rows.loss_T - model.loss_floor
        assert (excess <= config.loss_tol).all()
        assert (excess >= -1e-12 * model.loss_floor).all()  # the floor is a floor (to rounding)
        # and the rows stop at the first state within loss_tol of it, not later:
        theta = families.initial_theta(config, cell)
        for row, steps in enumerate(rows.steps):
            state = theta[row : row + 1]
            for _ in range(int(steps) - 1):
                state = state - cell.eta * model.gradient(state)
            assert model.loss(state)[0] - model.loss_floor > config.loss_tol


def test_tolerance_is_floor_plus_loss_tol_only_where_the_model_has_a_floor() -> None:
    config = parse_config(NOISY)
    vector = families.build_model(config, expand_grid(config)[0])
    rule = StopRule(1e-10, 100)
    params = run_parameters(0.1, 3)
    got = ParameterVectorDynamics(vector).tolerance(params, rule)
    assert np.array_equal(got, np.full(3, vector.loss_floor + 1e-10))
    relu_raw = {**NOISY, "model": {"family": "relu", "inputs": 2}}
    relu = families.build_model(parse_config(relu_raw), expand_grid(parse_config(relu_raw))[0])
    assert loss_floor(relu) == 0.0  # no known floor: a noisy relu row converges only if it fits below loss_tol
    assert np.array_equal(ParameterVectorDynamics(relu).tolerance(params, rule), np.full(3, 1e-10))
    assert loss_floor(DeepModel(3, 2, 1.0)) == 0.0


def test_noiseless_linear_labels_keep_the_plain_loss_tol() -> None:
    raw = {**NOISY, "data": {"n": 20, "x": "whitened"}}
    config = parse_config(raw)
    model = families.build_model(config, expand_grid(config)[0])
    assert model.loss_floor + config.loss_tol == config.loss_tol  # the floor is rounding: tolerance unchanged
