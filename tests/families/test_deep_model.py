"""The deep model's derivatives against independent paths, and its depth-2 reduction.

* gradient and Hessian-vector product against complex-step differences
  (Im L(θ + ihv)/h and Im ∇L(θ + ihv)/h, exact to rounding for h = 1e-20: no
  subtraction), on random points of depth 2–5 and widths 1–3;
* the Hessian (assembled from its blocks) against HVPs on the unit vectors;
* at depth 2 (θ = (a, b)): loss, sharpness, Q and λ_GF equal the shallow closed
  forms of lin2net.theory.closed_forms (Q bit for bit);
* the θ layout (layers/flatten) and the explicit-start shape checks.
"""

from __future__ import annotations

import numpy as np
import pytest

from lin2net.dynamics.deep.model import DeepModel, flatten, layers
from lin2net.errors import ConfigError
from lin2net.sweep.config import SweepConfig, parse_config
from lin2net.theory import closed_forms

CASES = [(2, 1), (2, 3), (3, 1), (3, 2), (4, 1), (4, 3), (5, 2)]
STEP = 1e-20


def points(model: DeepModel, n: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + 10 * model.depth + model.width)
    return rng.standard_normal((n, model.size)) * 0.8


@pytest.mark.parametrize(("depth", "width"), CASES)
def test_gradient_matches_complex_step(depth: int, width: int) -> None:
    model = DeepModel(depth, width, phi=1.3)
    theta = points(model)
    grad = model.gradient(theta)
    for i in range(model.size):
        direction = np.zeros(model.size)
        direction[i] = 1.0
        numeric = np.imag(model.loss(theta + 1j * STEP * direction)) / STEP
        np.testing.assert_allclose(grad[:, i], numeric, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize(("depth", "width"), CASES)
def test_hvp_matches_complex_step_of_the_gradient(depth: int, width: int) -> None:
    model = DeepModel(depth, width, phi=0.7)
    theta = points(model, seed=1)
    v = np.random.default_rng(depth * width).standard_normal(theta.shape)
    numeric = np.imag(model.gradient(theta + 1j * STEP * v)) / STEP
    np.testing.assert_allclose(model.hvp(theta, v), numeric, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(("depth", "width"), CASES)
def test_hessian_columns_are_hvps_and_symmetric(depth: int, width: int) -> None:
    model = DeepModel(depth, width, phi=1.0)
    theta = points(model, seed=2)
    hessian = model.hessian(theta)
    np.testing.assert_array_equal(hessian, np.swapaxes(hessian, 1, 2))
    for i in range(model.size):
        unit = np.zeros_like(theta)
        unit[:, i] = 1.0
        np.testing.assert_allclose(hessian[:, :, i], model.hvp(theta, unit), rtol=1e-12, atol=1e-13)
    top = np.linalg.eigvalsh(hessian)[:, -1]
    np.testing.assert_array_equal(model.sharpness(theta), top)


def test_output_is_the_matrix_product() -> None:
    model = DeepModel(4, 3, phi=0.0)
    theta = points(model, n=3)
    for row, weights in enumerate(zip(*layers(theta, 4, 3), strict=True)):
        product = weights[3] @ weights[2] @ weights[1] @ weights[0]
        assert model.output(theta)[row] == pytest.approx(float(product[0, 0]), rel=1e-14)


def test_layout_round_trips_and_is_the_shallow_a_b_at_depth_two() -> None:
    model = DeepModel(4, 3, phi=1.0)
    theta = points(model, n=2)
    weights = model.layers(theta)
    assert [w.shape[1:] for w in weights] == [(3, 1), (3, 3), (3, 3), (1, 3)]
    np.testing.assert_array_equal(flatten(weights), theta)
    np.testing.assert_array_equal(weights[1][1], theta[1, 3:12].reshape(3, 3))  # row-major
    a, b = np.array([[0.1, 0.2]]), np.array([[0.3, 0.4]])
    w1, w2 = layers(np.concatenate([a, b], axis=1), 2, 2)
    np.testing.assert_array_equal(w1[:, :, 0], a)
    np.testing.assert_array_equal(w2[:, 0, :], b)


@pytest.mark.parametrize("width", [1, 2, 5])
def test_depth_two_equals_the_shallow_closed_forms(width: int) -> None:
    phi = 1.7
    model = DeepModel(2, width, phi)
    theta = points(model, n=20, seed=3) * 1.5
    a, b = theta[:, :width], theta[:, width:]
    eps, lam, q = closed_forms.reduced_coordinates(a, b, phi)
    np.testing.assert_allclose(model.residual(theta), eps, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(model.scale(theta), lam, rtol=1e-15)
    np.testing.assert_array_equal(model.imbalance(theta), q)  # bit for bit: the same expression
    np.testing.assert_allclose(model.sharpness(theta), closed_forms.sharpness(eps, lam, phi), rtol=1e-13)
    s0, p0 = closed_forms.sum_and_difference_norms(a, b)
    gf = closed_forms.gradient_flow_sharpness(eps, lam, phi, s0, p0)
    np.testing.assert_array_equal(model.gradient_flow_sharpness(theta), gf)
    for row in range(3):
        full = closed_forms.full_hessian(a[row], b[row], phi)
        np.testing.assert_allclose(model.hessian(theta[row : row + 1])[0], full, rtol=1e-13, atol=1e-14)


def test_imbalance_is_the_per_neuron_sum_and_conserved_by_small_steps() -> None:
    model = DeepModel(3, 2, phi=1.0)
    theta = np.array([[1.0, 2.0, 0.5, -1.0, 0.0, 3.0, 2.0, 1.0]])
    # W1 = [[1], [2]], W2 = [[0.5, -1], [0, 3]], W3 = [[2, 1]]
    # layer 1: columns of W2 (0.25, 10) vs rows of W1 (1, 4); layer 2: columns of W3 (4, 1) vs rows of W2 (1.25, 9)
    assert model.imbalance(theta)[0] == pytest.approx(0.75 + 6 + 2.75 + 8, rel=1e-15)
    # Gradient flow conserves Q; GD changes it by O(η²) per step.
    eta = 1e-4
    after = theta - eta * model.gradient(theta)
    change = abs(model.imbalance(after)[0] - model.imbalance(theta)[0])
    assert 0 < change < 1e3 * eta**2


def test_gradient_rejects_a_batch() -> None:
    model = DeepModel(3, 2, phi=1.0)
    with pytest.raises(ValueError, match="no data set"):
        model.gradient(points(model), batch=np.zeros((5, 1), dtype=np.int64))


def _explicit(spec: object, depth: int | None = None) -> SweepConfig:
    """A deep sweep config whose start is ``init: {explicit: {layers: spec}}``."""
    model = {"family": "deep"} if depth is None else {"family": "deep", "depth": depth}
    return parse_config({"model": model, "grid": {"eta": 0.1, "phi": 1.0}, "init": {"explicit": {"layers": spec}}})


def test_explicit_start_is_read_by_rows() -> None:
    spec = [[[1], [2]], [[3, 4], [5, 6]], [[7, 8]]]
    explicit = _explicit(spec, depth=3).explicit_theta
    assert explicit is not None and (explicit.depth, explicit.d) == (3, 2)
    theta = np.array([explicit.theta])
    np.testing.assert_array_equal(theta, [[1, 2, 3, 4, 5, 6, 7, 8]])
    w1, w2, w3 = layers(theta, 3, 2)
    np.testing.assert_array_equal(w2[0], [[3, 4], [5, 6]])


@pytest.mark.parametrize(
    ("spec", "key", "words"),
    [
        ([[[1], [2]]], "init.explicit.layers", "N >= 2 matrices"),
        ("x", "init.explicit.layers", "N >= 2 matrices"),
        ([[1, 2], [[1, 2]]], "init.explicit.layers[0][0]", "a row"),  # a flat list is not by rows
        ([[[1], [2]], 3], "init.explicit.layers[1]", "list of rows"),
        ([5, [[1, 2]]], "init.explicit.layers[0]", "list of rows"),
        ([[[1], [2]], [[1, 2, 3]]], "init.explicit.layers[1]", "has shape 1×3, expected 1×2 (W_N is 1×d"),
        ([[[1, 2], [3, 4]], [[1, 2]]], "init.explicit.layers[0]", "has shape 2×2, expected 2×1 (W_1 is d×1"),
        ([[[1], [2]], [[1, 2], [3]], [[1, 2]]], "init.explicit.layers[1]", "rows must have equal lengths"),
        ([[[1], [2]], [[1, 2]], [[1, 2]]], "init.explicit.layers[1]", "expected 2×2 (W_k is d×d"),
        ([[[1], [2]], [[1, "x"]]], "init.explicit.layers[1][0][1]", "must be a number"),
        ([[[1], [float("nan")]], [[1, 2]]], "init.explicit.layers[0][1][0]", "finite"),
        ([[[0], [0]], [[0, 0]]], "init.explicit", "saddle"),
    ],
)
def test_explicit_start_with_a_wrong_shape_names_the_layer(spec: object, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as error:
        _explicit(spec)
    assert error.value.key == key
    assert words in error.value.problem
    assert error.value.exit_code == 2


def test_explicit_start_against_the_configured_depth() -> None:
    with pytest.raises(ConfigError, match="is 3 but init.explicit.layers has 2 layers") as error:
        _explicit([[[1], [2]], [[1, 2]]], depth=3)
    assert error.value.key == "model.depth"
