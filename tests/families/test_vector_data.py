"""The vector data sets: parsing (one ConfigError naming the key), determinism, whitening, teacher, noise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lin2net.dynamics.vector.data import (
    VectorDataSpec,
    least_squares,
    make_data,
    parse_vector_data,
    teacher_vector,
)
from lin2net.errors import ConfigError


@pytest.mark.parametrize(
    ("mapping", "inputs", "key"),
    [
        ([1, 2], 2, "data"),
        ({"size": 3}, 2, "data.size"),
        ({"n": 0}, 2, "data.n"),
        ({"n": 2.5}, 2, "data.n"),
        ({"n": True}, 2, "data.n"),
        ({"x": "uniform"}, 2, "data.x"),
        ({"x": []}, 2, "data.x"),
        ({"x": [[1.0, 2.0], [3.0]]}, 2, "data.x[1]"),
        ({"x": [[1.0, 2.0], [3.0, "a"]]}, 2, "data.x[1][1]"),
        ({"x": [[1.0, 2.0], [3.0, float("nan")]]}, 2, "data.x[1][1]"),
        ({"x": [[1.0, 2.0]], "n": 3}, 2, "data.n"),
        ({"x": "whitened", "n": 2}, 3, "data.n"),
        ({"teacher": "tanh"}, 2, "data.teacher"),
        ({"noise": -0.1}, 2, "data.noise"),
        ({"noise": "loud"}, 2, "data.noise"),
        ({"n": 3, "y": [1.0, 2.0]}, 2, "data.y"),
        ({"n": 2, "y": [1.0, None]}, 2, "data.y[1]"),
        ({"n": 2, "y": "labels"}, 2, "data.y"),
        ({"n": 2, "y": [1.0, 2.0], "teacher": "relu"}, 2, "data.teacher"),
        ({"n": 2, "y": [1.0, 2.0], "noise": 0.5}, 2, "data.noise"),
        ({}, 0, "model.inputs"),
    ],
)
def test_bad_data_names_the_key(mapping: Any, inputs: int, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_vector_data(mapping, inputs)
    assert caught.value.key == key
    assert "\n" not in str(caught.value)


def test_parse_defaults_and_round_trip() -> None:
    assert parse_vector_data(None, 3) == VectorDataSpec()
    spec = parse_vector_data({"x": [[1, 2], [3, 4], [5, 6]], "y": [1, 2, 3]}, 2)
    assert spec.n == 3 and spec.x == ((1.0, 2.0), (3.0, 4.0), (5.0, 6.0)) and spec.y == (1.0, 2.0, 3.0)
    assert parse_vector_data(spec.as_config(), 2) == spec
    noisy = parse_vector_data({"n": 7, "x": "whitened", "teacher": "relu", "noise": 0.2}, 3)
    assert parse_vector_data(noisy.as_config(), 3) == noisy
    # at m = 1 a data point may be a bare number
    assert parse_vector_data({"x": [1.0, -2.0]}, 1).x == ((1.0,), (-2.0,))


def test_same_seed_same_bits_other_seed_other_data() -> None:
    spec = parse_vector_data({"n": 30, "x": "gaussian", "noise": 0.3}, 4)
    x1, y1 = make_data(spec, 4, 1.5, seed=11)
    x2, y2 = make_data(spec, 4, 1.5, seed=11)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    x3, _ = make_data(spec, 4, 1.5, seed=12)
    assert not np.array_equal(x1, x3)
    assert x1.shape == (30, 4) and y1.shape == (30,)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (5, 1), (40, 1), (10, 10), (100, 7), (257, 3)])
def test_whitened_is_whitened(n: int, m: int) -> None:
    x, _ = make_data(parse_vector_data({"n": n, "x": "whitened"}, m), m, 1.0, seed=3)
    gram = np.einsum("ik,il->kl", x, x) / n
    assert np.max(np.abs(gram - np.eye(m))) <= 1e-14


@pytest.mark.parametrize("m", [1, 2, 5, 20])
@pytest.mark.parametrize("phi", [0.5, 1.0, 3.0])
def test_teacher_has_norm_phi_and_positive_first_component(m: int, phi: float) -> None:
    beta = teacher_vector(m, phi, seed=5)
    assert np.linalg.norm(beta) == pytest.approx(phi, rel=1e-15)
    assert beta[np.flatnonzero(beta)[0]] > 0
    if m == 1:
        assert beta[0] == phi  # exactly +Φ: the whitened model is ½(ab − Φ)²


def test_linear_teacher_and_relu_teacher_labels() -> None:
    for x_kind in ("gaussian", "whitened"):
        x, y = make_data(parse_vector_data({"n": 50, "x": x_kind}, 3), 3, 2.0, seed=1)
        beta = teacher_vector(3, 2.0, seed=1)
        assert np.allclose(y, x @ beta, rtol=0, atol=1e-14)
        xr, yr = make_data(parse_vector_data({"n": 50, "x": x_kind, "teacher": "relu"}, 3), 3, 2.0, seed=1)
        assert np.array_equal(xr, x)  # the same x stream whatever the teacher
        assert np.allclose(yr, np.maximum(x @ beta, 0.0), rtol=0, atol=1e-14)
        assert np.any(yr == 0) and np.any(yr > 0)


def test_whitened_m1_is_todays_model() -> None:
    x, y = make_data(parse_vector_data({"n": 64, "x": "whitened"}, 1), 1, 1.7, seed=2)
    assert np.mean(x[:, 0] ** 2) == pytest.approx(1.0, abs=1e-15)
    assert np.array_equal(y, x[:, 0] * 1.7)


def test_noise_moves_no_linear_fit() -> None:
    spec = parse_vector_data({"n": 200, "x": "gaussian", "noise": 0.5}, 4)
    x, y = make_data(spec, 4, 1.0, seed=9)
    beta = teacher_vector(4, 1.0, seed=9)
    w, floor = least_squares(x, y)
    assert np.allclose(w, beta, rtol=0, atol=1e-13)  # the teacher stays the least-squares fit
    nu = y - x @ beta
    assert floor == pytest.approx(0.5 * np.mean(nu * nu), rel=1e-12)
    assert 0.5 * 0.25 * 0.9 < floor < 0.5 * 0.25 * 1.1  # ½σ²(1 − m/n) within sampling error
    # n <= m: the columns of X span every label vector, no noise is left
    x2, y2 = make_data(parse_vector_data({"n": 3, "noise": 0.5}, 4), 4, 1.0, seed=9)
    assert np.allclose(y2, x2 @ teacher_vector(4, 1.0, seed=9), rtol=0, atol=1e-12)


def test_explicit_labels_replace_the_teacher() -> None:
    spec = parse_vector_data({"x": [[1, 0], [0, 1], [1, 1]], "y": [0.5, -1.0, 2.0]}, 2)
    x, y = make_data(spec, 2, 9.0, seed=0)
    assert np.array_equal(x, np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    assert np.array_equal(y, np.array([0.5, -1.0, 2.0]))
