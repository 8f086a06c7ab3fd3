"""The vector and relu models' GD against gradient descent in 60-digit arithmetic (mpmath).

The reference is written from the definitions, by plain loops over data points,
neurons and inputs: f(x_i) = Σ_j b_j σ(Σ_k a_jk x_ik) (σ the identity for vector, relu
with relu'(0) = 0 for relu), L = (1/2n) Σ_i r_i², ∇L = (1/n) Σ_i r_i ∇f(x_i) and
∇²L = (1/n) Σ_i (∇f ∇fᵀ + r_i ∇²f), where ∇²f pairs a_jk with b_j by σ'(z_ij) x_ik.
It steps θ ← θ − η∇L in 60 digits from the same double-precision start with the
stop rule L <= loss_tol (½ε² with ε = √(2L)), and measures T, Q(T)/Q(0)
(Q = Σ_j |‖a_j‖² − b_j²|) and the Hessian's top eigenvalue at θ_T (mpmath.eigsy).

Required of the batched NumPy path (the model through fam-core's generic GD,
lin2net.dynamics.parameter_vector, and the one driver): T equal; sharpness_T and
q_ratio within 1e-12 relative.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from lin2net.dynamics.driver import run
from lin2net.dynamics.parameter_vector import ParameterVectorDynamics, run_parameters, start_state
from lin2net.dynamics.protocol import Status, StopRule
from lin2net.dynamics.relu.model import ReluModel
from lin2net.dynamics.vector.model import VectorModel

DIGITS = 60
RTOL = 1e-12


class Exact:
    """f(x) = Σ_j b_j σ(a_jᵀx) in mpmath (see module doc)."""

    def __init__(self, width: int, inputs: int, x: list[list[float]], y: list[float], relu: bool) -> None:
        self.d, self.m, self.relu = width, inputs, relu
        self.x = [[mpmath.mpf(v) for v in row] for row in x]
        self.y = [mpmath.mpf(v) for v in y]

    def parts(self, theta: list[mpmath.mpf]) -> tuple[list[list[mpmath.mpf]], list[mpmath.mpf]]:
        d, m = self.d, self.m
        return [theta[j * m : (j + 1) * m] for j in range(d)], theta[d * m :]

    def point(self, theta: list[mpmath.mpf], x: list[mpmath.mpf]) -> tuple[mpmath.mpf, list, list]:
        """(f(x), ∇f(x), the pairing σ'(z_j) x_k of a_jk with b_j)."""
        a, b = self.parts(theta)
        f, grad_a, grad_b, pair = mpmath.mpf(0), [], [], []
        for j in range(self.d):
            z = sum(a[j][k] * x[k] for k in range(self.m))
            slope = (1 if z > 0 else 0) if self.relu else 1
            h = z * slope
            f += b[j] * h
            grad_a += [b[j] * slope * x[k] for k in range(self.m)]
            grad_b.append(h)
            pair.append([slope * x[k] for k in range(self.m)])
        return f, grad_a + grad_b, pair

    def loss_and_gradient(self, theta: list[mpmath.mpf]) -> tuple[mpmath.mpf, list[mpmath.mpf]]:
        n = len(self.y)
        loss, grad = mpmath.mpf(0), [mpmath.mpf(0)] * len(theta)
        for x, y in zip(self.x, self.y, strict=True):
            f, df, _ = self.point(theta, x)
            r = f - y
            loss += r * r / (2 * n)
            grad = [g + r * v / n for g, v in zip(grad, df, strict=True)]
        return loss, grad

    def hessian(self, theta: list[mpmath.mpf]) -> mpmath.matrix:
        n, size, d, m = len(self.y), len(theta), self.d, self.m
        out = mpmath.matrix(size, size)
        for x, y in zip(self.x, self.y, strict=True):
            f, df, pair = self.point(theta, x)
            r = f - y
            for p in range(size):
                for q in range(size):
                    out[p, q] += df[p] * df[q] / n
            for j in range(d):
                for k in range(m):
                    out[j * m + k, d * m + j] += r * pair[j][k] / n
                    out[d * m + j, j * m + k] += r * pair[j][k] / n
        return out

    def imbalance(self, theta: list[mpmath.mpf]) -> mpmath.mpf:
        a, b = self.parts(theta)
        return sum(abs(sum(v * v for v in a[j]) - b[j] * b[j]) for j in range(self.d))


def exact_gradient_descent(exact: Exact, theta0: np.ndarray, eta: float, rule: StopRule) -> tuple[int, float, float]:
    """(T, Q(T)/Q(0), sharpness at θ_T) of GD in 60 digits."""
    with mpmath.workdps(DIGITS):
        theta = [mpmath.mpf(float(v)) for v in theta0]
        step, tol = mpmath.mpf(eta), mpmath.mpf(rule.loss_tol)
        q0 = exact.imbalance(theta)
        t = 0
        while True:
            loss, grad = exact.loss_and_gradient(theta)
            if loss <= tol or t >= rule.max_steps:
                break
            theta = [v - step * g for v, g in zip(theta, grad, strict=True)]
            t += 1
        top = max(mpmath.eigsy(exact.hessian(theta), eigvals_only=True))
        return t, float(exact.imbalance(theta) / q0), float(top)


X3 = [[1.0, 0.2], [-0.4, 0.9], [0.3, -1.1], [0.8, 0.5]]
LINEAR = [0.6 * u + 0.4 * v for u, v in X3]  # y = β*ᵀx, β* = (0.6, 0.4): the vector model fits it
RELU = [max(0.9 * u - 0.5 * v, 0.0) for u, v in X3]  # one ReLU neuron β* = (0.9, −0.5): relu fits it
CASES = [
    # (family, d, m, x rows, y, θ0, η)
    ("vector", 1, 1, [[1.0], [-0.5], [1.3]], [0.9, -0.45, 1.17], [0.4, 1.3], 0.4),
    ("vector", 2, 1, [[1.0], [-1.0]], [1.0, -1.0], [0.3, -0.2, 1.1, 0.5], 0.6),
    ("vector", 2, 1, [[1.0], [-1.0]], [1.0, -1.0], [0.3, -0.2, 1.1, 0.5], 0.9),  # max η·S = 3.08: edge of stability
    ("vector", 2, 2, X3, LINEAR, [0.5, -0.3, 0.2, 0.8, 0.9, -0.4], 0.3),
    ("vector", 3, 2, X3, LINEAR, [0.5, -0.3, 0.2, 0.8, -0.6, 0.1, 0.9, -0.4, 0.3], 0.15),
    ("vector", 3, 2, X3, LINEAR, [0.5, -0.3, 0.2, 0.8, -0.6, 0.1, 0.9, -0.4, 0.3], 0.9),
    ("relu", 2, 2, X3, RELU, [0.9, -0.4, -0.2, 0.7, 1.0, 0.6], 0.3),
    ("relu", 3, 2, X3, RELU, [0.8, -0.6, -0.2, 0.7, 0.5, -0.8, 1.0, 0.6, 0.4], 0.2),
    ("relu", 1, 1, [[1.0], [2.0], [-1.0]], [1.0, 2.0, 0.0], [0.7, 1.2], 0.25),
]


@pytest.mark.parametrize(("family", "d", "m", "x", "y", "theta0", "eta"), CASES)
def test_gradient_descent_against_60_digits(
    family: str, d: int, m: int, x: list, y: list, theta0: list, eta: float
) -> None:
    rule = StopRule(loss_tol=1e-10, max_steps=3000)
    exact = Exact(d, m, x, y, relu=family == "relu")
    steps, q_ratio, top = exact_gradient_descent(exact, np.array(theta0), eta, rule)
    assert steps < rule.max_steps, "the case must converge"
    model = (VectorModel if family == "vector" else ReluModel)(d, m, np.array(x), np.array(y))
    theta = np.array([theta0], dtype=np.float64)
    dynamics = ParameterVectorDynamics(model)
    result = run(dynamics, start_state(model, theta), run_parameters(eta, 1), rule).results
    assert result.status[0] == Status.CONVERGED
    assert result.steps[0] == steps
    assert result.sharpness_T[0] == pytest.approx(top, rel=RTOL, abs=0)
    assert result.q_ratio[0] == pytest.approx(q_ratio, rel=RTOL, abs=0)
