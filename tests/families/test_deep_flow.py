"""λ_GF of the deep model: the exact scalar root find, the path ODE, and independent oracles.

* scalar networks (d = 1): the root find (exact) against scipy's solve_ivp on the
  gradient flow θ' = −∇L in time, and against the path ODE (integrate_flow);
* the path ODE at depth 2 against the shallow closed form (exact), at depth 3–4
  with d > 1 against solve_ivp in time: agreement to 1e-10 relative, the stated
  tolerance of FLOW_RTOL's integration;
* the limit is a minimizer (f = Φ) with the conserved matrices of the start;
* degenerate scalar starts that run into a saddle.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from lin2net.dynamics.deep.model import DeepModel, integrate_flow, layers, scalar_flow_limit, scalar_flow_sharpness
from lin2net.theory import closed_forms

STATED = 1e-10  # the stated accuracy of λ_GF from integrate_flow


def time_flow_sharpness(model: DeepModel, theta: np.ndarray, horizon: float = 50.0) -> float:
    """λ_GF by solve_ivp on θ' = −∇L (one row) to a long horizon, then ‖∇f‖² there (ε ≈ 0)."""

    def rhs(_: float, x: np.ndarray) -> np.ndarray:
        return -model.gradient(x[None, :])[0]

    solution = solve_ivp(rhs, (0.0, horizon), theta, method="DOP853", rtol=1e-13, atol=1e-15)
    end = solution.y[:, -1][None, :]
    assert abs(model.residual(end)[0]) < 1e-12, "the horizon must reach the minimizer"
    _, grad = model.output_gradient(end)
    return float(grad[0] @ grad[0])


def random_points(model: DeepModel, n: int, seed: int, scale: float = 1.0) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal((n, model.size))
    return z * scale * np.sqrt(model.depth / model.size)


@pytest.mark.parametrize("depth", [3, 4, 5])
def test_scalar_root_find_against_the_ode_in_time(depth: int) -> None:
    model = DeepModel(depth, 1, phi=1.0)
    theta = random_points(model, 3, seed=depth, scale=1.2)
    theta[0] = np.abs(theta[0])  # one start with all weights positive
    exact = model.gradient_flow_sharpness(theta)
    for row in range(len(theta)):
        assert exact[row] == pytest.approx(time_flow_sharpness(model, theta[row]), rel=1e-9)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_scalar_root_find_against_the_path_ode(depth: int) -> None:
    model = DeepModel(depth, 1, phi=0.8)
    theta = random_points(model, 50, seed=10 + depth, scale=1.5)
    exact = scalar_flow_sharpness(theta, model.phi)
    limit = integrate_flow(model, theta)
    _, grad = model.output_gradient(limit)
    np.testing.assert_allclose(np.einsum("nd,nd->n", grad, grad), exact, rtol=STATED)
    if depth == 2:
        eps, lam, _ = closed_forms.reduced_coordinates(theta[:, :1], theta[:, 1:], model.phi)
        np.testing.assert_allclose(exact, closed_forms.gradient_flow_sharpness(eps, lam, model.phi), rtol=1e-13)


def test_scalar_limit_is_a_minimizer_with_the_start_conserved() -> None:
    theta = np.array([[0.3, 1.2, 0.8], [-0.4, 0.9, 1.1], [2.0, -1.0, 0.1], [0.5, 0.5, 3.0]])
    limit, saddle = scalar_flow_limit(theta, 1.5)
    assert not saddle.any()
    np.testing.assert_allclose(np.prod(limit, axis=1), 1.5, rtol=1e-15)
    np.testing.assert_allclose(np.diff(limit**2, axis=1), np.diff(theta**2, axis=1), rtol=1e-13, atol=1e-15)


def test_scalar_limit_for_a_zero_target() -> None:
    theta = np.array([[0.3, 1.2, -0.8]])
    limit, _ = scalar_flow_limit(theta, 0.0)
    assert limit[0, 0] == 0.0
    assert scalar_flow_sharpness(theta, 0.0)[0] == pytest.approx((1.2**2 - 0.09) * (0.64 - 0.09), rel=1e-14)


def test_scalar_flow_into_a_saddle() -> None:
    # |w_1| = |w_2| and f < 0 < Φ: the two smallest layers would have to cross 0
    # together; the flow ends at w_1 = w_2 = 0, whose Hessian's top eigenvalue is
    # Φ·|w_3| (here √(2² − 0.5²)).
    theta = np.array([[0.5, -0.5, 2.0]])
    limit, saddle = scalar_flow_limit(theta, 1.0)
    assert saddle[0]
    np.testing.assert_allclose(limit[0], [0.0, 0.0, np.sqrt(4.0 - 0.25)], rtol=1e-15)
    assert scalar_flow_sharpness(theta, 1.0)[0] == pytest.approx(np.sqrt(3.75), rel=1e-14)
    # Depth 2: a = −b runs into (0, 0), sharpness Φ, as the shallow closed form says.
    assert scalar_flow_sharpness(np.array([[0.7, -0.7]]), 1.3)[0] == pytest.approx(1.3, rel=1e-15)
    # The same tie with f > 0 needs no crossing: a regular minimizer.
    assert not scalar_flow_limit(np.array([[0.5, 0.5, 2.0]]), 1.0)[1][0]


@pytest.mark.parametrize("width", [2, 4])
def test_path_ode_at_depth_two_equals_the_closed_form(width: int) -> None:
    model = DeepModel(2, width, phi=1.0)
    theta = random_points(model, 40, seed=width, scale=2.0)
    limit = integrate_flow(model, theta)
    _, grad = model.output_gradient(limit)
    np.testing.assert_allclose(np.einsum("nd,nd->n", grad, grad), model.gradient_flow_sharpness(theta), rtol=STATED)


@pytest.mark.parametrize(("depth", "width"), [(3, 2), (4, 2), (3, 3)])
def test_path_ode_against_the_ode_in_time(depth: int, width: int) -> None:
    model = DeepModel(depth, width, phi=1.0)
    theta = random_points(model, 3, seed=depth * width, scale=1.3)
    value = model.gradient_flow_sharpness(theta)
    for row in range(len(theta)):
        assert value[row] == pytest.approx(time_flow_sharpness(model, theta[row]), rel=1e-9)


def test_path_ode_limit_is_a_minimizer_that_keeps_the_conserved_matrices() -> None:
    model = DeepModel(4, 3, phi=-0.6)
    theta = random_points(model, 20, seed=5, scale=1.5)
    limit = integrate_flow(model, theta)
    np.testing.assert_allclose(model.output(limit), model.phi, rtol=1e-14)
    weights0, weights1 = layers(theta, 4, 3), layers(limit, 4, 3)
    for k in range(3):
        conserved0 = np.swapaxes(weights0[k + 1], 1, 2) @ weights0[k + 1] - weights0[k] @ np.swapaxes(weights0[k], 1, 2)
        conserved1 = np.swapaxes(weights1[k + 1], 1, 2) @ weights1[k + 1] - weights1[k] @ np.swapaxes(weights1[k], 1, 2)
        np.testing.assert_allclose(conserved1, conserved0, rtol=0, atol=1e-9 * np.abs(conserved0).max())
    # λ_GF is the top Hessian eigenvalue there (ε = 0: ∇²L = ∇f∇fᵀ).
    np.testing.assert_allclose(model.sharpness(limit), model.gradient_flow_sharpness(theta), rtol=1e-12)


def test_a_start_at_the_target_is_its_own_limit() -> None:
    model = DeepModel(3, 2, phi=1.0)
    theta = np.array([[1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]])  # f = 1
    np.testing.assert_array_equal(integrate_flow(model, theta), theta)
    assert model.gradient_flow_sharpness(theta)[0] == pytest.approx(model.sharpness(theta)[0], rel=1e-14)
