"""GD on the deep model through the one driver: its two sharpness modes and its trajectories agree."""

from __future__ import annotations

import numpy as np

from lin2net.dynamics.deep.model import DeepModel
from lin2net.dynamics.deep.reference import integrate, trajectory
from lin2net.dynamics.driver import run
from lin2net.dynamics.gd.reference import GD, FullState, GDParams
from lin2net.dynamics.protocol import Status, StopRule


def starts(model: DeepModel, n: int, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal((n, model.size))
    return z * np.sqrt(2.0 * model.depth / model.size)


def test_final_sharpness_mode_gives_the_same_rows() -> None:
    model = DeepModel(3, 2, phi=1.0)
    theta = starts(model, 12, seed=1)
    eta = np.linspace(0.05, 0.8, 12)
    rule = StopRule(loss_tol=1e-10, max_steps=400)
    every = integrate(model, theta, eta, rule).results
    final = integrate(model, theta, eta, rule, final_sharpness_only=True).results
    assert {Status(s) for s in every.status} >= {Status.CONVERGED}
    np.testing.assert_array_equal(final.status, every.status)
    np.testing.assert_array_equal(final.steps, every.steps)
    np.testing.assert_array_equal(final.sharpness_T, every.sharpness_T)
    np.testing.assert_array_equal(final.log_q_ratio, every.log_q_ratio)


def test_trajectory_stops_where_the_driver_does() -> None:
    model = DeepModel(4, 1, phi=1.0)
    theta = starts(model, 3, seed=2)
    rule = StopRule(loss_tol=1e-10, max_steps=300)
    result = integrate(model, theta, 0.2, rule).results
    for row in range(3):
        states = trajectory(model, theta[row : row + 1], 0.2, rule)
        assert len(states) == result.steps[row] + 1
        assert model.residual(states[-1:])[0] == result.eps_T[row]


def test_depth_two_equals_the_shallow_vectors_stepped_by_gd() -> None:
    # The same update θ ← θ − ηε(b, a): T equal, floats to rounding.
    model = DeepModel(2, 3, phi=1.0)
    theta = starts(model, 6, seed=3)
    eta = np.full(6, 0.3)
    rule = StopRule(loss_tol=1e-10, max_steps=2000)
    deep = integrate(model, theta, eta, rule).results
    shallow = run(GD(), FullState(theta[:, :3], theta[:, 3:]), GDParams(eta, np.ones(6)), rule).results
    np.testing.assert_array_equal(deep.steps, shallow.steps)
    np.testing.assert_array_equal(deep.status, shallow.status)
    np.testing.assert_allclose(deep.sharpness_T, shallow.sharpness_T, rtol=1e-12)
    np.testing.assert_allclose(deep.log_q_ratio, shallow.log_q_ratio, rtol=1e-10, atol=1e-13)
