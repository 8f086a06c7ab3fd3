"""SGD (algorithm: sgd) against oracles: GD where SGD must equal it, full vectors,
an independent Monte Carlo, the compiled kernel against the NumPy reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats

from lin2net.dynamics.gd.cell import run_cell, simulate_cell
from lin2net.dynamics.gd.reference import Status, StopRule, TrajectoryResults
from lin2net.dynamics.initialization import initial_blocks
from lin2net.dynamics.sgd.cell import cached_data, simulate_sgd_cell, trace_sgd_trajectory
from lin2net.dynamics.sgd.data import DataSpec, build_data
from lin2net.dynamics.sgd.kernel import integrate_sgd_compiled
from lin2net.dynamics.sgd.reference import (
    WINDOW_COLUMNS,
    SGDParameters,
    SGDReducedState,
    SGDResults,
    integrate_sgd,
    sample_batch,
)
from lin2net.kernels.counter_rng import trajectory_keys
from lin2net.sweep.config import SweepConfig, parse_config
from lin2net.sweep.grid import Cell, expand_grid

GD_FLOATS = ("eps_T", "lambda_T", "sharpness_T", "log_q_ratio", "sum_eps2", "max_eta_sharpness", "max_abs_eps")
SGD_FLOATS = (*GD_FLOATS, "loss_T", *WINDOW_COLUMNS)
EXACT = ("status", "steps", "eos_steps")


def sgd_config(**overrides: Any) -> SweepConfig:
    raw: dict[str, Any] = {
        "name": "sgd-test",
        "seed": 3,
        "trajectories": 96,
        "algorithm": "sgd",
        "grid": {"eta": [0.1, 0.4], "lambda0": [0.5, 2.0], "phi": 1.0, "d": 3, "batch_size": 4},
        "data": {"n": 24},
        "loss_tol": 1e-12,
        "max_steps": 3000,
        "window": 50,
    }
    for key, value in overrides.items():
        if key == "grid":
            raw["grid"] = {**raw["grid"], **value}
        else:
            raw[key] = value
    return parse_config(raw)


def gd_twin(config: SweepConfig) -> SweepConfig:
    """The GD config with the same initializations and stopping rule."""
    resolved = config.resolved()
    for key in ("algorithm", "data", "sampling", "window"):
        resolved.pop(key)
    for key in ("batch_size", "label_noise"):
        resolved["grid"].pop(key)
    return parse_config(resolved)


def gd_cell(cell: Cell) -> Cell:
    return Cell(cell.eta, cell.lambda0, cell.phi, cell.d, cell.init, cell.eta_lambda0)


def assert_equal_to_gd(sgd: TrajectoryResults, gd: TrajectoryResults, rtol: float = 1e-12) -> None:
    """Issue 12: same status and steps, floats to 1e-12. SGD performs GD's arithmetic on
    GD's state, so the state's columns are bitwise GD's; sharpness_T (GD keeps η·S/η)
    and log_q_ratio (each integrator's own sum or product) are held to 1e-12 only."""
    for name in EXACT:
        assert_array_equal(getattr(sgd, name), getattr(gd, name), err_msg=name)
    for name in GD_FLOATS:
        assert_allclose(getattr(sgd, name), getattr(gd, name), rtol=rtol, atol=0, err_msg=name)
    for name in ("eps_T", "lambda_T", "sum_eps2", "max_eta_sharpness", "max_abs_eps"):
        assert_array_equal(getattr(sgd, name), getattr(gd, name), err_msg=name)


@pytest.mark.parametrize("integrator", ["compiled", "reduced"])
def test_full_batch_without_noise_is_gd(integrator: str) -> None:
    config = sgd_config(grid={"batch_size": 24, "eta": [0.1, 0.8], "lambda0": [1.0, 4.0]}, integrator=integrator)
    gd = gd_twin(config)
    statuses = set()
    for cell in expand_grid(config):
        _, sgd_results = simulate_cell(config, cell, threads=1)
        _, gd_results = simulate_cell(gd, gd_cell(cell), threads=1)
        assert_equal_to_gd(sgd_results, gd_results)
        statuses |= set(gd_results.status.tolist())
    assert {Status.CONVERGED, Status.DIVERGED} <= statuses  # both outcomes were compared


@pytest.mark.parametrize("sampling", ["without_replacement", "with_replacement"])
@pytest.mark.parametrize("batch_size", [1, 5, 24])
def test_ones_without_noise_is_gd_for_every_batch(sampling: str, batch_size: int) -> None:
    config = sgd_config(grid={"batch_size": batch_size}, data={"n": 24, "x": "ones"}, sampling=sampling)
    gd = gd_twin(config)
    for cell in expand_grid(config):
        _, sgd_results = simulate_cell(config, cell, threads=1)
        _, gd_results = simulate_cell(gd, gd_cell(cell), threads=1)
        assert_equal_to_gd(sgd_results, gd_results)


def test_gaussian_mini_batch_is_not_gd() -> None:
    """The oracle above can fail: a true mini-batch on varying x changes the trajectory."""
    config = sgd_config(grid={"batch_size": 4, "eta": 0.1, "lambda0": 2.0})
    cell = expand_grid(config)[0]
    _, sgd_results = simulate_cell(config, cell, threads=1)
    _, gd_results = simulate_cell(gd_twin(config), gd_cell(cell), threads=1)
    assert np.mean(sgd_results.steps != gd_results.steps) > 0.5


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


def mixed_parameters(n: int, n_data: int) -> SGDParameters:
    """Every trajectory with its own η, Φ, batch size and noise (a shard of many cells)."""
    rng = np.random.default_rng(5)
    return SGDParameters(
        eta=rng.choice([0.05, 0.2, 0.5, 0.9], n),
        phi=rng.choice([0.5, 1.0, 2.0], n),
        batch_size=rng.choice([1, 2, 5, n_data], n).astype(np.int64),
        label_noise=rng.choice([0.0, 0.0, 0.1], n),
        key=trajectory_keys(11, np.arange(n, dtype=np.int64)),
    )


def assert_kernel_equals_reference(expected: SGDResults, actual: SGDResults) -> None:
    for name in EXACT:
        assert_array_equal(getattr(actual, name), getattr(expected, name), err_msg=name)
    for name in SGD_FLOATS:
        rtol = 1e-12 if "q_ratio" in name else 1e-13  # log Q: exact product vs summed logs
        assert_allclose(getattr(actual, name), getattr(expected, name), rtol=rtol, atol=0, err_msg=name)


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
    expected = integrate_sgd(SGDReducedState(eps0, lam0), params, data, sampling, rule, window=200)
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
    expected = integrate_sgd(SGDReducedState(eps0, lam0), params, data, sampling, rule, window=100)
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


def test_a_trajectory_re_simulated_alone_reproduces_its_row() -> None:
    config = sgd_config(grid={"label_noise": 0.1, "eta": 0.3, "lambda0": 2.0}, max_steps=300, integrator="reduced")
    cell = expand_grid(config)[0]
    _, results = simulate_sgd_cell(config, cell)
    for row in (0, 17, 95):
        trace = trace_sgd_trajectory(config, cell, row)
        assert trace.t[-1] == results.steps[row]
        assert trace.eps[-1] == results.eps_T[row]
        assert trace.lam[-1] == results.lambda_T[row]
        assert_allclose(trace.log_q_ratio[-1], results.log_q_ratio[row], rtol=1e-13)


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


def test_data_set_is_normalized_and_its_loss_is_half_eps_squared_plus_floor() -> None:
    data = build_data(DataSpec(n=50, noise=0.4), 9)
    assert_allclose(np.mean(data.x2), 1.0, rtol=1e-15)
    assert abs(np.mean(data.x_nu)) < 1e-16
    for phi, m in ((1.0, 0.7), (2.0, 2.5)):
        direct = 0.5 * np.mean((m * data.x - data.labels(phi)) ** 2)
        assert_allclose(0.5 * (m - phi) ** 2 + data.noise_floor, direct, rtol=1e-13)
    assert build_data(DataSpec(n=50, noise=0.4), 9).x.tobytes() == data.x.tobytes()


def test_noisy_sgd_runs_to_max_steps_and_noise_free_converges() -> None:
    config = sgd_config(grid={"label_noise": [0.0, 0.1], "eta": 0.2, "lambda0": 1.0}, max_steps=2000)
    noise_free, noisy = (simulate_cell(config, cell, threads=1)[1] for cell in expand_grid(config))
    assert isinstance(noise_free, SGDResults) and isinstance(noisy, SGDResults)
    assert (noise_free.status == Status.CONVERGED).all()
    assert (noisy.status == Status.MAX_STEPS).all()
    assert np.isnan(noise_free.loss_window).all() and np.isfinite(noisy.loss_window).all()
    assert (noisy.loss_window > 0).all()


def test_sgd_table_has_the_new_columns_and_gd_tables_do_not() -> None:
    config = sgd_config(grid={"batch_size": [2, 6], "label_noise": [0.0, 0.05], "eta": 0.1, "lambda0": 1.0})
    cells = expand_grid(config)
    assert [(c.batch_size, c.label_noise) for c in cells] == [(2, 0.0), (2, 0.05), (6, 0.0), (6, 0.05)]
    table = run_cell(config, cells[1], threads=1)
    assert table.column("batch_size").to_pylist() == [2] * 96
    assert table.column("label_noise").to_pylist() == [0.05] * 96
    for name in ("loss_T", "q_ratio_window", "log_q_ratio_window", "sharpness_window", "loss_window", "lambda_window"):
        assert name in table.column_names
    gd = gd_twin(config)
    gd_table = run_cell(gd, expand_grid(gd)[0], threads=1)
    assert "batch_size" not in gd_table.column_names
    assert gd_table.schema.names == table.schema.names[: len(gd_table.schema.names)]


def test_cell_table_lists_every_sgd_result_column() -> None:
    from lin2net.dynamics.gd.cell import SGD_RESULT_COLUMNS
    from lin2net.dynamics.sgd.reference import WINDOW_COLUMNS

    assert SGD_RESULT_COLUMNS == ("loss_T", *WINDOW_COLUMNS)


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


def exact_sgd(
    a: np.ndarray, b: np.ndarray, params: SGDParameters, data: Any, sampling: str, rule: StopRule
) -> tuple[int, float, float]:
    """(T, log Q(T)/Q(0), λ(T)) of SGD on the vectors (a, b) of shape (d,) in 60 digits, on
    the batches of sample_batch, with g = mean_B x (a·b x − y) from the data themselves."""
    import mpmath

    phi = float(params.phi[0])
    with mpmath.workdps(60):
        x = [mpmath.mpf(float(v)) for v in a]
        y = [mpmath.mpf(float(v)) for v in b]
        xs = [mpmath.mpf(float(v)) for v in data.x]
        ys = [mpmath.mpf(phi) * xi + mpmath.mpf(float(v)) for xi, v in zip(xs, data.nu, strict=True)]
        step, target, tol = mpmath.mpf(float(params.eta[0])), mpmath.mpf(phi), mpmath.mpf(rule.loss_tol)
        q0 = sum(abs(u * u - v * v) for u, v in zip(x, y, strict=True))
        t = 0
        while t < rule.max_steps:
            m = sum(u * v for u, v in zip(x, y, strict=True))
            if (m - target) ** 2 / 2 <= tol:
                break
            batch = sample_batch(data, params, t, sampling)
            chosen = batch.index[0][batch.valid[0]].tolist()
            g = sum(xs[i] * (m * xs[i] - ys[i]) for i in chosen) / len(chosen)
            u = step * g
            x, y = [p - u * q for p, q in zip(x, y, strict=True)], [q - u * p for p, q in zip(x, y, strict=True)]
            t += 1
        q = sum(abs(u * u - v * v) for u, v in zip(x, y, strict=True))
        lam = sum(u * u + v * v for u, v in zip(x, y, strict=True))
        return t, float(mpmath.log(q / q0)), float(lam)


@pytest.mark.parametrize(
    ("small", "which", "lam0", "eta", "data_noise", "max_steps"),
    [
        pytest.param(1e-12, "S", 1e-3, 1e-2, 0.0, 20_000, id="a≈-b,S0/λ0=1e-12"),
        pytest.param(1e-12, "P", 1.0, 1e-2, 0.0, 20_000, id="a≈b,P0/λ0=1e-12"),
        pytest.param(0.5, "S", 100.0, 2e-5, 0.0, 20_000, id="η=2e-5"),
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
    reference = integrate_sgd(SGDReducedState(eps0, lam, s0, p0), params, data, "without_replacement", rule, 1)
    compiled = integrate_sgd_compiled(eps0, lam, params, data, "without_replacement", rule, 1, threads=1, s0=s0, p0=p0)
    for name, result in (("reference", reference), ("compiled", compiled)):
        assert result.steps[0] == steps, name
        assert result.log_q_ratio[0] == pytest.approx(log_q, rel=1e-12, abs=0), name
        assert result.lambda_T[0] == pytest.approx(lambda_t, rel=1e-12, abs=0), name
    assert compiled.eps_T[0] == reference.eps_T[0] and compiled.lambda_T[0] == reference.lambda_T[0]


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
        reference = integrate_sgd(SGDReducedState(eps0, lam0), params, data, "without_replacement", rule, 3)
        compiled = integrate_sgd_compiled(eps0, lam0, params, data, "without_replacement", rule, 3, threads=1)
        gd = integrate_compiled(eps0, lam0, eta, 1.0, rule, threads=1)
        assert_kernel_equals_reference(reference, compiled)
        assert_equal_to_gd(compiled, gd)
    assert reference.log_q_ratio[0] == -np.inf and compiled.q_ratio_window[0] == 0.0
    assert compiled.log_q_ratio_window[0] == -np.inf and np.isfinite(compiled.log_q_ratio_window[1:]).all()
    assert compiled.log_q_ratio[1] > 100  # |1 − u²| of about 10⁴⁶ at the first step
