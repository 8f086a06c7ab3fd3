"""Both integrators against gradient descent in 60-digit arithmetic (mpmath).

The reference steps the actual vectors, a ← a − ηεb, b ← b − ηεa, with every
operation carried to 60 digits from the same double-precision start, and
measures T, Q(T)/Q(0) and λ(T) on them: an oracle independent of the reduced
map. The starts are the hard ones for double precision:

* near-degenerate: a ≈ −b (S0 = ‖a + b‖² down to 1e-12·λ0), so the escape
  from the saddle is set by S0, which a state carrying λ and ε holds only to
  an absolute 1e-16·λ0; and a ≈ b (P0 tiny);
* tiny η (down to 1e-5), where each log|1 − η²ε²| is a tiny number that a
  rounded 1 − η²ε² would get wrong in the 10th digit.

Required: T equal, log_q_ratio and λ_T within 1e-12 relative.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from lin2net.dynamics.gd.kernel import integrate_compiled
from lin2net.dynamics.gd.reference import ReducedState, StopRule, integrate
from lin2net.theory.closed_forms import reduced_coordinates, sum_and_difference_norms

DIGITS = 60
RTOL = 1e-12


def exact_gradient_descent(
    a: np.ndarray, b: np.ndarray, eta: float, phi: float, rule: StopRule
) -> tuple[int, float, float]:
    """(T, log Q(T)/Q(0), λ(T)) of GD from the vectors (a, b) of shape (d,), in 60 digits."""
    with mpmath.workdps(DIGITS):
        x = [mpmath.mpf(float(v)) for v in a]
        y = [mpmath.mpf(float(v)) for v in b]
        step, target, tol = mpmath.mpf(eta), mpmath.mpf(phi), mpmath.mpf(rule.loss_tol)
        q0 = sum(abs(u * u - v * v) for u, v in zip(x, y, strict=True))
        t = 0
        while t < rule.max_steps:
            eps = sum(u * v for u, v in zip(x, y, strict=True)) - target
            if eps * eps / 2 <= tol:
                break
            g = step * eps
            x, y = [u - g * v for u, v in zip(x, y, strict=True)], [v - g * u for u, v in zip(x, y, strict=True)]
            t += 1
        q = sum(abs(u * u - v * v) for u, v in zip(x, y, strict=True))
        lam = sum(u * u + v * v for u, v in zip(x, y, strict=True))
        return t, float(mpmath.log(q / q0)), float(lam)


def degenerate_start(small_over_lam: float, lam0: float, which: str) -> tuple[np.ndarray, np.ndarray]:
    """d = 1 start with ‖a + b‖² (which = "S") or ‖a − b‖² (which = "P") = small_over_lam · λ0."""
    small, large = math.sqrt(small_over_lam * lam0), math.sqrt((2.0 - small_over_lam) * lam0)
    total, difference = (small, large) if which == "S" else (large, small)
    return np.array([[(total + difference) / 2]]), np.array([[(total - difference) / 2]])


def random_start(d: int, lam0: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    z = np.random.default_rng(seed).standard_normal((1, 2 * d))
    z *= math.sqrt(lam0) / np.linalg.norm(z)
    return z[:, :d], z[:, d:]


def check_against_exact(a: np.ndarray, b: np.ndarray, eta: float, phi: float, rule: StopRule) -> None:
    eps0, lam0, _ = reduced_coordinates(a, b, phi)
    s0, p0 = sum_and_difference_norms(a, b)
    steps, log_q_ratio, lambda_t = exact_gradient_descent(a[0], b[0], eta, phi, rule)
    reference = integrate(ReducedState(eps0, lam0, s0, p0), eta, phi, rule)
    compiled = integrate_compiled(eps0, lam0, eta, phi, rule, threads=1, s0=s0, p0=p0)
    assert steps < rule.max_steps, "the case must converge"
    for name, result in (("reference", reference), ("compiled", compiled)):
        assert result.steps[0] == steps, name
        assert result.log_q_ratio[0] == pytest.approx(log_q_ratio, rel=RTOL, abs=0), name
        assert result.lambda_T[0] == pytest.approx(lambda_t, rel=RTOL, abs=0), name
    assert compiled.steps[0] == reference.steps[0]
    assert compiled.eps_T[0] == reference.eps_T[0] and compiled.lambda_T[0] == reference.lambda_T[0]


# (S0/λ0 or P0/λ0, which, λ0, Φ, η, loss_tol): converged within 10⁴–3·10⁴ steps.
DEGENERATE = [
    pytest.param(1e-12, "S", 1e-3, 1.0, 1e-3, 1e-12, id="a≈-b,S0/λ0=1e-12"),
    pytest.param(1e-12, "S", 100.0, 100.0, 1e-5, 1e-8, id="a≈-b,S0/λ0=1e-12,η=1e-5", marks=pytest.mark.slow),
    pytest.param(1e-12, "P", 1.0, 1.0, 1e-3, 1e-14, id="a≈b,P0/λ0=1e-12"),
    pytest.param(1e-12, "P", 100.0, 100.0, 1e-5, 1e-8, id="a≈b,P0/λ0=1e-12,η=1e-5"),
]


@pytest.mark.parametrize(("ratio", "which", "lam0", "phi", "eta", "loss_tol"), DEGENERATE)
def test_near_degenerate_starts_match_60_digits(
    ratio: float, which: str, lam0: float, phi: float, eta: float, loss_tol: float
) -> None:
    a, b = degenerate_start(ratio, lam0, which)
    s0, p0 = sum_and_difference_norms(a, b)
    assert (s0 if which == "S" else p0)[0] / lam0 == pytest.approx(ratio, rel=1e-3)
    check_against_exact(a, b, eta, phi, StopRule(loss_tol, 100_000))


@pytest.mark.parametrize(
    ("d", "lam0", "eta"), [pytest.param(3, 100.0, 1e-5, marks=pytest.mark.slow), (10, 20.0, 1e-4), (1, 0.5, 0.3)]
)
def test_tiny_and_ordinary_steps_match_60_digits(d: int, lam0: float, eta: float) -> None:
    a, b = random_start(d, lam0, seed=d)
    check_against_exact(a, b, eta, 1.0, StopRule(1e-16, 200_000))


@pytest.mark.slow
def test_the_reported_saddle_escape() -> None:
    """The case of the report: a ≈ −b, S0/λ0 = 1.8e-7, d = 1, η = 1e-4, λ0 = 1e-3
    (~1.9·10⁵ steps, most of them spent leaving the saddle)."""
    a, b = degenerate_start(1.8e-7, 1e-3, "S")
    check_against_exact(a, b, 1e-4, 1.0, StopRule(1e-12, 1_000_000))
