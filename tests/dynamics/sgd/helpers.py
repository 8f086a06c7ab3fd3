"""Shared pieces of the SGD tests: configs, the GD twin, comparisons, the exact oracle."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.testing import assert_allclose, assert_array_equal

from lin2net.dynamics.driver import TrajectoryResults
from lin2net.dynamics.protocol import StopRule
from lin2net.dynamics.sgd.reference import (
    WINDOW_COLUMNS,
    SGDParameters,
    SGDResults,
    sample_batch,
)
from lin2net.kernels.counter_rng import trajectory_keys
from lin2net.sweep.config import SweepConfig, parse_config
from lin2net.sweep.grid import Cell

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
