"""Gradient descent on the deep model, θ ← θ − η∇L(θ), as a dynamics of the protocol.

A plain NumPy reference on the full parameter vector: the one driver
(:func:`lin2net.dynamics.driver.run`) runs it with the one stop rule, so its T,
status and diagnostics mean what they mean for the shallow model. Per state it
observes ε = f − Φ, λ = ‖θ‖², the loss and the sharpness S (the top eigenvalue
of :meth:`DeepModel.hessian`, eigvalsh: exact to rounding). The imbalance ratio
Q(T)/Q(0) is measured from θ (:meth:`DeepModel.imbalance`); unlike the shallow
model's, GD does not multiply Q by a known factor per step (the conserved
matrices change by η²ε²(G_{k+1}ᵀG_{k+1} − G_kG_kᵀ), G_k = ∂f/∂W_k), so there is
no product to carry. The step's ``u`` is ηε, as for the shallow model (the
driver's product only stands in where Q(0) = 0).

The generic parameter-vector dynamics of the model families supersedes this
for sweeps; this module is the deep family's own cross-check of it and what
``scripts/models_deep.py`` and the tests run.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from lin2net.dynamics.deep.model import DeepModel
from lin2net.dynamics.driver import Run, run
from lin2net.dynamics.protocol import FloatArray, Observation, Step, StopRule


class DeepState(NamedTuple):
    """θ (n, D), Q(0) and the step count t per trajectory (filled by ``start``)."""

    theta: FloatArray
    q0: FloatArray | None = None
    t: NDArray[np.int64] | None = None


class DeepParams(NamedTuple):
    """Per-trajectory step size η, shape (n,)."""

    eta: FloatArray


class DeepGD:
    """GD on a :class:`DeepModel` (Φ, depth and width are the model's).

    ``final_sharpness_only`` (given the run's stop rule): measure the sharpness
    only at the state where the stop rule retires a trajectory, NaN before. The
    rows' sharpness_T is the same; max_eta_sharpness and eos_steps are then not
    measured (NaN, 0). The Hessian's eigvalsh costs ~80 gradient steps at
    D = 24, so sweeps that need only sharpness_T use it.
    """

    name = "gd"

    def __init__(self, model: DeepModel, final_sharpness_only: StopRule | None = None) -> None:
        self.model = model
        self.final_rule = final_sharpness_only

    def start(self, state: DeepState, params: DeepParams) -> DeepState:
        theta = np.array(state.theta, dtype=np.float64)
        return DeepState(theta, self.model.imbalance(theta), np.zeros(len(theta), dtype=np.int64))

    def observe(self, state: DeepState, params: DeepParams) -> Observation:
        eps = self.model.residual(state.theta)
        lam = self.model.scale(state.theta)
        wanted = np.isfinite(state.theta).all(axis=1)
        if self.final_rule is not None:
            rule = self.final_rule
            assert state.t is not None
            stops = (0.5 * eps * eps <= rule.loss_tol) | (state.t >= rule.max_steps)
            stops |= ~((np.abs(eps) <= rule.divergence_threshold) & (np.abs(lam) <= rule.divergence_threshold))
            wanted &= stops
        top = np.full(len(eps), np.nan)
        if wanted.any():
            top[wanted] = self.model.sharpness(state.theta[wanted])
        return Observation(eps, lam, 0.5 * eps * eps, top, params.eta * top)

    def step(self, state: DeepState, params: DeepParams, t: int, obs: Observation) -> tuple[DeepState, Step]:
        theta = state.theta - params.eta[:, None] * self.model.gradient(state.theta)
        assert state.t is not None
        return DeepState(theta, state.q0, state.t + 1), Step(params.eta * obs.eps, {})

    def tolerance(self, params: DeepParams, rule: StopRule) -> FloatArray:
        return np.full(len(params.eta), rule.loss_tol)

    def measured_log_q(self, state: DeepState, product: FloatArray | None = None) -> FloatArray | None:
        assert state.q0 is not None
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio: FloatArray = np.log(self.model.imbalance(state.theta) / state.q0)
        if product is not None:
            log_ratio = np.where(state.q0 == 0, product, log_ratio)
        return log_ratio

    def window(self, rule: StopRule) -> int | None:
        return None


def integrate(
    model: DeepModel,
    theta: FloatArray,
    eta: float | FloatArray,
    rule: StopRule,
    *,
    record: Literal["final", "every"] = "final",
    final_sharpness_only: bool = False,
) -> Run:
    """GD from each row of θ (n, D) with step size η (scalar or (n,)) to its stopping time
    (``final_sharpness_only``: see :class:`DeepGD`)."""
    theta = np.asarray(theta, dtype=np.float64)
    eta_rows = np.array(np.broadcast_to(np.asarray(eta, dtype=np.float64), (len(theta),)))
    dynamics = DeepGD(model, rule if final_sharpness_only else None)
    return run(dynamics, DeepState(theta), DeepParams(eta_rows), rule, record=record)


def trajectory(model: DeepModel, theta: FloatArray, eta: float, rule: StopRule) -> FloatArray:
    """Every state θ_0, …, θ_T of one GD run from θ (1, D) (for traces of λ_GF(θ_t)), shape (T + 1, D).

    The same loop and stop rule as :func:`integrate` (a check, not a second
    implementation: tests compare its length with ``integrate``'s T)."""
    theta = np.array(theta, dtype=np.float64).reshape(1, -1)
    states = [theta[0].copy()]
    for t in range(rule.max_steps + 1):
        eps = float(model.residual(theta)[0])
        lam = float(model.scale(theta)[0])
        if 0.5 * eps * eps <= rule.loss_tol:
            break
        if not (abs(eps) <= rule.divergence_threshold and abs(lam) <= rule.divergence_threshold):
            break
        if t >= rule.max_steps:
            break
        theta = theta - eta * model.gradient(theta)
        states.append(theta[0].copy())
    return np.array(states)
