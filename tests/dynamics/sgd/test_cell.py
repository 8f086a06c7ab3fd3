"""SGD cells (lin2net.dynamics.sgd.cell): GD where SGD must equal it, the row table, traces."""

from __future__ import annotations

import numpy as np
import pytest

from lin2net.dynamics.cells import run_cell, simulate_cell
from lin2net.dynamics.driver import TrajectoryResults
from lin2net.dynamics.protocol import Status, StopRule
from lin2net.dynamics.sgd.cell import simulate_sgd_cell, trace_sgd_cell
from lin2net.dynamics.sgd.reference import (
    WINDOW_COLUMNS,
    SGDResults,
)
from lin2net.sweep.grid import expand_grid
from tests.dynamics.sgd.helpers import (
    assert_equal_to_gd,
    gd_cell,
    gd_twin,
    sgd_config,
)


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


def test_a_trajectory_re_simulated_alone_reproduces_its_row() -> None:
    config = sgd_config(grid={"label_noise": 0.1, "eta": 0.3, "lambda0": 2.0}, max_steps=300, integrator="reduced")
    cell = expand_grid(config)[0]
    _, results = simulate_sgd_cell(config, cell)
    rule = StopRule(config.loss_tol, config.max_steps, config.divergence_threshold)
    for row in (0, 17, 95):
        columns, status = trace_sgd_cell(config, cell, row, rule)
        assert status == results.status[row]
        assert columns["t"][-1] == results.steps[row]
        assert list(columns)[-3:] == ["g", "s", "r"]  # the step's extras, in the step's order
        assert columns["eps"][-1] == results.eps_T[row]
        assert columns["lam"][-1] == results.lambda_T[row]
        assert columns["sharpness"][-1] == results.sharpness_T[row]
        # The same driver and observers as the row: log Q to the last bit.
        assert columns["log_q_ratio"][-1] == results.log_q_ratio[row]


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
    assert [(c.value("batch_size"), c.value("label_noise")) for c in cells] == [
        (2, 0.0),
        (2, 0.05),
        (6, 0.0),
        (6, 0.05),
    ]
    table = run_cell(config, cells[1], threads=1)
    assert table.column("batch_size").to_pylist() == [2] * 96
    assert table.column("label_noise").to_pylist() == [0.05] * 96
    for name in ("loss_T", "q_ratio_window", "log_q_ratio_window", "sharpness_window", "loss_window", "lambda_window"):
        assert name in table.column_names
    gd = gd_twin(config)
    gd_table = run_cell(gd, expand_grid(gd)[0], threads=1)
    assert "batch_size" not in gd_table.column_names
    assert gd_table.schema.names == table.schema.names[: len(gd_table.schema.names)]


def test_the_registry_lists_every_sgd_result_column() -> None:
    from lin2net.dynamics import registry

    columns = tuple(name for name, _ in registry.get("sgd").result_columns)
    assert columns == ("loss_T", *WINDOW_COLUMNS)
    assert set(columns) == set(SGDResults.__dataclass_fields__) - set(TrajectoryResults.__dataclass_fields__)
