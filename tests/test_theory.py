"""Theorem 1/2 conditions and bounds (lin2net.theory.theorems) and their columns in cell tables."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from lin2net.dynamics.cells import TRAJECTORY_SCHEMA, run_cell
from lin2net.sweep.config import parse_config
from lin2net.sweep.grid import expand_grid
from lin2net.theory import theorems


def test_thm1_regime_at_hand_values() -> None:
    # λ0 = 3, Φ = 2: 2/√(9 + 16) = 0.4. ε0 = −1: 1/(2|ε0|) = 0.5. So the bound is 0.4.
    eta = np.array([0.39, 0.41, 0.2])
    assert_array_equal(theorems.thm1_regime(eta, -1.0, 3.0, 2.0), [True, False, True])
    # ε0 = 2: 1/(2|ε0|) = 0.25 binds.
    assert_array_equal(theorems.thm1_regime(np.array([0.24, 0.26]), 2.0, 3.0, 2.0), [True, False])


def test_slow_regime_at_hand_values() -> None:
    # λ0 = 1, Φ = 1, ε0 = −0.5: lower edge min{√2/0.5, 2/√5} = 0.894; upper edge
    # min{2/0.5, 2 + 2(−0.5)(0.5)} = min{4, 1.5} = 1.5.
    eta = np.array([0.8, 0.9, 1.4, 1.6])
    assert_array_equal(theorems.slow_regime(eta, -0.5, 1.0, 1.0), [False, True, True, False])
    assert_array_equal(theorems.regime(eta, -0.5, 1.0, 1.0), ["linear", "slow", "slow", "outside"])


def test_regimes_are_disjoint_on_random_parameters() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    eta = 10 ** rng.uniform(-3, 1, n)
    lam0 = 10 ** rng.uniform(-2, 1.5, n)
    phi = rng.choice([0.0, 0.5, 1.0, 3.0], n)
    eps0 = rng.uniform(-lam0 / 2, lam0 / 2) - phi  # a·b ∈ [−λ0/2, λ0/2]
    linear = theorems.thm1_regime(eta, eps0, lam0, phi)
    slow = theorems.slow_regime(eta, eps0, lam0, phi)
    assert not np.any(linear & slow)
    assert linear.any() and slow.any() and (~linear & ~slow).any()


def test_zero_residual_and_zero_target_give_no_warnings() -> None:
    # pytest turns warnings into errors: these must be computed without 0/0 or x/0.
    eps0 = np.array([0.0, 0.0, 1.0, -1.0])
    phi = np.array([0.0, 1.0, 0.0, 0.0])
    lam0 = np.array([1.0, 2.0, 3.0, 4.0])
    assert_array_equal(theorems.thm1_regime(0.1, eps0, lam0, phi), [True, True, True, True])
    assert_array_equal(theorems.log_thm1_lower(0.1, eps0, phi), [0.0, 0.0, -np.inf, -np.inf])
    assert_array_equal(theorems.thm1_lower(0.1, eps0, phi), [1.0, 1.0, 0.0, 0.0])
    assert theorems.regime(0.1, eps0, lam0, phi).shape == (4,)
    assert_array_equal(theorems.slow_regime(5.0, 0.0, 1.0, 0.0), False)  # ε0 = 0: η|ε0| < 2 always


def test_bounds_at_hand_values() -> None:
    assert_allclose(theorems.thm1_lower(0.25, -2.0, 4.0), np.exp(-0.5 * 4.0 / 4.0), rtol=1e-15)
    assert_allclose(theorems.thm1_upper(0.1, 3.0), np.exp(-0.03), rtol=1e-15)


def test_cell_table_has_theory_columns_consistent_with_theory() -> None:
    config = parse_config(
        {"name": "t", "trajectories": 200, "grid": {"eta": [0.05, 0.6], "lambda0": [0.3, 2.5], "phi": 1.0, "d": 3}}
    )
    names = TRAJECTORY_SCHEMA.names
    for column in ("thm1_regime", "thm1_lower", "thm1_upper", "regime"):
        assert column in names
    for cell in expand_grid(config):
        table = run_cell(config, cell).to_pandas()
        eps0, lam0 = table["eps0"].to_numpy(), table["lambda_init"].to_numpy()
        assert_array_equal(table["thm1_regime"], theorems.thm1_regime(cell.eta, eps0, lam0, cell.phi))
        assert_allclose(table["thm1_lower"], np.exp(-np.sqrt(cell.eta) * eps0**2 / cell.phi), rtol=1e-14)
        assert_allclose(table["thm1_upper"], np.exp(-(cell.eta**2) * table["sum_eps2"]), rtol=1e-14)
        assert set(table["regime"]) <= set(theorems.REGIMES)
        assert_array_equal(table["regime"] == "linear", table["thm1_regime"])


@pytest.mark.parametrize("steps", [0, 10, 100_000])
def test_rounding_tolerance_is_small_and_grows_with_steps(steps: int) -> None:
    tol = theorems.rounding_tolerance(steps, -3.0)
    assert 0 < tol < 1e-9
    assert theorems.rounding_tolerance(steps, -np.inf) == theorems.rounding_tolerance(steps, 0.0)
