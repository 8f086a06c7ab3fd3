"""The registry of dynamics and what derives from it."""

from __future__ import annotations

import pytest

from lin2net.analysis.summary import sweep_axes
from lin2net.analysis.tables import AXIS_LABELS
from lin2net.dynamics import registry
from lin2net.dynamics.cells import TRAJECTORY_SCHEMA, trajectory_schema
from lin2net.sweep.config import ALGORITHMS, GRID_KEYS, parse_config
from lin2net.sweep.grid import Cell, expand_grid

SGD = {
    "name": "r",
    "trajectories": 2,
    "algorithm": "sgd",
    "grid": {"eta": [0.1, 0.2], "lambda0": 1.0, "batch_size": [1, 4], "label_noise": [0.0, 0.1]},
    "data": {"n": 8},
}


def test_config_keys_labels_and_axes_come_from_the_registry() -> None:
    assert ALGORITHMS == ("gd", "sgd")
    assert GRID_KEYS == ("eta", "eta_lambda0", "lambda0", "phi", "d", "batch_size", "label_noise", "depth", "inputs")
    assert AXIS_LABELS["batch_size"] == "B" and AXIS_LABELS["label_noise"] == "σ"
    assert sweep_axes("gd") == ("eta", "lambda0", "phi", "d", "eta_lambda0", "init")
    assert sweep_axes("sgd")[-2:] == ("batch_size", "label_noise")


def test_the_row_schema_is_the_common_one_plus_the_dynamics_fragment() -> None:
    assert trajectory_schema("gd") == TRAJECTORY_SCHEMA
    sgd = trajectory_schema("sgd")
    assert sgd.names[: len(TRAJECTORY_SCHEMA)] == TRAJECTORY_SCHEMA.names
    entry = registry.get("sgd")
    assert sgd.names[len(TRAJECTORY_SCHEMA) :] == [*entry.axis_names, *(name for name, _ in entry.result_columns)]


@pytest.mark.parametrize("raw", [SGD, {**SGD, "algorithm": "gd", "data": None}])
def test_a_cell_comes_back_from_its_parameters(raw: dict) -> None:  # type: ignore[type-arg]
    raw = {k: v for k, v in raw.items() if v is not None}
    if raw.get("algorithm") == "gd":
        raw["grid"] = {k: v for k, v in raw["grid"].items() if k not in ("batch_size", "label_noise")}
    for cell in expand_grid(parse_config(raw)):
        again = Cell.from_parameters(cell.parameters)
        assert again == cell and again.cell_id == cell.cell_id


def test_parameters_no_dynamics_has_are_refused() -> None:
    with pytest.raises(ValueError, match="no dynamics has the axes"):
        Cell.from_parameters({"eta": 0.1, "lambda0": 1.0, "phi": 1.0, "d": 2, "init": "sphere", "width": 3})


def test_an_axis_of_another_dynamics_names_its_owner() -> None:
    from lin2net.errors import ConfigError

    with pytest.raises(ConfigError, match="only used with algorithm: sgd"):
        parse_config({"name": "r", "grid": {"eta": 0.1, "lambda0": 1.0, "label_noise": 0.1}})
