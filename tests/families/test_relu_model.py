"""The relu model f(x) = Σ_j b_j relu(a_jᵀx): derivatives against complex-step differences,
Hessian against HVPs, and equality with the vector model where every pre-activation is
positive (loss, gradient, Hessian, along a GD run, and the gradient-flow sharpness)."""

from __future__ import annotations

import numpy as np
import pytest

from lin2net.dynamics.relu.model import ReluModel
from lin2net.dynamics.vector.data import make_data, parse_vector_data
from lin2net.dynamics.vector.flow import TOLERANCES
from lin2net.dynamics.vector.model import VectorModel
from tests.families.derivative_checks import (
    assert_gradient_and_hvp_match_complex_steps,
    assert_hessian_columns_are_hvps,
)


def model_and_points(d: int, m: int, teacher: str = "relu", n: int = 15, count: int = 6):
    x, y = make_data(parse_vector_data({"n": n, "x": "gaussian", "teacher": teacher}, m), m, 1.1, seed=6)
    model = ReluModel(d, m, x, y)
    rng = np.random.default_rng(10 * d + m)
    return model, rng.standard_normal((count, model.size)), rng.standard_normal((count, model.size))


@pytest.mark.parametrize(("d", "m"), [(1, 1), (3, 1), (1, 4), (4, 3), (2, 6)])
def test_gradient_and_hvp_against_complex_step(d: int, m: int) -> None:
    model, theta, v = model_and_points(d, m)
    assert np.min(np.abs(model.activations(theta))) > 1e-6  # no kink within the step
    assert_gradient_and_hvp_match_complex_steps(model, theta, v)


def test_gradient_against_central_differences() -> None:
    model, theta, v = model_and_points(4, 3)
    h = 1e-6
    central = (model.loss(theta + h * v) - model.loss(theta - h * v)) / (2 * h)
    assert np.allclose(np.sum(model.gradient(theta) * v, axis=1), central, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize(("d", "m"), [(1, 1), (4, 3), (2, 6)])
def test_hessian_columns_are_hvps(d: int, m: int) -> None:
    model, theta, _ = model_and_points(d, m)
    assert_hessian_columns_are_hvps(model, theta)


def test_relu_derivative_at_zero_is_zero() -> None:
    """A data point exactly at a neuron's kink contributes nothing to that neuron (relu'(0) = 0)."""
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    model = ReluModel(1, 2, x, np.array([1.0, 1.0]))
    theta = np.array([[0.0, 2.0, 1.5]])  # z = (0, 2): the first point sits at the kink
    grad = model.gradient(theta)
    assert grad[0, 0] == 0.0  # ∂L/∂a_1 gets no term from x_1
    assert model.hessian(theta)[0, 0, 0] == 0.0


def positive_case(d: int, m: int, count: int = 5):
    """Positive inputs, positive first-layer weights: every pre-activation positive."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 1.5, size=(12, m))
    y = x @ rng.uniform(0.2, 0.6, size=m)
    theta = np.concatenate([rng.uniform(0.3, 0.8, size=(count, d * m)), rng.uniform(0.2, 0.6, size=(count, d))], 1)
    return ReluModel(d, m, x, y), VectorModel(d, m, x, y), theta


@pytest.mark.parametrize(("d", "m"), [(1, 1), (3, 2), (2, 4)])
def test_positive_preactivations_equal_the_vector_model(d: int, m: int) -> None:
    relu, vector, theta = positive_case(d, m)
    assert np.all(relu.activations(theta) > 0)
    assert np.allclose(relu.loss(theta), vector.loss(theta), rtol=1e-13)
    assert np.allclose(relu.gradient(theta), vector.gradient(theta), rtol=1e-13, atol=1e-15)
    assert np.allclose(relu.hessian(theta), vector.hessian(theta), rtol=1e-12, atol=1e-14)
    assert np.array_equal(relu.imbalance(theta), vector.imbalance(theta))
    # along a GD run: the same iterates, every pre-activation staying positive
    a, b = theta.copy(), theta.copy()
    for _ in range(200):
        a -= 0.2 * relu.gradient(a)
        b -= 0.2 * vector.gradient(b)
        assert np.all(relu.activations(a) > 0)
    assert np.allclose(a, b, rtol=1e-11, atol=1e-13)
    assert np.allclose(relu.sharpness(a), vector.sharpness(b), rtol=1e-11)


def test_positive_flow_sharpness_equals_the_vector_model() -> None:
    """With the vector family's step caps (this data set is ill-conditioned: slow to rest)."""
    relu, vector, theta = positive_case(2, 3, count=3)
    relu = ReluModel(2, 3, relu.x, relu.y, tolerances=TOLERANCES)
    expected = vector.integrated_flow_sharpness(theta)
    assert np.all(np.isfinite(expected))
    assert np.allclose(relu.gradient_flow_sharpness(theta), expected, rtol=1e-8)


def test_imbalance_is_per_neuron_and_conserved_by_the_flow_direction() -> None:
    model, theta, _ = model_and_points(4, 3)
    c = model.conserved(theta)
    assert np.allclose(model.imbalance(theta), np.abs(c).sum(axis=1), rtol=1e-13)
    # d/dt (‖a_j‖² − b_j²) = −2 (a_j·∇_{a_j} L − b_j ∇_{b_j} L) = 0 along the flow
    grad_a, grad_b = model.split(model.gradient(theta))
    a, b = model.split(theta)
    rate = np.sum(a * grad_a, axis=2) - b * grad_b
    assert np.allclose(rate, 0.0, atol=1e-13)


def test_minibatch_gradient() -> None:
    model, theta, _ = model_and_points(3, 2, n=12, count=4)
    rng = np.random.default_rng(2)
    every_row = np.stack([rng.permutation(12) for _ in range(4)])
    assert np.array_equal(model.gradient(theta, every_row), model.gradient(theta))
    rows = np.array([0, 5, 5, 11])
    sub = ReluModel(3, 2, model.x[rows], model.y[rows])
    assert np.allclose(model.gradient(theta, np.tile(rows, (4, 1))), sub.gradient(theta), rtol=1e-14, atol=1e-15)
