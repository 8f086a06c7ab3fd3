"""SGD on the vector and relu models through fam-core's generic dynamics
(lin2net.dynamics.parameter_vector): B = n is GD bit for bit, a mini-batch run is the
hand-written loop θ ← θ − η∇L_B(θ) over the same batches, and a sweep runs end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from lin2net.dynamics.driver import run
from lin2net.dynamics.parameter_vector import ParameterVectorDynamics, minibatch_rows, run_parameters, start_state
from lin2net.dynamics.protocol import Status, StopRule
from lin2net.dynamics.relu.model import ReluModel
from lin2net.dynamics.vector.data import make_data, parse_vector_data
from lin2net.dynamics.vector.model import VectorModel
from lin2net.kernels.counter_rng import trajectory_keys

N_DATA = 10


def models() -> list[VectorModel | ReluModel]:
    x, y = make_data(parse_vector_data({"n": N_DATA, "x": "whitened"}, 2), 2, 1.0, seed=3)
    xr, yr = make_data(parse_vector_data({"n": N_DATA, "x": "gaussian", "teacher": "relu"}, 2), 2, 1.0, seed=3)
    return [VectorModel(3, 2, x, y), ReluModel(3, 2, xr, yr)]


def starts(size: int, count: int = 6) -> np.ndarray:
    return 0.6 * np.random.default_rng(7).standard_normal((count, size))


@pytest.mark.parametrize("model", models(), ids=["vector", "relu"])
def test_full_batch_is_gd_bit_for_bit(model: VectorModel | ReluModel) -> None:
    theta = starts(model.size)
    rule = StopRule(loss_tol=1e-12, max_steps=400)
    keys = trajectory_keys(0, np.arange(theta.shape[0], dtype=np.int64))
    gd = run(ParameterVectorDynamics(model), start_state(model, theta), run_parameters(0.2, 6), rule).results
    dynamics = ParameterVectorDynamics(model, N_DATA)
    sgd = run(dynamics, start_state(model, theta), run_parameters(0.2, 6, N_DATA, keys), rule).results
    for name in ("status", "steps", "eps_T", "sharpness_T", "log_q_ratio", "max_eta_sharpness"):
        assert np.array_equal(getattr(gd, name), getattr(sgd, name), equal_nan=True), name
    # and a full batch drawn as a permutation of the rows is the full gradient, bit for bit
    rows = minibatch_rows(keys, 3, N_DATA, N_DATA)
    assert np.array_equal(model.gradient(theta, rows), model.gradient(theta))


@pytest.mark.parametrize("model", models(), ids=["vector", "relu"])
def test_minibatch_run_is_the_hand_written_loop(model: VectorModel | ReluModel) -> None:
    theta = starts(model.size, count=4)
    eta, batch, rule = 0.1, 3, StopRule(loss_tol=1e-6, max_steps=300)
    keys = trajectory_keys(5, np.arange(4, dtype=np.int64))
    dynamics = ParameterVectorDynamics(model, N_DATA)
    result = run(dynamics, start_state(model, theta), run_parameters(eta, 4, batch, keys), rule).results
    for r in range(4):
        state, key, t = theta[r : r + 1].copy(), keys[r : r + 1], 0
        while model.loss(state)[0] > rule.loss_tol and t < rule.max_steps:
            rows = minibatch_rows(key, t, batch, N_DATA)
            assert len(set(rows[0].tolist())) == batch  # without replacement
            state = state - eta * model.gradient(state, rows)
            t += 1
        assert result.steps[r] == t
        expected = Status.CONVERGED if t < rule.max_steps else Status.MAX_STEPS
        assert result.status[r] == expected
        assert result.sharpness_T[r] == pytest.approx(float(model.sharpness(state)[0]), rel=1e-12)


@pytest.mark.parametrize("family", ["vector", "relu"])
def test_sgd_sweep_runs_end_to_end(family: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lin2net.cli import app

    config = {
        "name": f"{family}-sgd",
        "model": {"family": family, "inputs": 2},
        "algorithm": "sgd",
        "data": {"n": 8, "x": "whitened", "teacher": "linear" if family == "vector" else "relu"},
        "trajectories": 3,
        "max_steps": 300,
        "loss_tol": 1e-8,
        "grid": {"eta": [0.1], "lambda0": [1.0], "d": [2], "batch_size": [2, 8]},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    done = CliRunner().invoke(app, ["sweep", str(path), "--out", str(out)])
    assert done.exit_code == 0, done.output
    summary = CliRunner().invoke(app, ["summarize", str(out), "--format", "csv"])
    assert summary.exit_code == 0, summary.output
    assert summary.output.count("\n") >= 3  # a header and one line per cell
