"""The batched integrators: stopping rules, reduced vs full, batched vs single."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from lin2net.dynamics.gd.reference import (
    FullState,
    ReducedState,
    Status,
    StopRule,
    TrajectoryResults,
    integrate,
    start_split,
    stepped,
)
from lin2net.theory.closed_forms import reduced_coordinates, sharpness, sum_and_difference_norms


def _sphere(n: int, d: int, lambda0: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    z = np.random.default_rng(seed).standard_normal((n, 2 * d))
    z *= np.sqrt(lambda0) / np.linalg.norm(z, axis=1, keepdims=True)
    return z[:, :d], z[:, d:]


def _single(eps0: float, lam0: float, eta: float, phi: float, rule: StopRule) -> TrajectoryResults:
    return integrate(ReducedState(np.array([eps0]), np.array([lam0])), eta, phi, rule)


def test_one_reduced_step_equals_one_vector_step() -> None:
    a, b = np.array([[0.3, -1.2, 0.5]]), np.array([[0.9, 0.4, -0.2]])
    eta, phi = 0.37, 1.1
    eps, lam, q = reduced_coordinates(a, b, phi)
    reduced = stepped(start_split(ReducedState(eps, lam), np.array([phi])), np.array([eta]), np.array([phi]))
    assert isinstance(reduced, ReducedState) and reduced.s is not None and reduced.p is not None
    a1, b1 = a - eta * eps[:, None] * b, b - eta * eps[:, None] * a
    eps1, lam1, q1 = reduced_coordinates(a1, b1, phi)
    assert_allclose(reduced.eps, eps1, rtol=1e-13)
    assert_allclose(0.5 * (reduced.s + reduced.p), lam1, rtol=1e-13)
    assert_allclose(q1, q * abs(1 - eta**2 * eps**2), rtol=1e-13)  # docs/math.md §2


def test_diagnostics_match_a_hand_rolled_loop() -> None:
    eps0, lam0, eta, phi = -0.8, 1.5, 0.4, 1.0
    rule = StopRule(loss_tol=1e-14, max_steps=10_000)
    out = _single(eps0, lam0, eta, phi, rule)
    eps, lam, log_q, s2, steps, max_es, eos, max_abs = eps0, lam0, 0.0, 0.0, 0, 0.0, 0, 0.0
    while 0.5 * eps * eps > rule.loss_tol:
        es = eta * float(sharpness(eps, lam, phi))
        max_es, eos, max_abs = max(max_es, es), eos + (es > 2), max(max_abs, abs(eps))
        log_q += np.log(abs(1 - eta**2 * eps**2))
        s2 += eps * eps
        eps, lam = (
            eps * (1 - eta * lam + eta**2 * eps * (eps + phi)),
            (1 + eta**2 * eps**2) * lam - 4 * eta * eps * (eps + phi),
        )
        steps += 1
    max_es = max(max_es, eta * float(sharpness(eps, lam, phi)))
    assert out.status[0] == Status.CONVERGED and out.steps[0] == steps
    assert_allclose(
        [
            out.eps_T[0],
            out.lambda_T[0],
            out.log_q_ratio[0],
            out.sum_eps2[0],
            out.max_eta_sharpness[0],
            out.max_abs_eps[0],
        ],
        [eps, lam, log_q, s2, max_es, max_abs],
        rtol=1e-12,
    )
    assert out.eos_steps[0] == eos


def test_stopping_rules() -> None:
    phi = 1.0
    rule = StopRule(loss_tol=1e-10, max_steps=50, divergence_threshold=1e6)
    already = _single(1e-7, 2.0, 0.1, phi, rule)
    assert (already.status[0], already.steps[0], already.sum_eps2[0], already.log_q_ratio[0]) == (
        Status.CONVERGED,
        0,
        0,
        0,
    )
    slow = _single(-0.9, 0.2, 1e-4, phi, rule)
    assert (slow.status[0], slow.steps[0]) == (Status.MAX_STEPS, 50)
    # η·λ far beyond 2 with a large residual blows up within a few steps
    blown = _single(5.0, 12.0, 2.0, phi, rule)
    assert blown.status[0] == Status.DIVERGED and blown.steps[0] < 50
    assert not np.abs(blown.eps_T[0]) <= 1e6


def test_overflow_is_quiet_and_recorded() -> None:
    rule = StopRule(loss_tol=1e-10, max_steps=100, divergence_threshold=np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = integrate(ReducedState(np.array([3.0, 1e100]), np.array([40.0, 1e200])), 3.0, 1.0, rule)
    assert_array_equal(out.status, [Status.DIVERGED, Status.DIVERGED])
    assert not np.isfinite(out.eps_T).any()


@pytest.mark.slow  # many trajectories or subprocesses: CI's slow pass (issue 19 §5, fast suite within 90 s)
def test_batched_equals_one_at_a_time() -> None:
    a, b = _sphere(60, 5, 2.1, seed=1)
    eps0, lam0, _ = reduced_coordinates(a, b, 1.0)
    rule = StopRule(loss_tol=1e-12, max_steps=3000, divergence_threshold=1e8)
    for eta in (0.05, 0.9, 1.2):  # stable, edge of stability, partly divergent
        batch = integrate(ReducedState(eps0, lam0), eta, 1.0, rule)
        for i in range(len(eps0)):
            one = _single(eps0[i], lam0[i], eta, 1.0, rule)
            for name in TrajectoryResults.__dataclass_fields__:
                assert_array_equal(getattr(batch, name)[i], getattr(one, name)[0], err_msg=f"{name} eta={eta} i={i}")


@pytest.mark.parametrize("d", [1, 3, 10, 40])
@pytest.mark.parametrize(("eta", "lambda0"), [(0.05, 1.0), (0.2, 3.0), (0.5, 0.5)])
def test_reduced_map_agrees_with_full_vectors(d: int, eta: float, lambda0: float) -> None:
    """Non-chaotic cells (η·S < 2 throughout): same status, steps ±1, q_ratio, λ_T."""
    phi = 1.0
    a, b = _sphere(200, d, lambda0, seed=d)
    eps0, lam0, _ = reduced_coordinates(a, b, phi)
    rule = StopRule(loss_tol=1e-10, max_steps=20_000)
    reduced = integrate(ReducedState(eps0, lam0, *sum_and_difference_norms(a, b)), eta, phi, rule)
    full = integrate(FullState(a, b), eta, phi, rule)
    assert np.all(reduced.max_eta_sharpness < 2)
    assert_array_equal(reduced.status, full.status)
    assert np.all(reduced.status == Status.CONVERGED)
    assert np.abs(reduced.steps - full.steps).max() <= 1
    same = reduced.steps == full.steps
    assert same.mean() > 0.95
    # q_ratio from the product formula vs Q measured on the vectors
    assert_allclose(reduced.q_ratio[same], full.q_ratio[same], rtol=1e-9)
    assert_allclose(reduced.lambda_T[same], full.lambda_T[same], rtol=1e-9)


def test_edge_of_stability_statistics_agree() -> None:
    """Past η·S = 2 rounding differences grow: compare the two paths statistically."""
    phi, eta = 1.0, 0.95
    a, b = _sphere(400, 6, 2.0, seed=11)
    eps0, lam0, _ = reduced_coordinates(a, b, phi)
    rule = StopRule(loss_tol=1e-10, max_steps=50_000)
    reduced = integrate(ReducedState(eps0, lam0, *sum_and_difference_norms(a, b)), eta, phi, rule)
    full = integrate(FullState(a, b), eta, phi, rule)
    assert (reduced.eos_steps > 0).mean() > 0.5
    for out in (reduced, full):
        assert (out.status == Status.CONVERGED).mean() > 0.95
    assert_allclose(np.median(reduced.q_ratio), np.median(full.q_ratio), rtol=0.05)
    assert_allclose(np.median(reduced.steps), np.median(full.steps), rtol=0.1)
