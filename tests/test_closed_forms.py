"""Closed forms of docs/math.md against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.integrate import solve_ivp

from lin2net.dynamics.gd.reference import ReducedState, Status, StopRule, integrate
from lin2net.theory.closed_forms import full_hessian, gradient_flow_sharpness, reduced_coordinates, sharpness


@pytest.mark.parametrize("d", [1, 2, 5, 9])
def test_sharpness_is_the_top_hessian_eigenvalue_anywhere(d: int) -> None:
    rng = np.random.default_rng(d)
    for _ in range(40):
        a = rng.normal(size=d) * rng.uniform(0.05, 3)
        b = rng.normal(size=d) * rng.uniform(0.05, 3)
        phi = rng.choice([0.0, rng.uniform(0.1, 4.0)])
        eps, lam, _ = reduced_coordinates(a[None], b[None], phi)
        top = np.linalg.eigvalsh(full_hessian(a, b, phi)).max()
        assert_allclose(sharpness(eps, lam, phi)[0], top, rtol=1e-10, atol=1e-12)


def test_sharpness_at_a_minimum_is_lambda() -> None:
    lam = np.array([2.0, 3.5, 10.0])
    assert_allclose(sharpness(np.zeros(3), lam, 1.0), lam, rtol=1e-15)


def test_hessian_formula_matches_finite_differences() -> None:
    rng = np.random.default_rng(3)
    d, phi, h = 3, 0.7, 1e-5
    x = rng.normal(size=2 * d)

    def grad(z: np.ndarray) -> np.ndarray:
        a, b = z[:d], z[d:]
        eps = a @ b - phi
        return np.concatenate([eps * b, eps * a])

    numeric = np.array([(grad(x + h * e) - grad(x - h * e)) / (2 * h) for e in np.eye(2 * d)])
    assert_allclose(full_hessian(x[:d], x[d:], phi), numeric, atol=1e-8)


def _gradient_flow_limit(a: np.ndarray, b: np.ndarray, phi: float) -> float:
    """λ at the end of a finely integrated gradient flow on the actual vectors."""
    d = a.size

    def field(_: float, z: np.ndarray) -> np.ndarray:
        eps = z[:d] @ z[d:] - phi
        return -np.concatenate([eps * z[d:], eps * z[:d]])

    z0 = np.concatenate([a, b])
    solution = solve_ivp(field, (0.0, 200.0), z0, method="DOP853", rtol=1e-12, atol=1e-14)
    z = solution.y[:, -1]
    assert abs(z[:d] @ z[d:] - phi) < 1e-9, "gradient flow did not reach the minimum"
    return float(z @ z)


@pytest.mark.parametrize("d", [1, 3, 6])
def test_gradient_flow_limit_closed_form(d: int) -> None:
    rng = np.random.default_rng(10 + d)
    for phi in (0.5, 1.0, 2.0):
        a, b = rng.normal(size=d), rng.normal(size=d)
        if a @ b < 0:  # avoid starting on the far side of the saddle, where GF is slow
            b = -b
        eps, lam, _ = reduced_coordinates(a[None], b[None], phi)
        assert_allclose(gradient_flow_sharpness(eps, lam, phi)[0], _gradient_flow_limit(a, b, phi), rtol=1e-8)


def test_gradient_descent_limit_identity_on_converged_trajectories() -> None:
    """λ_∞² = 4Φ² + S0 P0 (Q_∞/Q0)² (docs/math.md §4) for GD, not only GF."""
    rng = np.random.default_rng(5)
    d, n, phi = 4, 400, 1.3
    a, b = rng.normal(size=(n, d)) * 0.6, rng.normal(size=(n, d)) * 0.6
    eps0, lam0, _ = reduced_coordinates(a, b, phi)
    s0 = ((a + b) ** 2).sum(axis=1)
    p0 = ((a - b) ** 2).sum(axis=1)
    for eta in (0.02, 0.1, 0.3):
        out = integrate(ReducedState(eps0, lam0), eta, phi, StopRule(loss_tol=1e-28, max_steps=200_000))
        ok = out.status == Status.CONVERGED
        assert ok.mean() > 0.9
        predicted = np.sqrt(4 * phi**2 + s0 * p0 * out.q_ratio**2)
        assert_allclose(out.lambda_T[ok], predicted[ok], rtol=1e-9)
        # GD ends flatter than GF whenever it shrank Q
        assert np.all(out.lambda_T[ok] <= gradient_flow_sharpness(eps0, lam0, phi)[ok] * (1 + 1e-12))
