"""The SGD reference (lin2net.dynamics.sgd.reference) against oracles: full vectors,
an independent Monte Carlo, 60 digits, the batches and the normals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats

from lin2net.dynamics.cells import simulate_cell
from lin2net.dynamics.gd.reference import ReducedState
from lin2net.dynamics.initialization import initial_blocks
from lin2net.dynamics.protocol import Status, StopRule
from lin2net.dynamics.sgd.cell import cached_data
from lin2net.dynamics.sgd.data import DataSpec, build_data
from lin2net.dynamics.sgd.kernel import integrate_sgd_compiled
from lin2net.dynamics.sgd.reference import (
    SGDParameters,
    SGDResults,
    integrate_sgd,
    sample_batch,
)
from lin2net.kernels.counter_rng import trajectory_keys
from lin2net.sweep.grid import expand_grid
from tests.dynamics.sgd.helpers import (
    EXACT,
    exact_sgd,
    sgd_config,
)


@pytest.mark.parametrize(
    ("batch_size", "label_noise", "data_noise", "sampling"),
    [
        (4, 0.0, 0.0, "without_replacement"),
        (4, 0.2, 0.0, "without_replacement"),
        (1, 0.0, 0.3, "with_replacement"),
        (7, 0.1, 0.3, "with_replacement"),
        (24, 0.1, 0.3, "without_replacement"),
    ],
)
def test_reduced_map_equals_full_vectors_on_the_same_batches(
    batch_size: int, label_noise: float, data_noise: float, sampling: str
) -> None:
    """The full path computes g from a, b and the batch's (x_i, y_i); the reduced path from (ε, λ)."""
    overrides: dict[str, Any] = {
        "grid": {"batch_size": batch_size, "label_noise": label_noise, "eta": 0.2, "lambda0": [0.5, 2.0]},
        "data": {"n": 24, "noise": data_noise},
        "sampling": sampling,
        "max_steps": 400,
        "loss_tol": 1e-8,
    }
    reduced_config = sgd_config(integrator="reduced", **overrides)
    full_config = sgd_config(integrator="full", **overrides)
    for cell in expand_grid(reduced_config):
        initial, reduced = simulate_cell(reduced_config, cell)
        _, full = simulate_cell(full_config, cell)
        for name in EXACT:
            assert_array_equal(getattr(full, name), getattr(reduced, name), err_msg=name)
        for name in ("lambda_T", "sharpness_T", "max_eta_sharpness", "sharpness_window"):
            assert_allclose(getattr(full, name), getattr(reduced, name), rtol=1e-12, err_msg=name)
        # The vectors carry ε = a·b − Φ and Q = Σ|a_i² − b_i²| with cancellation:
        # absolute errors of ~1e-16 λ, so compare those on that scale.
        for name in ("eps_T", "max_abs_eps"):
            assert_allclose(getattr(full, name), getattr(reduced, name), rtol=1e-12, atol=1e-14, err_msg=name)
        assert isinstance(full, SGDResults) and isinstance(reduced, SGDResults)
        assert_allclose(full.loss_T, reduced.loss_T, rtol=1e-12, atol=1e-14 * np.abs(reduced.eps_T).max())
        q_scale = 1e-14 * reduced.lambda_T / (initial.q0 * reduced.q_ratio)
        assert (np.abs(full.log_q_ratio - reduced.log_q_ratio) <= 1e-12 * np.abs(reduced.log_q_ratio) + q_scale).all()


def test_label_noise_log_q_matches_independent_monte_carlo() -> None:
    """KS test: log Q(T)/Q(0) after T steps of label-noise SGD against full vectors
    stepped by a Monte Carlo written here (numpy Generator batches, one ξ per example)."""
    steps, n_data, batch, sigma, eta, phi = 60, 16, 4, 0.5, 0.3, 1.0
    config = sgd_config(
        trajectories=3000,
        grid={"eta": eta, "lambda0": 1.0, "phi": phi, "d": 2, "batch_size": batch, "label_noise": sigma},
        data={"n": n_data, "noise": 0.2},
        max_steps=steps,
        window=1,
    )
    cell = expand_grid(config)[0]
    _, results = simulate_cell(config, cell, threads=1)
    assert (results.status == Status.MAX_STEPS).all()
    data = cached_data(DataSpec(n=n_data, noise=0.2), config.seed)
    a, b = next(initial_blocks(config, cell)).a.copy(), next(initial_blocks(config, cell)).b.copy()
    q0 = np.abs(a * a - b * b).sum(axis=1)

    def monte_carlo(noise_scale: float) -> np.ndarray:
        rng = np.random.default_rng(12345)
        x, y = data.x, data.labels(phi)
        va, vb = a.copy(), b.copy()
        rows = np.arange(va.shape[0])[:, None]
        for _ in range(steps):
            index = np.argsort(rng.random((va.shape[0], n_data)), axis=1)[:, :batch]  # without replacement
            xb = x[index]
            yb = y[index] + noise_scale * sigma * rng.standard_normal(index.shape)
            m = np.einsum("kd,kd->k", va, vb)
            g = (xb * (m[:, None] * xb - yb)).mean(axis=1)[:, None]
            va, vb = va - eta * g * vb, vb - eta * g * va
        del rows
        log_ratio: np.ndarray = np.log(np.abs(va * va - vb * vb).sum(axis=1) / q0)
        return log_ratio

    same = stats.ks_2samp(results.log_q_ratio, monte_carlo(1.0))
    assert same.pvalue > 0.01, same
    wrong = stats.ks_2samp(results.log_q_ratio, monte_carlo(np.sqrt(3.0)))  # 3× the noise variance
    assert wrong.pvalue < 1e-4, wrong  # the test has the power to see a wrong noise law
    assert np.std(results.log_q_ratio) > 0.01


def test_batches_are_uniform_subsets() -> None:
    """Without replacement: distinct indices, every index equally often (chi-square)."""
    data = build_data(DataSpec(n=10), 0)
    k = 5000
    params = SGDParameters.broadcast(k, 0.1, 1.0, 4, 0.0, trajectory_keys(0, np.arange(k, dtype=np.int64)))
    batch = sample_batch(data, params, 7, "without_replacement")
    assert (np.sort(batch.index, axis=1)[:, 1:] != np.sort(batch.index, axis=1)[:, :-1]).all()
    counts = np.bincount(batch.index.ravel(), minlength=10)
    assert stats.chisquare(counts).pvalue > 1e-3
    again = sample_batch(data, params, 8, "without_replacement")
    assert (again.index != batch.index).any(axis=1).mean() > 0.9  # a fresh batch each step


def test_standard_normal_is_box_muller_to_rounding_and_normal() -> None:
    """The arithmetic ln and cos against the C library's, and the law against N(0, 1)."""
    import math

    from lin2net.dynamics.sgd.reference import standard_normal

    words1 = trajectory_keys(1, np.arange(100_000, dtype=np.int64))
    words2 = trajectory_keys(2, np.arange(100_000, dtype=np.int64))
    z = standard_normal(words1, words2)
    u1, u2 = (((w >> np.uint64(11)) + np.uint64(1)) * 2.0**-53 for w in (words1, words2))
    libm = np.array([math.sqrt(-2 * math.log(a)) * math.cos(2 * math.pi * b) for a, b in zip(u1, u2, strict=True)])
    assert_allclose(z, libm, rtol=0, atol=4e-15)  # libm's own 2πu rounding is of this size
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # Ends and octant boundaries: u = 2⁻⁵³, 1, and just above 1/8, 1/4, 3/8, …, 7/8.
    edges = np.array([0, 2**64 - 1, *(k << 61 for k in range(1, 8))], dtype=np.uint64)
    u = ((edges >> np.uint64(11)) + np.uint64(1)) * 2.0**-53
    expected = [math.sqrt(-2 * math.log(a)) * math.cos(2 * math.pi * a) for a in u]
    assert_allclose(standard_normal(edges, edges), expected, rtol=0, atol=4e-15)
    sine = [math.sqrt(-2 * math.log(a)) * math.sin(2 * math.pi * a) for a in u]
    assert_allclose(standard_normal(edges, edges, sine=True), sine, rtol=0, atol=4e-15)


def test_paired_normals_are_sine_and_cosine_and_independent() -> None:
    """Steps 2i and 2i + 1 take the cosine and the sine of one Box–Muller pair: each
    exactly the libm formula to rounding, each N(0, 1), uncorrelated with each other."""
    import math

    from lin2net.dynamics.sgd.reference import standard_normal
    from lin2net.kernels.counter_rng import step_counter, word

    words1 = trajectory_keys(3, np.arange(50_000, dtype=np.int64))
    words2 = trajectory_keys(4, np.arange(50_000, dtype=np.int64))
    cosine, sine = standard_normal(words1, words2), standard_normal(words1, words2, sine=True)
    u1, u2 = (((w >> np.uint64(11)) + np.uint64(1)) * 2.0**-53 for w in (words1, words2))
    libm = np.array([math.sqrt(-2 * math.log(a)) * math.sin(2 * math.pi * b) for a, b in zip(u1, u2, strict=True)])
    assert_allclose(sine, libm, rtol=0, atol=4e-15)
    assert stats.kstest(sine, "norm").pvalue > 1e-3
    assert abs(np.corrcoef(cosine, sine)[0, 1]) < 4 / np.sqrt(cosine.size)
    assert abs(np.corrcoef(cosine**2, sine**2)[0, 1]) < 4 / np.sqrt(cosine.size)  # not just uncorrelated
    # In a run: step 2i + 1 uses the sine of step 2i's words, step 2i + 2 fresh words.
    n_data = 8
    data = build_data(DataSpec(n=n_data, x="ones"), 0)
    keys = trajectory_keys(0, np.arange(20_000, dtype=np.int64))
    params = SGDParameters.broadcast(keys.size, 0.1, 1.0, 1, 1.0, keys)
    z = [sample_batch(data, params, t, "without_replacement").noise for t in range(4)]  # s = 1, B = 1: noise = z
    pair = [
        word(keys, step_counter(np.zeros(keys.size, dtype=np.uint64)), np.full(keys.size, j, np.uint64)) for j in (0, 1)
    ]
    assert_array_equal(z[0], standard_normal(pair[0], pair[1]))
    assert_array_equal(z[1], standard_normal(pair[0], pair[1], sine=True))
    for a, b in ((0, 1), (1, 2), (0, 2), (2, 3)):
        assert abs(np.corrcoef(z[a] ** 2, z[b] ** 2)[0, 1]) < 4 / np.sqrt(keys.size)


@pytest.mark.parametrize(
    ("small", "which", "lam0", "eta", "data_noise", "max_steps"),
    [
        pytest.param(1e-12, "S", 1e-3, 1e-2, 0.0, 20_000, id="a≈-b,S0/λ0=1e-12"),
        pytest.param(1e-12, "P", 1.0, 1e-2, 0.0, 20_000, id="a≈b,P0/λ0=1e-12"),
        pytest.param(0.5, "S", 100.0, 2e-5, 0.0, 20_000, id="η=2e-5", marks=pytest.mark.slow),
        pytest.param(0.5, "S", 1.0, 0.2, 0.3, 1500, id="noisy data"),
    ],
)
def test_mini_batch_sgd_matches_60_digits(
    small: float, which: str, lam0: float, eta: float, data_noise: float, max_steps: int
) -> None:
    """SGD's (ε, S, P) state against the vectors stepped in 60 digits on the same batches
    (gradient from the data points themselves): starts with S0 or P0 = 1e-12·λ0, a tiny
    η, data with noise (r ≠ 0). T exactly, log Q(T)/Q(0) and λ(T) to 1e-12."""
    from lin2net.theory.closed_forms import reduced_coordinates, sum_and_difference_norms

    total, difference = np.sqrt(small * lam0), np.sqrt((2.0 - small) * lam0)
    if which == "P":
        total, difference = difference, total
    a, b = np.array([[(total + difference) / 2]]), np.array([[(total - difference) / 2]])
    data = build_data(DataSpec(n=8, noise=data_noise), 1)
    params = SGDParameters.broadcast(1, eta, 1.0, 3, 0.0, trajectory_keys(5, np.arange(1, dtype=np.int64)))
    rule = StopRule(1e-14, max_steps)
    eps0, lam, _ = reduced_coordinates(a, b, 1.0)
    s0, p0 = sum_and_difference_norms(a, b)
    steps, log_q, lambda_t = exact_sgd(a[0], b[0], params, data, "without_replacement", rule)
    assert steps < max_steps if data_noise == 0 else steps == max_steps
    reference = integrate_sgd(ReducedState(eps0, lam, s0, p0), params, data, "without_replacement", rule, 1)
    compiled = integrate_sgd_compiled(eps0, lam, params, data, "without_replacement", rule, 1, threads=1, s0=s0, p0=p0)
    for name, result in (("reference", reference), ("compiled", compiled)):
        assert result.steps[0] == steps, name
        assert result.log_q_ratio[0] == pytest.approx(log_q, rel=1e-12, abs=0), name
        assert result.lambda_T[0] == pytest.approx(lambda_t, rel=1e-12, abs=0), name
    assert compiled.eps_T[0] == reference.eps_T[0] and compiled.lambda_T[0] == reference.lambda_T[0]
