"""The closed-form gradient flow against an independent ODE solver and its invariants."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.integrate import solve_ivp

from lin2net.theory.closed_forms import gradient_flow_sharpness
from lin2net.theory.gradient_flow import GradientFlow


def _random_start(rng: np.random.Generator, d: int, lam0: float) -> tuple[np.ndarray, np.ndarray]:
    z = rng.standard_normal(2 * d)
    z *= np.sqrt(lam0) / np.linalg.norm(z)
    return z[:d], z[d:]


def _vector_flow(a: np.ndarray, b: np.ndarray, phi: float, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference: ȧ = −εb, ḃ = −εa integrated by scipy's DOP853 at tight tolerance."""
    d = a.size

    def rhs(_: float, y: np.ndarray) -> np.ndarray:
        eps = y[:d] @ y[d:] - phi
        return np.concatenate([-eps * y[d:], -eps * y[:d]])

    y0 = np.concatenate([a, b])
    sol = solve_ivp(rhs, (0.0, times[-1]), y0, method="DOP853", rtol=1e-13, atol=1e-15, t_eval=times)
    assert sol.success
    return sol.y[:d].T, sol.y[d:].T


@pytest.mark.parametrize("phi", [0.0, 0.4, 1.0, 2.5])
def test_flow_matches_vector_ode_and_conserves_invariants(phi: float) -> None:
    rng = np.random.default_rng(int(phi * 10))
    for _ in range(12):
        d = int(rng.integers(1, 6))
        lam0 = float(10 ** rng.uniform(-2, 1))
        a, b = _random_start(rng, d, lam0)
        flow = GradientFlow.from_vectors(a, b, phi)
        horizon = 30.0 / max(float(flow.limit_sharpness), 0.05)
        times = np.linspace(0.0, horizon, 60)
        ref_a, ref_b = _vector_flow(a, b, phi, times)
        eps, lam = flow.at(times)
        assert_allclose(lam, (ref_a**2 + ref_b**2).sum(axis=1), rtol=1e-10)
        assert_allclose(eps, (ref_a * ref_b).sum(axis=1) - phi, rtol=0, atol=1e-10 * max(1.0, lam0))
        # Lemma 2: λ² − 8ε(ε + Φ) + 4ε² is conserved by GF.
        alpha = lam**2 - 8 * eps * (eps + phi) + 4 * eps**2
        assert_allclose(alpha, alpha[0], rtol=1e-9)
        # Each Q_i = a_i² − b_i² is conserved, so Q is.
        for time in times[::10]:
            at, bt = flow.vectors_at(a, b, float(time))
            assert_allclose(at**2 - bt**2, a**2 - b**2, rtol=1e-9, atol=1e-12 * lam0)
        ia = int(np.argmin(np.abs(times - times[-1] / 2)))
        at, bt = flow.vectors_at(a, b, float(times[ia]))
        assert_allclose(np.concatenate([at, bt]), np.concatenate([ref_a[ia], ref_b[ia]]), rtol=1e-8, atol=1e-11)


def test_limit_equals_closed_form_lambda_gf() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    lam0 = 10 ** rng.uniform(-2, 1.5, n)
    phi = rng.choice([0.0, 0.3, 1.0, 4.0], n)
    eps0 = rng.uniform(-0.5, 0.5, n) * lam0 - phi
    flow = GradientFlow.from_reduced(eps0, lam0, phi)
    limit_eps, limit_lam = flow.at(np.full(n, 1e4 / np.maximum(flow.limit_sharpness, 1e-3)))
    expected = gradient_flow_sharpness(eps0, lam0, phi)
    assert_allclose(limit_lam, expected, rtol=1e-9)
    assert_allclose(limit_eps, 0.0, atol=1e-12)


def test_limit_equals_lambda_gf_by_an_independent_solver() -> None:
    """The closed form λ_GF = √(λ0² − 8ε0(ε0 + Φ) + 4ε0²) against scipy on (ε, λ) at long times."""
    rng = np.random.default_rng(4)
    for _ in range(30):
        phi = float(rng.choice([0.2, 1.0, 3.0]))
        lam0 = float(10 ** rng.uniform(-1.5, 1))
        eps0 = float(rng.uniform(-0.5, 0.5) * lam0 - phi)
        expected = float(gradient_flow_sharpness(eps0, lam0, phi))
        sol = solve_ivp(
            lambda _, y, phi=phi: [-y[1] * y[0], -4 * y[0] * (y[0] + phi)],
            (0.0, 60.0 / expected),
            [eps0, lam0],
            method="DOP853",
            rtol=1e-13,
            atol=1e-300,
        )
        assert_allclose(sol.y[1, -1], expected, rtol=1e-9)


def test_small_residuals_keep_relative_precision() -> None:
    """ε(t) decays like e^{−λ* t}; the closed form tracks it to full relative precision."""
    phi, lam0, eps0 = 1.0, 2.7, -0.3
    flow = GradientFlow.from_reduced(eps0, lam0, phi)
    times = np.linspace(0.0, 25.0, 30)
    sol = solve_ivp(
        lambda _, y: [-y[1] * y[0], -4 * y[0] * (y[0] + phi)],
        (0.0, times[-1]),
        [eps0, lam0],
        method="DOP853",
        rtol=1e-13,
        atol=1e-300,
        t_eval=times,
    )
    eps, lam = flow.at(times)
    assert abs(eps[-1]) < 1e-20  # far below what a·b − Φ could resolve
    assert_allclose(eps, sol.y[0], rtol=1e-9)
    assert_allclose(lam, sol.y[1], rtol=1e-11)


@pytest.mark.parametrize(
    ("a", "b", "phi"),
    [
        ([0.6, -0.2], [-0.6, 0.2], 1.0),  # a = −b: S = 0, the flow runs into the saddle
        ([0.6, -0.2], [0.6, -0.2], 0.0),  # a = b, Φ = 0: λ* = 0, algebraic decay
        ([0.5], [0.5], 1.0),  # a = b: P = 0 stays 0
        ([1e-3, 0.0], [2e-3, 0.0], 1.0),  # near the saddle
    ],
)
def test_degenerate_starts_match_vector_ode(a: list[float], b: list[float], phi: float) -> None:
    a_arr, b_arr = np.array(a), np.array(b)
    flow = GradientFlow.from_vectors(a_arr, b_arr, phi)
    times = np.linspace(0.0, 20.0, 41)
    ref_a, ref_b = _vector_flow(a_arr, b_arr, phi, times)
    eps, lam = flow.at(times)
    assert np.all(np.isfinite(eps)) and np.all(np.isfinite(lam))
    assert_allclose(lam, (ref_a**2 + ref_b**2).sum(axis=1), rtol=1e-9, atol=1e-14)
    assert_allclose(eps, (ref_a * ref_b).sum(axis=1) - phi, rtol=1e-9, atol=1e-12)
