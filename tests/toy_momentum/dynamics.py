"""Heavy ball on L(a, b) = ½(a·b − Φ)²: x_{t+1} = x_t − η∇L(x_t) + β(x_t − x_{t−1}), x = (a, b).

The state is the vectors and the last move (not GD's (ε, S, P): the protocol
assumes nothing about a state). Q is no longer multiplied by a factor per step,
so log Q(t)/Q(0) is measured from the vectors. With β = 0 every step is GD's
full-vector step plus 0, bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lin2net.dynamics.protocol import FloatArray, Observation, Step, StopRule
from lin2net.theory.closed_forms import imbalance, reduced_coordinates, sharpness


class MomentumState(NamedTuple):
    a: FloatArray
    b: FloatArray
    move_a: FloatArray  # a_t − a_{t−1} (0 at t = 0)
    move_b: FloatArray
    q0: FloatArray


class MomentumParams(NamedTuple):
    eta: FloatArray
    phi: FloatArray
    beta: FloatArray


def start(a: FloatArray, b: FloatArray) -> MomentumState:
    return MomentumState(a, b, np.zeros_like(a), np.zeros_like(b), imbalance(a, b))


class HeavyBall:
    name = "momentum"

    def start(self, state: MomentumState, params: MomentumParams) -> MomentumState:
        return state

    def observe(self, state: MomentumState, params: MomentumParams) -> Observation:
        eps, lam, _ = reduced_coordinates(state.a, state.b, 0.0)
        eps = eps - params.phi
        eta_sharpness = params.eta * sharpness(eps, lam, params.phi)
        return Observation(eps, lam, 0.5 * eps * eps, eta_sharpness / params.eta, eta_sharpness)

    def step(
        self, state: MomentumState, params: MomentumParams, t: int, obs: Observation
    ) -> tuple[MomentumState, Step]:
        scale = (params.eta * obs.eps)[:, None]
        beta = params.beta[:, None]
        a = state.a - scale * state.b + beta * state.move_a
        b = state.b - scale * state.a + beta * state.move_b
        moved = MomentumState(a, b, a - state.a, b - state.b, state.q0)
        return moved, Step(params.eta * obs.eps, {})

    def tolerance(self, params: MomentumParams, rule: StopRule) -> FloatArray:
        return np.full(len(params.eta), rule.loss_tol)

    def measured_log_q(self, state: MomentumState, product: FloatArray | None = None) -> FloatArray | None:
        log_ratio: FloatArray = np.log(imbalance(state.a, state.b) / state.q0)
        return log_ratio

    def window(self, rule: StopRule) -> int | None:
        return None
