"""The vector model f(x) = bᵀAx: derivatives against complex-step differences, Hessian
against HVPs, the m = 1 whitened reduction to the shallow closed forms, mini-batches,
and the gradient-flow sharpness (closed forms against the integrated flow)."""

from __future__ import annotations

import numpy as np
import pytest

from lin2net.dynamics.vector.data import make_data, parse_vector_data
from lin2net.dynamics.vector.model import VectorModel
from lin2net.theory import closed_forms
from tests.families.derivative_checks import (
    assert_gradient_and_hvp_match_complex_steps,
    assert_hessian_columns_are_hvps,
)


def model_and_points(d: int, m: int, x: str = "gaussian", n: int = 17, count: int = 6, noise: float = 0.2):
    x_data, y = make_data(parse_vector_data({"n": n, "x": x, "noise": noise}, m), m, 1.3, seed=4)
    model = VectorModel(d, m, x_data, y)
    rng = np.random.default_rng(d * 100 + m)
    return model, rng.standard_normal((count, model.size)), rng.standard_normal((count, model.size))


@pytest.mark.parametrize(("d", "m"), [(1, 1), (3, 1), (1, 4), (4, 3), (2, 6)])
def test_gradient_and_hvp_against_complex_step(d: int, m: int) -> None:
    model, theta, v = model_and_points(d, m)
    assert_gradient_and_hvp_match_complex_steps(model, theta, v)


@pytest.mark.parametrize(("d", "m"), [(1, 1), (4, 3), (2, 6)])
def test_hessian_columns_are_hvps_and_sharpness_is_its_top_eigenvalue(d: int, m: int) -> None:
    model, theta, _ = model_and_points(d, m)
    assert_hessian_columns_are_hvps(model, theta)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_whitened_m1_equals_the_shallow_closed_forms(d: int) -> None:
    phi = 1.3
    x, y = make_data(parse_vector_data({"n": 40, "x": "whitened"}, 1), 1, phi, seed=8)
    model = VectorModel(d, 1, x, y)
    rng = np.random.default_rng(d)
    theta = rng.standard_normal((20, 2 * d))
    a, b = theta[:, :d], theta[:, d:]
    eps, lam, q = closed_forms.reduced_coordinates(a, b, phi)
    assert np.allclose(model.loss(theta), 0.5 * eps * eps, rtol=1e-13, atol=1e-15)
    assert np.array_equal(model.imbalance(theta), q)  # bit for bit: the same products
    top = np.array([np.linalg.eigvalsh(closed_forms.full_hessian(a[i], b[i], phi))[-1] for i in range(20)])
    assert np.allclose(model.sharpness(theta), closed_forms.sharpness(eps, lam, phi), rtol=1e-13)
    assert np.allclose(model.hessian(theta)[0], closed_forms.full_hessian(a[0], b[0], phi), rtol=1e-13, atol=1e-14)
    assert np.allclose(model.sharpness(theta), top, rtol=1e-13)
    s, p = closed_forms.sum_and_difference_norms(a, b)
    shallow_gf = closed_forms.gradient_flow_sharpness(eps, lam, phi, s0=s, p0=p)
    assert np.allclose(model.gradient_flow_sharpness(theta), shallow_gf, rtol=1e-14)
    # and the flow integrated to rest agrees with the closed form
    assert np.allclose(model.integrated_flow_sharpness(theta[:6]), shallow_gf[:6], rtol=1e-9)


def test_gd_on_whitened_m1_scales_every_entry_of_the_conserved_matrix() -> None:
    """One GD step multiplies AAᵀ − bbᵀ by 1 − η²ε² at m = 1 (whitened, noise-free):
    q_ratio is the shallow one whatever norm of C is used."""
    x, y = make_data(parse_vector_data({"n": 40, "x": "whitened"}, 1), 1, 1.0, seed=8)
    model = VectorModel(3, 1, x, y)
    theta = np.random.default_rng(0).standard_normal((5, 6))
    eta = 0.3
    eps = model.end_to_end(theta)[:, 0] - 1.0
    after = theta - eta * model.gradient(theta)
    factor = (1 - eta**2 * eps**2)[:, None, None]
    assert np.allclose(model.conserved(after), factor * model.conserved(theta), rtol=1e-12, atol=1e-14)


def test_imbalance_is_the_diagonal_of_the_conserved_matrix() -> None:
    model, theta, _ = model_and_points(4, 3)
    diagonal = np.diagonal(model.conserved(theta), axis1=1, axis2=2)
    assert np.allclose(model.imbalance(theta), np.abs(diagonal).sum(axis=1), rtol=1e-13)


def test_minibatch_gradient() -> None:
    model, theta, _ = model_and_points(3, 2, n=12, count=4)
    rng = np.random.default_rng(1)
    every_row = np.stack([rng.permutation(12) for _ in range(4)])
    assert np.array_equal(model.gradient(theta, every_row), model.gradient(theta))  # bit for bit
    # the mean over a partition into equal batches is the full gradient
    order = rng.permutation(12)
    parts = [np.tile(order[k : k + 3], (4, 1)) for k in range(0, 12, 3)]
    mean = sum(model.gradient(theta, part) for part in parts) / 4
    assert np.allclose(mean, model.gradient(theta), rtol=1e-13, atol=1e-14)
    # a batch is the loss of its rows: against complex steps on the sub-model
    rows = np.array([2, 7, 7, 10])
    sub = VectorModel(3, 2, model.x[rows], model.y[rows])
    assert np.allclose(model.gradient(theta, np.tile(rows, (4, 1))), sub.gradient(theta), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("x", ["gaussian", "whitened"])
def test_closed_form_flow_sharpness_against_the_integrated_flow(x: str) -> None:
    for d, m in [(4, 1), (1, 3)]:
        model, theta, _ = model_and_points(d, m, x=x, n=30)
        closed = model.gradient_flow_sharpness(theta)
        assert np.all(np.isfinite(closed))
        assert np.allclose(model.integrated_flow_sharpness(theta), closed, rtol=1e-9)


def test_integrated_flow_keeps_the_conserved_matrix_and_ends_at_least_squares() -> None:
    from lin2net.dynamics.vector.flow import TOLERANCES, flow_to_rest

    model, theta, _ = model_and_points(3, 2, n=25)
    scale = np.sum(theta * theta, axis=1) + model.label_scale
    end, at_rest = flow_to_rest(model.gradient, model.sharpness, model.loss, theta, scale, TOLERANCES)
    assert np.all(at_rest)
    assert np.allclose(model.conserved(end), model.conserved(theta), rtol=0, atol=1e-8)
    assert np.allclose(model.end_to_end(end), model.target[None, :], rtol=0, atol=1e-10)
    assert np.allclose(model.loss(end), model.loss_floor, rtol=1e-10)
