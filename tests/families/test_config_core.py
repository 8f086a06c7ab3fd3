"""The ``model:`` key: bad model configs get one line naming the key and exit 2;
good ones resolve to a config that loads back equal; shallow configs are unchanged."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lin2net.dynamics import families
from lin2net.sweep.config import parse_config
from lin2net.sweep.grid import Cell, expand_grid
from tests.conftest import write_yaml

DEEP: dict[str, Any] = {
    "name": "deep",
    "trajectories": 2,
    "model": {"family": "deep", "depth": 3},
    "grid": {"eta": 0.1, "lambda0": 1.0, "d": 2},
}
VECTOR: dict[str, Any] = {
    "name": "vector",
    "trajectories": 2,
    "model": {"family": "vector", "inputs": 2},
    "data": {"n": 8, "x": "whitened"},
    "grid": {"eta": 0.1, "lambda0": 1.0, "d": 2},
}
SHALLOW: dict[str, Any] = {"name": "s", "trajectories": 2, "grid": {"eta": 0.1, "lambda0": 1.0, "d": 2}}


def changed(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``base`` with dotted ``path`` set to ``value`` (``...`` removes it)."""
    raw = copy.deepcopy(base)
    *parents, last = path.split(".")
    target = raw
    for part in parents:
        target = target.setdefault(part, {})
    if value is ...:
        target.pop(last, None)
    else:
        target[last] = value
    return raw


def explicit(base: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """``base`` with an explicit start (one trajectory)."""
    raw = changed(changed(base, "init", {"explicit": spec}), "trajectories", ...)
    return changed(changed(raw, "grid.lambda0", ...), "grid.d", ...)


BAD = [
    (changed(DEEP, "model.depth", 1), "model.depth"),
    (changed(DEEP, "model.depth", 2.5), "model.depth"),
    (changed(DEEP, "model", {"family": "deep"}), "model.depth"),
    (changed(VECTOR, "model.depth", 3), "model.depth"),
    (changed(SHALLOW, "model", {"inputs": 2}), "model.inputs"),
    (changed(DEEP, "model.inputs", 2), "model.inputs"),
    (changed(DEEP, "model.family", "cnn"), "model.family"),
    (changed(DEEP, "model.width", 3), "model.width"),
    (changed(DEEP, "model", [1, 2]), "model"),
    (changed(DEEP, "algorithm", "sgd"), "algorithm"),
    (changed(DEEP, "data", {"n": 4}), "data"),
    (changed(DEEP, "grid.depth", [2, 3]), "grid.depth"),
    (changed(changed(DEEP, "model.depth", ...), "grid.depth", [1, 2]), "grid.depth"),
    (changed(VECTOR, "grid.depth", 2), "grid.depth"),
    (changed(VECTOR, "grid.inputs", 2), "grid.inputs"),
    (changed(SHALLOW, "grid.depth", 2), "grid.depth"),
    (changed(DEEP, "grid.d", 5000), "grid.d"),  # D = 2·5000 + 5000² > 10^7
    (changed(VECTOR, "data", ...), "data"),
    (changed(VECTOR, "model.inputs", ...), "model.inputs"),
    (changed(VECTOR, "model.inputs", 0), "model.inputs"),
    (changed(VECTOR, "grid.batch_size", 2), "grid.batch_size"),
    (changed(changed(VECTOR, "algorithm", "sgd"), "model.family", "relu"), "grid.batch_size"),
    (changed(changed(VECTOR, "algorithm", "sgd"), "grid.batch_size", 9), "grid.batch_size"),
    (
        changed(changed(changed(VECTOR, "algorithm", "sgd"), "grid.batch_size", 2), "sampling", "with_replacement"),
        "sampling",
    ),
    (
        changed(changed(changed(VECTOR, "algorithm", "sgd"), "grid.batch_size", 2), "grid.label_noise", 0.1),
        "grid.label_noise",
    ),
    (
        changed(DEEP, "init", {"explicit": {"layers": [[[1.0], [2.0]], [[1.0, 2.0], [3.0, 4.0]], [[1.0]]]}}),
        "init.explicit.layers[2]",
    ),
    (changed(DEEP, "init", {"explicit": {"layers": [[[1.0, 2.0]], [[1.0]]]}}), "init.explicit.layers[0]"),
    (changed(DEEP, "init", {"explicit": {"layers": [[[1.0]]]}}), "init.explicit.layers"),
    (changed(DEEP, "init", {"explicit": {"a": [1.0], "b": [1.0]}}), "init.explicit"),
    (changed(DEEP, "init", {"explicit": {"layers": [[["x"]], [[1.0]]]}}), "init.explicit.layers[0][0][0]"),
    (changed(VECTOR, "init", {"explicit": {"A": [[1.0, 2.0], [3.0, 4.0]], "b": [1.0]}}), "init.explicit.b"),
    (changed(VECTOR, "init", {"explicit": {"A": [[1.0, 2.0], [3.0]], "b": [1.0, 2.0]}}), "init.explicit.A"),
    (changed(VECTOR, "init", {"explicit": {"A": [[1.0, 2.0, 3.0]], "b": [1.0]}}), "model.inputs"),
    (changed(DEEP, "init", {"explicit": {"layers": [[[1.0]], [[1.0]]]}}), "model.depth"),
    (
        changed(changed(VECTOR, "model.family", "relu"), "init", {"explicit": {"A": [[1.0, 2.0]], "b": [1.0]}}),
        "init.explicit",
    ),
]


@pytest.mark.parametrize(("raw", "key"), BAD, ids=[f"{i}-{key}" for i, (_, key) in enumerate(BAD)])
def test_a_bad_model_config_is_one_line_naming_the_key(cli, tmp_path: Path, raw: dict[str, Any], key: str) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    result = cli("sweep", write_yaml(tmp_path / "bad.yaml", raw), "-o", out)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith(f"error: {key}: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize(
    "raw",
    [
        DEEP,
        changed(changed(DEEP, "model.depth", ...), "grid.depth", [2, 4]),
        VECTOR,
        changed(changed(changed(VECTOR, "algorithm", "sgd"), "grid.batch_size", [2, 8]), "model.family", "relu"),
        explicit(DEEP, {"layers": [[[1.0], [2.0]], [[1.0, 2.0], [3.0, 4.0]], [[1.0, -1.0]]]}),
        explicit(VECTOR, {"A": [[1.0, 2.0], [3.0, 4.0]], "b": [0.5, -1.0]}),
    ],
)
def test_a_family_config_resolves_to_one_that_loads_back_equal(raw: dict[str, Any]) -> None:
    config = parse_config(raw)
    again = parse_config(config.resolved())
    assert again == config and again.resolved() == config.resolved()
    cells = expand_grid(config)
    assert [c.cell_id for c in expand_grid(again)] == [c.cell_id for c in cells]
    for cell in cells:  # a cell comes back from the parameters a shard footer stores
        assert Cell.from_parameters(cell.parameters) == cell


def test_shallow_configs_resolve_as_before() -> None:
    config = parse_config(SHALLOW)
    assert config.family == "shallow" and "model" not in config.resolved()
    assert parse_config(changed(SHALLOW, "model", {"family": "shallow"})) == config
    assert all("model" not in cell.parameters for cell in expand_grid(config))


def test_vector_and_relu_cells_with_equal_values_are_different_cells() -> None:
    vector = expand_grid(parse_config(VECTOR))[0]
    relu = expand_grid(parse_config(changed(VECTOR, "model.family", "relu")))[0]
    assert vector.cell_id != relu.cell_id
    assert Cell.from_parameters(relu.parameters).algorithm == "relu"


def test_explicit_starts_follow_the_fixed_theta_layouts() -> None:
    w1, w2, w3 = [[1.0], [2.0]], [[3.0, 4.0], [5.0, 6.0]], [[7.0, 8.0]]
    deep = parse_config(explicit(DEEP, {"layers": [w1, w2, w3]}))
    assert deep.explicit_theta is not None and deep.explicit_theta.theta == tuple(float(x) for x in range(1, 9))
    assert deep.axes["depth"] == (3,) and deep.trajectories == 1
    cell = expand_grid(deep)[0]
    assert cell.d == 2 and cell.lambda0 == float(sum(x * x for x in range(1, 9)))
    theta = families.initial_theta(deep, cell)
    assert theta.shape == (1, 8) and np.array_equal(theta[0], np.arange(1.0, 9.0))
    vector = parse_config(explicit(VECTOR, {"A": [[1.0, 2.0], [3.0, 4.0]], "b": [5.0, 6.0]}))
    assert vector.explicit_theta is not None and vector.explicit_theta.theta == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)


def test_random_starts_lie_on_the_sphere_and_are_the_shallow_draws_when_d_equals_two_d() -> None:
    from lin2net.dynamics.initialization import initial_blocks

    deep = parse_config(changed(changed(DEEP, "model.depth", 2), "trajectories", 5))
    cell = expand_grid(deep)[0]
    theta = families.initial_theta(deep, cell)
    assert np.allclose(np.einsum("nd,nd->n", theta, theta), cell.lambda0, rtol=1e-14)
    shallow = parse_config(changed(SHALLOW, "trajectories", 5))
    (block,) = initial_blocks(shallow, expand_grid(shallow)[0])
    assert np.array_equal(theta, np.concatenate([block.a, block.b], axis=1))
    three = parse_config(changed(DEEP, "trajectories", 5))
    theta3 = families.initial_theta(three, expand_grid(three)[0])
    assert theta3.shape == (5, 8) and np.allclose(np.einsum("nd,nd->n", theta3, theta3), 1.0, rtol=1e-14)
    part = families.initial_theta(three, expand_grid(three)[0], 2, 4)
    assert np.array_equal(part, theta3[2:4])  # a part of a cell draws the same rows
