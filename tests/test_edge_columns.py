"""Edge-case columns (issue 18 §4): a = −b exactly, and Q(0) = 0, alike in every integrator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lin2net.store.outdir import read_trajectories
from lin2net.sweep.config import parse_config
from lin2net.sweep.runner import run_sweep

INTEGRATORS = ("compiled", "reduced", "full")


def _row(tmp_path: Path, a: list[float], b: list[float], integrator: str, eta: float = 0.2) -> dict[str, float]:
    raw = {
        "name": "edge",
        "trajectories": 1,
        "init": {"explicit": {"a": a, "b": b}},
        "grid": {"eta": eta, "phi": 1.5},
        "integrator": integrator,
        "max_steps": 5000,
    }
    out = tmp_path / integrator
    run_sweep(parse_config(raw), out, workers=1)
    row: dict[str, float] = read_trajectories(out).to_pylist()[0]
    return row


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_a_equal_minus_b_flows_to_the_saddle_of_sharpness_phi(tmp_path: Path, integrator: str) -> None:
    """S0 = ‖a + b‖² = 0: the flow keeps a + b = 0 and ends at a = b = 0, whose Hessian has eigenvalues ±Φ."""
    row = _row(tmp_path, [1.0, -0.5], [-1.0, 0.5], integrator)
    assert row["lambda_gf"] == 1.5


def test_the_flow_object_agrees_at_the_saddle() -> None:
    from lin2net.theory.gradient_flow import GradientFlow

    flow = GradientFlow.from_vectors(np.array([1.0, -0.5]), np.array([-1.0, 0.5]), 1.5)
    assert float(flow.limit_sharpness) == 1.5
    eps, lam = flow.at(50.0)
    assert float(lam) < 1e-12 and float(eps) == pytest.approx(-1.5)  # at the saddle: a = b = 0, ε = −Φ


def test_q0_zero_gives_the_same_q_ratio_in_every_integrator(tmp_path: Path) -> None:
    """Q(0) = Σ|a_i² − b_i²| = 0 (a = b): Q(T)/Q(0) is 0/0, defined as the product Π|1 − η²ε_t²|
    that every Q_i is multiplied by; every integrator reports that, finite."""
    rows = {name: _row(tmp_path, [0.6, 0.3], [0.6, 0.3], name) for name in INTEGRATORS}
    assert {row["q0"] for row in rows.values()} == {0.0}
    ratios = [row["q_ratio"] for row in rows.values()]
    assert all(np.isfinite(ratios)) and 0 < ratios[0] < 1
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    assert {row["status"] for row in rows.values()} == {"converged"}
