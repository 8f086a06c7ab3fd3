"""The compiled kernel against the NumPy reference driver on the reduced map.

The two run the same IEEE arithmetic on (ε, S, P) in the same order, so status,
steps and eos_steps must be equal exactly and the float columns to 1e-12
relative (log_q_ratio is the only column computed differently: an exact
product with one logarithm instead of a compensated sum of logarithms).
Also: per-trajectory η and Φ, and cancellation (a flag, and Ctrl-C).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest

from lin2net.dynamics.cells import simulate_cell
from lin2net.dynamics.gd.kernel import LANES, KernelCancelled, available_threads, converged_bound, integrate_compiled
from lin2net.dynamics.gd.reference import ReducedState, Status, StopRule, TrajectoryResults, integrate
from lin2net.sweep.config import DEFAULTS, INTEGRATORS, parse_config
from lin2net.sweep.grid import expand_grid

FLOAT_COLUMNS = (
    "eps_T",
    "lambda_T",
    "sharpness_T",
    "log_q_ratio",
    "sum_eps2",
    "max_eta_sharpness",
    "max_abs_eps",
)
EXACT_COLUMNS = ("status", "steps", "eos_steps")


def sphere_residuals(rng: np.random.Generator, n: int, d: int, lambda0: float, phi: float) -> np.ndarray:
    """ε0 for (a, b) uniform on the sphere of radius² λ0 in R^{2d} (docs/math.md §5)."""
    return 0.5 * lambda0 * (2.0 * rng.beta(d / 2, d / 2, size=n) - 1.0) - phi


def reference(eps0: np.ndarray, lam0: np.ndarray, eta: float, phi: float, rule: StopRule) -> TrajectoryResults:
    return integrate(ReducedState(eps0, lam0), eta, phi, rule)


def assert_same_results(expected: TrajectoryResults, actual: TrajectoryResults) -> None:
    for name in EXACT_COLUMNS:
        np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name), err_msg=name)
    for name in FLOAT_COLUMNS:
        np.testing.assert_allclose(getattr(actual, name), getattr(expected, name), rtol=1e-12, atol=0, err_msg=name)


# (eta, lambda0, phi, d, loss_tol, max_steps, statuses that must occur)
CASES = [
    pytest.param(0.1, 1.0, 1.0, 10, 5e-13, 100_000, {Status.CONVERGED}, id="W1-stable"),
    pytest.param(0.95, 2.0, 1.0, 10, 5e-13, 100_000, {Status.CONVERGED}, id="W2-edge-of-stability"),
    pytest.param(0.7, 4.0, 1.0, 1, 1e-10, 20_000, {Status.DIVERGED, Status.CONVERGED}, id="eos-and-diverging"),
    pytest.param(1.0, 2.2, 1.0, 1, 1e-10, 20_000, {Status.DIVERGED, Status.MAX_STEPS}, id="chaotic-max-steps"),
    pytest.param(1.5, 4.0, 1.0, 1, 1e-10, 5_000, {Status.DIVERGED}, id="diverging-d1"),
    pytest.param(0.001, 1.0, 1.0, 10, 1e-10, 300, {Status.MAX_STEPS}, id="max-steps"),
    pytest.param(0.3, 1.0, 1.0, 10, 10.0, 1_000, {Status.CONVERGED}, id="converged-at-T0"),
    pytest.param(0.05, 0.01, 1.0, 100, 1e-10, 20_000, {Status.CONVERGED}, id="near-saddle"),
    pytest.param(0.5, 2.0, 0.0, 10, 1e-10, 20_000, {Status.CONVERGED}, id="phi-zero"),
    pytest.param(0.002, 0.01, 1.0, 1, 1e-10, 5_000, {Status.CONVERGED, Status.MAX_STEPS}, id="long-runs"),
]


@pytest.mark.parametrize(("eta", "lambda0", "phi", "d", "loss_tol", "max_steps", "must_occur"), CASES)
def test_matches_numpy_reference(
    eta: float, lambda0: float, phi: float, d: int, loss_tol: float, max_steps: int, must_occur: set[Status]
) -> None:
    rng = np.random.default_rng(20240611)
    n = 203  # not a multiple of the lane count or of the thread count
    eps0 = sphere_residuals(rng, n, d, lambda0, phi)
    lam0 = np.full(n, lambda0)
    rule = StopRule(loss_tol, max_steps)
    expected = reference(eps0, lam0, eta, phi, rule)
    actual = integrate_compiled(eps0, lam0, eta, phi, rule)
    assert must_occur <= {Status(s) for s in np.unique(expected.status)}, "case does not exercise its regime"
    assert_same_results(expected, actual)


def test_matches_numpy_reference_over_a_grid() -> None:
    """Many cells across stable, edge-of-stability, chaotic and diverging regimes,
    with gaussian initial scales (λ0 varies per trajectory)."""
    rng = np.random.default_rng(7)
    rule = StopRule(1e-10, 3_000)
    seen: set[int] = set()
    eos_cells = 0
    for eta in np.geomspace(0.02, 1.6, 7):
        for lambda0 in (0.05, 0.5, 2.0, 5.0):
            for phi in (0.0, 1.0):
                n = 64
                lam0 = lambda0 * rng.chisquare(20, size=n) / 20
                eps0 = sphere_residuals(rng, n, 10, 1.0, 0.0) * lam0 - phi
                expected = reference(eps0, lam0, float(eta), phi, rule)
                actual = integrate_compiled(eps0, lam0, float(eta), phi, rule)
                assert_same_results(expected, actual)
                seen.update(np.unique(expected.status).tolist())
                eos_cells += bool(expected.eos_steps.any())
    assert seen == {int(s) for s in Status}
    assert eos_cells > 0


def test_state_and_sums_are_bitwise_equal() -> None:
    """Same IEEE operations in the same order (no fast-math, no FMA contraction):
    every column but log_q_ratio is bitwise equal, even in chaotic runs."""
    rng = np.random.default_rng(11)
    rule = StopRule(1e-10, 20_000)
    for eta, lambda0 in ((0.1, 1.0), (1.0, 2.2), (0.7, 4.0)):
        eps0 = sphere_residuals(rng, 100, 1, lambda0, 1.0)
        lam0 = np.full(100, lambda0)
        expected = reference(eps0, lam0, eta, 1.0, rule)
        actual = integrate_compiled(eps0, lam0, eta, 1.0, rule)
        for name in set(FLOAT_COLUMNS) - {"log_q_ratio"}:
            np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name), err_msg=name)


def test_special_values_and_stop_order() -> None:
    """T = 0 outcomes for non-finite and out-of-bound starts, and a Q factor of
    exactly 0 (η|ε| = 1) whose log is −inf in both paths."""
    eta, phi = 0.5, 1.0
    eps0 = np.array([np.nan, np.inf, -np.inf, 0.0, 1e-7, 2e30, -2.0, 0.5])
    lam0 = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0, np.inf])
    rule = StopRule(1e-12, 50, divergence_threshold=1e30)
    expected = reference(eps0, lam0, eta, phi, rule)
    actual = integrate_compiled(eps0, lam0, eta, phi, rule)
    assert_same_results(expected, actual)
    np.testing.assert_array_equal(actual.steps[:6], 0)
    assert actual.status[3] == Status.CONVERGED and actual.status[5] == Status.DIVERGED
    assert actual.log_q_ratio[6] == -np.inf  # |1 − η²ε0²| = 0 at t = 0


def test_results_do_not_depend_on_thread_count() -> None:
    if available_threads() < 2:
        pytest.skip("needs at least 2 numba threads")
    rng = np.random.default_rng(3)
    n = 10 * LANES + 5
    eps0 = sphere_residuals(rng, n, 10, 2.0, 1.0)
    lam0 = np.full(n, 2.0)
    rule = StopRule(1e-10, 10_000)
    one = integrate_compiled(eps0, lam0, 0.9, 1.0, rule, threads=1)
    two = integrate_compiled(eps0, lam0, 0.9, 1.0, rule, threads=2)
    for name in TrajectoryResults.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(two, name), getattr(one, name), err_msg=name)


def test_no_warning_escapes_on_divergence() -> None:
    rng = np.random.default_rng(5)
    eps0 = sphere_residuals(rng, 100, 10, 10.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = integrate_compiled(eps0, np.full(100, 10.0), 1.0, 1.0, StopRule(1e-10, 1_000, 1e300))
    assert (result.status == Status.DIVERGED).all()


@pytest.mark.parametrize("n", [0, 1, LANES - 1, LANES + 1])
def test_small_batches(n: int) -> None:
    rng = np.random.default_rng(n)
    eps0 = sphere_residuals(rng, n, 5, 1.0, 1.0)
    lam0 = np.ones(n)
    rule = StopRule(1e-10, 1_000)
    assert_same_results(reference(eps0, lam0, 0.3, 1.0, rule), integrate_compiled(eps0, lam0, 0.3, 1.0, rule))


@pytest.mark.parametrize("threads", [0, -1, 10_000])
def test_rejects_bad_thread_counts(threads: int) -> None:
    with pytest.raises(ValueError, match="threads must be between 1 and"):
        integrate_compiled(np.zeros(3), np.ones(3), 0.1, 1.0, StopRule(1e-10, 10), threads=threads)


def test_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="equal length"):
        integrate_compiled(np.zeros(3), np.ones(4), 0.1, 1.0, StopRule(1e-10, 10))


def test_compiled_is_the_default_integrator_and_matches_reduced_through_the_cell() -> None:
    assert DEFAULTS["integrator"] == "compiled" and "compiled" in INTEGRATORS
    raw = {"trajectories": 300, "grid": {"eta": [0.2, 0.9], "lambda0": [0.5, 2.1], "d": [1, 10]}, "max_steps": 5_000}
    compiled = parse_config(raw)
    assert compiled.integrator == "compiled"
    reduced = parse_config({**raw, "integrator": "reduced"})
    for cell in expand_grid(compiled):
        initial_c, results_c = simulate_cell(compiled, cell, threads=1)
        initial_r, results_r = simulate_cell(reduced, cell)
        np.testing.assert_array_equal(initial_c.eps0, initial_r.eps0)
        assert_same_results(results_r, results_c)


def test_cell_table_constants_and_status_labels() -> None:
    """The table of a cell larger than one row group carries the cell's
    parameters on every row and the status labels of the results."""
    from lin2net.dynamics.cells import cell_table
    from lin2net.store.shard_file import ROW_GROUP_ROWS

    grid = {"eta": 1.2, "lambda0": 2.0, "d": 2}
    config = parse_config({"trajectories": ROW_GROUP_ROWS + 3, "grid": grid, "max_steps": 200})
    cell = expand_grid(config)[0]
    initial, results = simulate_cell(config, cell, threads=1)
    table = cell_table(cell, initial, results).to_pandas()
    assert len(table) == ROW_GROUP_ROWS + 3
    for column, value in (("cell_id", cell.cell_id), ("eta", 1.2), ("lambda0", 2.0), ("d", 2), ("init", "sphere")):
        assert (table[column] == value).all(), column
    np.testing.assert_allclose(table["eta_lambda0"], 2.4)
    labels = np.array([status.label for status in Status])
    np.testing.assert_array_equal(table["status"].to_numpy(), labels[results.status])
    assert set(table["status"]) == {"converged", "diverged", "max_steps"}


def _pool_job(threads: int) -> int:
    eps0 = np.linspace(-1.5, -0.5, 100)
    return int(integrate_compiled(eps0, np.ones(100), 0.1, 1.0, StopRule(1e-10, 1_000), threads=threads).steps.sum())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # Python >= 3.12
def test_fork_pool_with_one_thread_per_worker_after_parent_used_all_threads() -> None:
    """GNU OpenMP is not fork-safe once started; workers that use threads=1 never
    start it, so a fork pool works even after the parent ran the threaded kernel."""
    expected = _pool_job(available_threads())
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map_async(_pool_job, [1, 1, 1]).get(timeout=120)
    assert results == [expected] * 3


def test_per_trajectory_parameters_equal_one_call_per_cell() -> None:
    """A shard of several cells (η, Φ per row, interleaved so lanes mix cells) gives
    every row bitwise what a call per cell with scalars gives, for 1 and 2 threads,
    and the NumPy reference accepts the same arrays with the same result."""
    rng = np.random.default_rng(17)
    cells = [(0.1, 1.0), (0.95, 1.0), (1.3, 0.5), (0.4, 0.0), (2.5, 1.0), (0.001, 1.0)]
    per_cell = 3 * LANES + 1
    rule = StopRule(1e-10, 3_000)
    eps0 = np.concatenate([sphere_residuals(rng, per_cell, 4, 2.0, phi) for _, phi in cells])
    lam0 = np.full(eps0.shape, 2.0)
    eta = np.repeat([eta for eta, _ in cells], per_cell)
    phi = np.repeat([phi for _, phi in cells], per_cell)
    order = rng.permutation(eps0.size)  # rows of different cells side by side
    eps0, lam0, eta, phi = eps0[order], lam0[order], eta[order], phi[order]
    expected = TrajectoryResults.empty(eps0.size)
    for cell_eta, cell_phi in cells:
        rows = (eta == cell_eta) & (phi == cell_phi)
        one = integrate_compiled(eps0[rows], lam0[rows], cell_eta, cell_phi, rule, threads=1)
        for name in TrajectoryResults.__dataclass_fields__:
            getattr(expected, name)[rows] = getattr(one, name)
    statuses = set(np.unique(expected.status).tolist())
    assert statuses == {int(s) for s in Status}, "the shard must mix outcomes"
    for threads in sorted({1, min(2, available_threads())}):
        shard = integrate_compiled(eps0, lam0, eta, phi, rule, threads=threads)
        for name in TrajectoryResults.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(shard, name), getattr(expected, name), err_msg=name)
    assert_same_results(reference(eps0, lam0, eta, phi, rule), expected)  # type: ignore[arg-type]


def test_rejects_parameter_arrays_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="eta must be a scalar or of shape"):
        integrate_compiled(np.zeros(3), np.ones(3), np.ones(4), 1.0, StopRule(1e-10, 10))
    with pytest.raises(ValueError, match="phi must be a scalar or of shape"):
        integrate_compiled(np.zeros(3), np.ones(3), 0.1, np.ones((3, 1)), StopRule(1e-10, 10))


def _endless(n: int) -> tuple[np.ndarray, np.ndarray, float, StopRule]:
    """A batch that would run for hours: η tiny, tolerance never reached."""
    eps0 = np.linspace(-1.5, -0.5, n)
    return eps0, np.ones(n), 1e-12, StopRule(1e-300, 2**62)


@pytest.mark.parametrize("threads", [1, 2])
def test_cancel_flag_stops_every_thread_within_a_second(threads: int) -> None:
    threads = min(threads, available_threads())
    eps0, lam0, eta, rule = _endless(8 * LANES)
    integrate_compiled(eps0[:2], lam0[:2], 0.1, 1.0, StopRule(1e-10, 100), threads=threads)  # compiled and loaded
    cancel = np.zeros(1, dtype=np.int64)
    timer = threading.Timer(0.3, lambda: cancel.__setitem__(0, 1))
    started = time.perf_counter()
    timer.start()
    with pytest.raises(KernelCancelled):
        integrate_compiled(eps0, lam0, eta, 1.0, rule, threads=threads, cancel=cancel)
    assert time.perf_counter() - started < 1.3  # 0.3 s until the flag is set, then < 1 s


def test_a_flag_already_set_cancels_before_any_work() -> None:
    eps0, lam0, eta, rule = _endless(3)
    with pytest.raises(KernelCancelled):
        integrate_compiled(eps0, lam0, eta, 1.0, rule, cancel=np.ones(1, dtype=np.int64))


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_ctrl_c_interrupts_the_kernel_within_a_second() -> None:
    """SIGINT while the kernel runs: KeyboardInterrupt in the caller, promptly, and
    the kernel's thread has stopped (no partial results, nothing left running)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    eps0, lam0, eta, rule = _endless(4 * LANES)
    integrate_compiled(eps0[:2], lam0[:2], 0.1, 1.0, StopRule(1e-10, 100))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    try:
        started = time.perf_counter()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            integrate_compiled(eps0, lam0, eta, 1.0, rule)
        elapsed = time.perf_counter() - started
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert elapsed < 1.3
    deadline = time.perf_counter() + 1.0  # the kernel returned; its thread is exiting
    while any(thread.name == "lin2net-kernel" for thread in threading.enumerate()):
        assert time.perf_counter() < deadline, "the kernel's thread is still running"
        time.sleep(0.01)


@pytest.mark.parametrize("loss_tol", [5e-13, 1e-10, 0.0, 5e-324, 1e-320, 2.0**-1022, 1e300, np.inf, -1.0, np.nan])
def test_the_convergence_bound_is_the_reference_test(loss_tol: float) -> None:
    """The kernel's |ε| <= converged_bound(tol) holds exactly where the reference's
    ½ε² <= tol does: the bound passes, the next double does not, and both tests agree
    on residuals of every magnitude, subnormal, zero, infinite and NaN."""
    bound = converged_bound(loss_tol)
    if 0.0 <= bound < np.inf:
        assert 0.5 * bound * bound <= loss_tol
        above = np.nextafter(bound, np.inf)
        assert not 0.5 * above * above <= loss_tol
    rng = np.random.default_rng(3)
    eps = rng.standard_normal(4000) * 10.0 ** rng.uniform(-330, 160, 4000)
    eps = np.concatenate([eps, [0.0, -0.0, 5e-324, -5e-324, np.inf, -np.inf, np.nan], [bound, -bound]])
    eps = np.concatenate([eps, np.nextafter(eps, np.inf), np.nextafter(eps, -np.inf)])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(np.abs(eps) <= bound, 0.5 * eps * eps <= loss_tol)


def test_a_zero_loss_tol_stops_where_the_reference_does() -> None:
    """loss_tol = 0: convergence only once ½ε² underflows to 0 (ηλ near 1 gets there in a
    few steps), the edge of the bound; status, steps and every column as the reference's."""
    rng = np.random.default_rng(4)
    eps0 = sphere_residuals(rng, 3 * LANES + 1, 4, 1.0, 1.0)
    lam0 = np.ones_like(eps0)
    rule = StopRule(loss_tol=0.0, max_steps=2_000, divergence_threshold=1e6)
    expected = reference(eps0, lam0, 0.5, 1.0, rule)
    assert set(np.unique(expected.status)) == {Status.CONVERGED}
    assert_same_results(expected, integrate_compiled(eps0, lam0, 0.5, 1.0, rule))
