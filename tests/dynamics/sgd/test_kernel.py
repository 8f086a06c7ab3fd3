"""The compiled SGD kernel (lin2net.dynamics.sgd.kernel) against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from lin2net.dynamics.gd.reference import ReducedState
from lin2net.dynamics.protocol import Status, StopRule
from lin2net.dynamics.sgd.data import DataSpec, build_data
from lin2net.dynamics.sgd.kernel import integrate_sgd_compiled
from lin2net.dynamics.sgd.reference import (
    SGDParameters,
    integrate_sgd,
)
from lin2net.kernels.counter_rng import trajectory_keys
from tests.dynamics.sgd.helpers import (
    EXACT,
    SGD_FLOATS,
    assert_equal_to_gd,
    assert_kernel_equals_reference,
    mixed_parameters,
)


@pytest.mark.parametrize("sampling", ["without_replacement", "with_replacement"])
@pytest.mark.parametrize("data_noise", [0.0, 0.3])
def test_compiled_kernel_equals_numpy_reference(sampling: str, data_noise: float) -> None:
    n, n_data = 400, 20
    rng = np.random.default_rng(2)
    lam0 = rng.uniform(0.3, 4.0, n)
    eps0 = 0.5 * lam0 * rng.uniform(-0.95, 0.95, n) - 1.0
    params = mixed_parameters(n, n_data)
    eps0 = eps0 + 1.0 - params.phi  # a·b = (λ0/2)·u as for a random start
    data = build_data(DataSpec(n=n_data, noise=data_noise), 0)
    rule = StopRule(1e-12, 1500)
    expected = integrate_sgd(ReducedState(eps0, lam0), params, data, sampling, rule, window=200)
    actual = integrate_sgd_compiled(eps0, lam0, params, data, sampling, rule, window=200, threads=1)
    assert_kernel_equals_reference(expected, actual)
    assert {Status.DIVERGED, Status.MAX_STEPS} <= set(expected.status.tolist())
    assert np.isfinite(expected.loss_window).any() and np.isnan(expected.loss_window).any()


@pytest.mark.parametrize("sampling", ["without_replacement", "with_replacement"])
@pytest.mark.parametrize(("batch_size", "label_noise"), [(1, 0.05), (3, 0.05), (40, 0.0), (40, 0.05)])
def test_compiled_kernel_equals_numpy_reference_for_one_batch_size(
    sampling: str, batch_size: int, label_noise: float
) -> None:
    """Every lane with the same batch size: the kernel's batch-of-one path, and the full
    batch without noise (GD's single pass until the final window)."""
    n, n_data = 200, 40
    rng = np.random.default_rng(7)
    lam0 = rng.uniform(0.3, 4.0, n)
    eps0 = 0.5 * lam0 * rng.uniform(-0.95, 0.95, n) - 1.0
    keys = trajectory_keys(13, np.arange(n, dtype=np.int64))
    params = SGDParameters(
        eta=rng.choice([0.005, 0.3, 0.9], n),
        phi=np.ones(n),
        batch_size=np.full(n, batch_size, dtype=np.int64),
        label_noise=np.full(n, label_noise),
        key=keys,
    )
    data = build_data(DataSpec(n=n_data, noise=0.2), 0)
    rule = StopRule(1e-12, 600)
    expected = integrate_sgd(ReducedState(eps0, lam0), params, data, sampling, rule, window=100)
    actual = integrate_sgd_compiled(eps0, lam0, params, data, sampling, rule, window=100, threads=1)
    assert_kernel_equals_reference(expected, actual)
    assert Status.MAX_STEPS in set(expected.status.tolist())  # the final window was reached


def test_results_do_not_depend_on_thread_count_or_batching() -> None:
    n, n_data = 600, 30
    rng = np.random.default_rng(4)
    lam0 = rng.uniform(0.3, 4.0, n)
    params = mixed_parameters(n, n_data)
    eps0 = 0.5 * lam0 * rng.uniform(-0.95, 0.95, n) - params.phi
    data = build_data(DataSpec(n=n_data, noise=0.1), 0)
    rule = StopRule(1e-12, 800)
    one = integrate_sgd_compiled(eps0, lam0, params, data, "without_replacement", rule, 100, threads=1)
    two = integrate_sgd_compiled(eps0, lam0, params, data, "without_replacement", rule, 100, threads=2)
    half = integrate_sgd_compiled(
        eps0[::2], lam0[::2], params.take(np.arange(0, n, 2)), data, "without_replacement", rule, 100, threads=1
    )
    for name in (*EXACT, *SGD_FLOATS):
        assert_array_equal(getattr(two, name), getattr(one, name), err_msg=name)
        assert_array_equal(getattr(half, name), getattr(one, name)[::2], err_msg=name)


def test_exceptional_q_factors_match_the_reference_and_gd() -> None:
    """A factor 1 − u² = 0 (u = ηg = 1 exactly: log Q = −inf from then on) and factors far
    above 2⁶⁰ (|u| ~ 10²³), which the GD kernel replays and the SGD kernel scales per
    step: kernel, reference and GD agree, the final window (Q = 0, log Q = −inf) included."""
    from lin2net.dynamics.gd.kernel import integrate_compiled

    eps0, lam0 = np.array([2.0, 1e20, 3.0, -0.75]), np.array([10.0, 4e20, 10.0, 0.5])
    eta = np.array([0.5, 1e3, 0.1, 4.0])
    params = SGDParameters(
        eta=eta,
        phi=np.ones(4),
        batch_size=np.array([1, 1, 8, 3]),
        label_noise=np.zeros(4),
        key=trajectory_keys(0, np.arange(4, dtype=np.int64)),
    )
    data = build_data(DataSpec(n=8, x="ones"), 0)
    for max_steps in (50, 3):
        rule = StopRule(1e-12, max_steps)
        reference = integrate_sgd(ReducedState(eps0, lam0), params, data, "without_replacement", rule, 3)
        compiled = integrate_sgd_compiled(eps0, lam0, params, data, "without_replacement", rule, 3, threads=1)
        gd = integrate_compiled(eps0, lam0, eta, 1.0, rule, threads=1)
        assert_kernel_equals_reference(reference, compiled)
        assert_equal_to_gd(compiled, gd)
    assert reference.log_q_ratio[0] == -np.inf and compiled.q_ratio_window[0] == 0.0
    assert compiled.log_q_ratio_window[0] == -np.inf and np.isfinite(compiled.log_q_ratio_window[1:]).all()
    assert compiled.log_q_ratio[1] > 100  # |1 − u²| of about 10⁴⁶ at the first step


@pytest.mark.parametrize("sampling", ["without_replacement", "with_replacement"])
@pytest.mark.parametrize("x", [(1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 1.0), "ones"])
@pytest.mark.parametrize("data_noise", [0.0, 0.3])
def test_kernel_shortcuts_equal_the_reference(sampling: str, x: str | tuple[float, ...], data_noise: float) -> None:
    """The kernel's shortcuts against the reference's drawn batches: data with x² = 1 and
    x ν = 0 at every point (x = ±1 or ones, no data noise) draw no batch (every batch has
    s = 1, r = 0 exactly), data without noise skip the x ν gather; with data noise
    (x ν ≠ 0) the batches are drawn. Mixed batch sizes and label noise (whose normal
    each step still draws)."""
    n = 160
    rng = np.random.default_rng(3)
    lam0 = rng.uniform(0.3, 4.0, n)
    params = mixed_parameters(n, 8)
    eps0 = 0.5 * lam0 * rng.uniform(-0.95, 0.95, n) - params.phi
    data = build_data(DataSpec(n=8, x=x, noise=data_noise), 0)
    assert (data.x2 == 1.0).all() and (data.x_nu == 0.0).all() == (data_noise == 0.0)
    rule = StopRule(1e-12, 400)
    expected = integrate_sgd(ReducedState(eps0, lam0), params, data, sampling, rule, window=50)
    actual = integrate_sgd_compiled(eps0, lam0, params, data, sampling, rule, window=50, threads=1)
    assert_kernel_equals_reference(expected, actual)
    ended = set(expected.status.tolist())
    assert Status.MAX_STEPS in ended and (Status.CONVERGED in ended or data_noise > 0)
