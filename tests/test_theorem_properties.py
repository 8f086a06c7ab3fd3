"""Claims of the seed paper that must hold exactly, checked on sweeps over many random cells.

Each assertion is a consequence of the recurrences (docs/math.md §1-2), not
of the paper's proofs, and each could fail if the integrator, the diagnostics
or the theory columns were wrong.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from numpy.testing import assert_allclose

from lin2net.analysis.trace import sweep_initialization, trace_trajectory
from lin2net.dynamics.cells import run_cell
from lin2net.dynamics.gd.reference import StopRule
from lin2net.sweep.config import parse_config
from lin2net.sweep.grid import expand_grid
from lin2net.theory import theorems


@pytest.fixture(scope="module")
def random_sweep() -> pd.DataFrame:
    """~200 random cells: η over 3 decades, λ0 over 3 decades, Φ ∈ {0, 0.5, 1, 2}, d ∈ {1, 4}."""
    rng = np.random.default_rng(20240601)
    raw = {
        "name": "random",
        "seed": 7,
        "trajectories": 40,
        "grid": {
            "eta": sorted(float(v) for v in 10 ** rng.uniform(-2.5, 0.3, 7)),
            "lambda0": sorted(float(v) for v in 10 ** rng.uniform(-2, 1, 7)),
            "phi": [0.0, 0.5, 1.0, 2.0],
            "d": [1, 4],
        },
        "max_steps": 2000,
    }
    config = parse_config(raw)
    return pa.concat_tables([run_cell(config, cell) for cell in expand_grid(config)]).to_pandas()


def test_sweep_covers_every_outcome(random_sweep: pd.DataFrame) -> None:
    assert len(random_sweep) == 7 * 7 * 4 * 2 * 40
    assert set(random_sweep["status"]) == {"converged", "diverged", "max_steps"}
    assert set(random_sweep["regime"]) == set(theorems.REGIMES)


def test_q_shrinks_when_eta_max_eps_below_sqrt2(random_sweep: pd.DataFrame) -> None:
    """|1 − η²ε_t²| ≤ 1 for every t < T when η·max|ε_t| < √2, so Q(T)/Q(0) ≤ 1."""
    frame = random_sweep
    guarded = frame["eta"] * frame["max_abs_eps"] < np.sqrt(2.0)
    assert guarded.sum() > 5000
    assert (frame.loc[guarded, "log_q_ratio"] <= 0.0).all()
    assert (frame.loc[guarded, "q_ratio"] <= 1.0).all()
    # The guard matters: some trajectories outside it do grow Q.
    assert (frame.loc[~guarded, "log_q_ratio"] > 0).any()


def test_q_non_increasing_step_by_step_when_guarded(random_sweep: pd.DataFrame) -> None:
    """Traced step by step, Q(t)/Q(0) never increases on trajectories with η·max|ε_t| < √2."""
    frame = random_sweep[(random_sweep["eta"] * random_sweep["max_abs_eps"] < np.sqrt(2.0))]
    rows = frame[frame["init"] == "sphere"].sample(40, random_state=1)
    for row in rows.itertuples():
        start = sweep_initialization(
            eta=row.eta, lambda0=row.lambda0, phi=row.phi, d=row.d, seed=7, init="sphere", trajectory=row.trajectory
        )
        trace = trace_trajectory(start, row.eta, StopRule(1e-10, 2000))
        log_q = trace.table["log_q_ratio"].to_numpy()
        assert np.all(np.diff(log_q) <= 0.0)
        assert trace.steps == row.steps  # the trace reproduces the sweep row


def test_q_ratio_below_theorem1_upper_bound_when_eta_max_eps_below_1(random_sweep: pd.DataFrame) -> None:
    """log|1 − x| ≤ −x for 0 ≤ x < 1, so log Q(T)/Q(0) ≤ −η² Σ ε_t² when η·max|ε_t| < 1."""
    frame = random_sweep
    guarded = frame["eta"] * frame["max_abs_eps"] < 1.0
    assert guarded.sum() > 5000
    sub = frame[guarded]
    log_upper = theorems.log_thm1_upper(sub["eta"], sub["sum_eps2"])
    tolerance = theorems.rounding_tolerance(sub["steps"], log_upper)
    assert (sub["log_q_ratio"] <= log_upper + tolerance).all()
    assert (sub["q_ratio"] <= sub["thm1_upper"] * (1 + 1e-12)).all()


def test_final_sharpness_against_gradient_flow(random_sweep: pd.DataFrame) -> None:
    """GD ends flatter than GF once Q has shrunk.

    Exactly, S·P shrinks by (1 − η²ε_t²)² per step, so at any T
    λ_T² − 4(ε_T + Φ)² = S_T P_T = S_0 P_0 · q² = (λ_GF² − 4Φ²) · q².
    Hence the limit λ_∞ = √(4Φ² + S0 P0 q²) ≤ λ_GF when q ≤ 1, while at a finite
    T the residual ε_T adds at most 8Φ|ε_T| + 4ε_T² to λ_T²: λ_T ≤ λ_GF itself can
    fail by that much for q ≈ 1 (small η), which is why the test uses the margin.
    """
    frame = random_sweep[random_sweep["status"] == "converged"]
    eps_t, lam_t, phi = (frame[c].to_numpy() for c in ("eps_T", "lambda_T", "phi"))
    q, lam_gf = frame["q_ratio"].to_numpy(), frame["lambda_gf"].to_numpy()
    error = np.abs((lam_t**2 - 4 * (eps_t + phi) ** 2) - (lam_gf**2 - 4 * phi**2) * q**2)
    scale = lam_t**2 + 4 * (eps_t + phi) ** 2  # the identity's terms cancel where a ≈ ±b
    assert_allclose(error / scale, 0.0, atol=1e-9)
    shrunk = frame[q <= 1.0]
    assert len(shrunk) > 5000
    phi2 = shrunk["phi"] ** 2
    lam_limit = np.sqrt(4 * phi2 + (shrunk["lambda_gf"] ** 2 - 4 * phi2) * shrunk["q_ratio"] ** 2)
    assert (lam_limit <= shrunk["lambda_gf"] * (1 + 1e-12)).all()
    slack = 8 * shrunk["phi"] * shrunk["eps_T"].abs() + 4 * shrunk["eps_T"] ** 2
    assert (shrunk["lambda_T"] ** 2 <= shrunk["lambda_gf"] ** 2 + slack + 1e-10 * shrunk["lambda_gf"] ** 2).all()
    # Where the residual is on the flatter side (ε_T(ε_T + 2Φ) ≤ 0), λ_T ≤ λ_GF with no margin.
    inside = shrunk[shrunk["eps_T"] * (shrunk["eps_T"] + 2 * shrunk["phi"]) <= 0]
    assert len(inside) > 1000
    assert (inside["lambda_T"] <= inside["lambda_gf"] * (1 + 1e-12)).all()
