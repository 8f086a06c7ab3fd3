"""The deep model's GD against gradient descent in 60-digit arithmetic (mpmath).

The reference is independent of the model's prefix/suffix code: f is
multilinear in the layers, so ∂f/∂θ_p is f with θ_p's layer replaced by the
unit matrix E_p, and ∂²f/∂θ_p∂θ_q (p, q in different layers) is f with both
layers replaced (0 within one layer). It steps θ ← θ − ηε∇f in 60 digits from
the same double-precision start, with the same stop rule ½ε² <= loss_tol, and
measures T, Q(T)/Q(0) (Q = Σ_k Σ_i |‖W_{k+1}[:, i]‖² − ‖W_k[i, :]‖²|) and the top
eigenvalue of the Hessian at θ_T (mpmath.eigsy).

Required of both batched NumPy paths through the one driver — the sweep's
generic parameter-vector GD (lin2net.dynamics.parameter_vector) and the deep
family's own reference (lin2net.dynamics.deep.reference): T equal; sharpness_T
and q_ratio within 1e-12 relative.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from lin2net.dynamics.deep.model import DeepModel, layer_shapes
from lin2net.dynamics.deep.reference import integrate
from lin2net.dynamics.driver import run
from lin2net.dynamics.families import parse_explicit
from lin2net.dynamics.parameter_vector import ParameterVectorDynamics, run_parameters, start_state
from lin2net.dynamics.protocol import Status, StopRule

DIGITS = 60
RTOL = 1e-12

Matrix = list[list[mpmath.mpf]]


def product(weights: list[Matrix]) -> mpmath.mpf:
    """f = W_N ⋯ W_1 (a 1×1 result) by plain loops."""
    vector = [row[0] for row in weights[0]]  # W_1 is d×1
    for w in weights[1:]:
        vector = [sum(w[r][c] * vector[c] for c in range(len(vector))) for r in range(len(w))]
    return vector[0]


def unit(shape: tuple[int, int], r: int, c: int) -> Matrix:
    out = [[mpmath.mpf(0)] * shape[1] for _ in range(shape[0])]
    out[r][c] = mpmath.mpf(1)
    return out


class Exact:
    """The deep model in mpmath, from multilinearity (see module doc)."""

    def __init__(self, depth: int, width: int) -> None:
        self.shapes = layer_shapes(depth, width)
        self.index = [(k, r, c) for k, (rows, cols) in enumerate(self.shapes) for r in range(rows) for c in range(cols)]

    def split(self, theta: list[mpmath.mpf]) -> list[Matrix]:
        out, at = [], 0
        for rows, cols in self.shapes:
            out.append([theta[at + r * cols : at + (r + 1) * cols] for r in range(rows)])
            at += rows * cols
        return out

    def gradient_of_output(self, weights: list[Matrix]) -> list[mpmath.mpf]:
        return [
            product([unit(self.shapes[k], r, c) if j == k else w for j, w in enumerate(weights)])
            for k, r, c in self.index
        ]

    def hessian(self, weights: list[Matrix], eps: mpmath.mpf) -> mpmath.matrix:
        grad = self.gradient_of_output(weights)
        size = len(self.index)
        out = mpmath.matrix(size, size)
        for p, (k, r, c) in enumerate(self.index):
            for q, (other, s, e) in enumerate(self.index):
                second = mpmath.mpf(0)
                if k != other:
                    replaced = list(weights)
                    replaced[k], replaced[other] = unit(self.shapes[k], r, c), unit(self.shapes[other], s, e)
                    second = product(replaced)
                out[p, q] = grad[p] * grad[q] + eps * second
        return out

    def imbalance(self, weights: list[Matrix]) -> mpmath.mpf:
        total = mpmath.mpf(0)
        for lower, upper in zip(weights[:-1], weights[1:], strict=True):
            for i in range(len(lower)):
                outgoing = sum(upper[r][i] ** 2 for r in range(len(upper)))
                incoming = sum(x**2 for x in lower[i])
                total += abs(outgoing - incoming)
        return total


def exact_gradient_descent(
    depth: int, width: int, theta0: np.ndarray, eta: float, phi: float, rule: StopRule
) -> tuple[int, float, float]:
    """(T, Q(T)/Q(0), sharpness at θ_T) of GD in 60 digits."""
    model = Exact(depth, width)
    with mpmath.workdps(DIGITS):
        theta = [mpmath.mpf(float(v)) for v in theta0]
        step, target, tol = mpmath.mpf(eta), mpmath.mpf(phi), mpmath.mpf(rule.loss_tol)
        q0 = model.imbalance(model.split(theta))
        t = 0
        while True:
            weights = model.split(theta)
            eps = product(weights) - target
            if eps * eps / 2 <= tol or t >= rule.max_steps:
                break
            grad = model.gradient_of_output(weights)
            theta = [x - step * eps * g for x, g in zip(theta, grad, strict=True)]
            t += 1
        weights = model.split(theta)
        eps = product(weights) - target
        top = max(mpmath.eigsy(model.hessian(weights, eps), eigvals_only=True))
        return t, float(model.imbalance(weights) / q0), float(top)


STARTS = [
    # (layers W_1, …, W_N by rows, eta, phi)
    ([[[0.3]], [[1.2]], [[0.9]]], 0.2, 1.0),
    ([[[0.3]], [[1.2]], [[0.9]]], 0.02, 1.0),  # 163 small steps
    ([[[0.3]], [[1.2]], [[0.9]]], 0.55, 1.0),  # η·S(0) > 2 at first: the edge of stability
    ([[[-0.4]], [[0.7]], [[1.5]], [[0.6]]], 0.42, 1.0),  # η·λ_GF(0) = 1.94, 84 oscillating steps
    ([[[-0.4]], [[0.7]], [[1.5]], [[0.6]]], 0.15, 1.0),
    ([[[0.5], [-0.2]], [[0.8, 0.1], [-0.3, 0.6]], [[0.9, 0.4]]], 0.3, 1.0),
    ([[[0.5], [-0.2]], [[0.8, 0.1], [-0.3, 0.6]], [[0.9, 0.4]]], 0.6, 1.0),  # η·λ_GF(0) = 2.05: ends flatter
    ([[[0.6], [0.3]], [[0.7, -0.2], [0.4, 0.5]], [[0.2, -0.6], [0.5, 0.3]], [[1.1, 0.2]]], 0.15, 0.8),
]


@pytest.mark.parametrize(("spec", "eta", "phi"), STARTS)
def test_gradient_descent_against_60_digits(spec: list, eta: float, phi: float) -> None:
    theta = np.array([parse_explicit("deep", {"layers": spec}).theta])
    depth, width = len(spec), len(spec[0])
    rule = StopRule(loss_tol=1e-10, max_steps=5000)
    steps, q_ratio, top = exact_gradient_descent(depth, width, theta[0], eta, phi, rule)
    assert steps < rule.max_steps, "the case must converge"
    model = DeepModel(depth, width, phi)
    generic = run(ParameterVectorDynamics(model), start_state(model, theta), run_parameters(eta, 1), rule).results
    reference = integrate(model, theta, eta, rule).results
    for result in (generic, reference):
        assert result.status[0] == Status.CONVERGED
        assert result.steps[0] == steps
        assert result.sharpness_T[0] == pytest.approx(top, rel=RTOL, abs=0)
        assert result.q_ratio[0] == pytest.approx(q_ratio, rel=RTOL, abs=0)
