"""Derivative checks every data-family model passes (vector, relu): the gradient and
the Hessian-vector product against complex-step differences of the loss and of the
gradient, and the Hessian's columns against HVPs with its top eigenvalue as sharpness."""

from __future__ import annotations

from typing import Any

import numpy as np

STEP = 1e-30  # complex step: no cancellation, so the step can be tiny


def assert_gradient_and_hvp_match_complex_steps(model: Any, theta: np.ndarray, v: np.ndarray) -> None:
    directional = model.loss(theta + 1j * STEP * v).imag / STEP
    assert np.allclose(np.sum(model.gradient(theta) * v, axis=1), directional, rtol=1e-13, atol=1e-13)
    hvp = model.gradient(theta + 1j * STEP * v).imag / STEP
    assert np.allclose(model.hvp(theta, v), hvp, rtol=1e-13, atol=1e-13)


def assert_hessian_columns_are_hvps(model: Any, theta: np.ndarray) -> None:
    """… and the sharpness is the Hessian's top eigenvalue, to the bit."""
    hess = model.hessian(theta)
    assert np.array_equal(hess, np.transpose(hess, (0, 2, 1)))
    for k in range(model.size):
        unit = np.zeros_like(theta)
        unit[:, k] = 1.0
        assert np.allclose(hess[:, :, k], model.hvp(theta, unit), rtol=1e-13, atol=1e-13)
    assert np.allclose(model.sharpness(theta), np.linalg.eigvalsh(hess)[:, -1], rtol=0, atol=0)
