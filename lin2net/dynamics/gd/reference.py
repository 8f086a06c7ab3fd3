"""Gradient descent on L(a, b) = ½(a·b − Φ)²: the NumPy reference, as a dynamics of the protocol.

:class:`GD` implements :class:`lin2net.dynamics.protocol.Dynamics` on two
states: :class:`ReducedState` (ε, S, P), exact and O(1) per step whatever d,
and :class:`FullState`, the actual vectors (a, b), which exists to cross-check
it. The driver (:func:`lin2net.dynamics.driver.run`) runs either to its
stopping time; :func:`integrate` is that call with η and Φ given per
trajectory or as scalars. The compiled twin of the reduced path is
:mod:`lin2net.dynamics.gd.kernel`.

A step is a ← a − ηεb, b ← b − ηεa; Q = Σ|a_i² − b_i²| is multiplied by
|1 − u²| with u = ηε (the driver sums log|1 − u²| with compensation).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from lin2net.dynamics.driver import TrajectoryResults, concatenate, run
from lin2net.dynamics.observers import compensated_add, compensated_value, log_q_term
from lin2net.dynamics.protocol import FloatArray, Observation, Status, Step, StopRule
from lin2net.theory.closed_forms import imbalance, reduced_coordinates, sharpness, split_scale

__all__ = [
    "GD",
    "FullState",
    "GDParams",
    "ReducedState",
    "Status",
    "StopRule",
    "TrajectoryResults",
    "compensated_add",
    "compensated_value",
    "concatenate",
    "integrate",
    "log_q_term",
    "parameter_rows",
    "rederive",
]


class ReducedState(NamedTuple):
    """The state (ε, S, P) of the reduced maps, S = ‖a + b‖², P = ‖a − b‖², shared by
    GD and SGD (which differ only in their step). Built as ``ReducedState(eps0, lam0)``
    or with ``s``/``p`` measured from the vectors (full precision); without them the
    dynamics' ``start`` takes λ0 ± 2(ε0 + Φ) (see :func:`split_scale`). ``lam0`` is
    read only then."""

    eps: FloatArray
    lam0: FloatArray | None = None
    s: FloatArray | None = None
    p: FloatArray | None = None


class FullState(NamedTuple):
    """The actual vectors a, b of shape (n, d); ``q0`` = Q(0) per row (filled by ``start``)."""

    a: FloatArray
    b: FloatArray
    q0: FloatArray | None = None


class GDParams(NamedTuple):
    """Per-trajectory parameters, shape (n,): stepsize η and target Φ."""

    eta: FloatArray
    phi: FloatArray


def start_split(state: ReducedState, phi: FloatArray) -> ReducedState:
    """The reduced state as float64 arrays with S, P known (from λ0 and Φ where not given)."""
    eps = np.array(state.eps, dtype=np.float64)
    if state.s is None or state.p is None:
        s, p = split_scale(eps, np.array(state.lam0, dtype=np.float64), phi)
    else:
        s, p = np.array(state.s, dtype=np.float64), np.array(state.p, dtype=np.float64)
    return ReducedState(eps, None, s, p)


def start_vectors(state: FullState) -> FullState:
    a = np.array(state.a, dtype=np.float64)
    b = np.array(state.b, dtype=np.float64)
    return FullState(a, b, imbalance(a, b))


def residual_and_scale(state: ReducedState | FullState, phi: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(ε, λ) of either state: λ = (S + P)/2, or measured from the vectors."""
    if isinstance(state, FullState):
        eps, lam, _ = reduced_coordinates(state.a, state.b, 0.0)
        return eps - phi, lam
    assert state.s is not None and state.p is not None
    scale: FloatArray = 0.5 * (state.s + state.p)
    return state.eps, scale


def measured_log_q(state: ReducedState | FullState, product: FloatArray | None = None) -> FloatArray | None:
    """log Q(t)/Q(0) from the vectors; None for the reduced state (which has no Q).
    Where Q(0) = 0 the ratio is 0/0; it is then defined as the product
    Π|1 − η²ε_t²| (``product``, the driver's log of it), the factor every Q_i
    was multiplied by, as the reduced map and the kernels report it."""
    if isinstance(state, FullState):
        assert state.q0 is not None
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio: FloatArray = np.log(imbalance(state.a, state.b) / state.q0)
        if product is not None:
            log_ratio = np.where(state.q0 == 0, product, log_ratio)
        return log_ratio
    return None


def rederive(
    eps: FloatArray, s: FloatArray, p: FloatArray, phi: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(ε, S, P) with the largest in magnitude of S, P and 4|ε| re-derived from the
    other two by S − P = 4(ε + Φ).

    Only two of the three are independent. Carrying all three would let a
    mismatch grow by 1 + u² per step, so after each step the one largest in
    magnitude (the one with the largest absolute rounding error) is re-derived."""
    four_eps = 4.0 * np.abs(eps)
    derive_eps = (four_eps >= s) & (four_eps >= p)
    derive_s = ~derive_eps & (s >= p)
    derive_p = ~derive_eps & ~(s >= p)
    four_product = 4.0 * (eps + phi)
    eps_fixed: FloatArray = np.where(derive_eps, 0.25 * (s - p) - phi, eps)
    s_fixed: FloatArray = np.where(derive_s, p + four_product, s)
    p_fixed: FloatArray = np.where(derive_p, s - four_product, p)
    return eps_fixed, s_fixed, p_fixed


def gd_map(state: ReducedState, eta: FloatArray, phi: FloatArray, lam: FloatArray) -> ReducedState:
    """The exact map of docs/math.md §1 on (ε, S, P), independent of d.

    With u = ηε the vectors a ± b are multiplied by 1 ∓ u, so

        S' = S + S·u(u − 2),   P' = P + P·u(u + 2),   λ = (S + P)/2,
        ε' = ε + ε·(u·η(ε + Φ) − ηλ)   (= ε (1 − ηλ + η²ε(ε + Φ))).

    Every update adds a small increment computed to full relative precision,
    so neither a tiny S or P (a start near a = −b or a = b: the escape from
    the saddle is set by it) nor a tiny ε (near convergence) nor a tiny η
    loses digits: no 1 − ηλ or 1 ± u is ever rounded on its own. ε has its
    own update rather than (S − P)/4 − Φ, which would cancel near ε = 0.
    The state has two degrees of freedom: after each step the largest in
    magnitude of S, P and 4ε is re-derived from the other two by S − P =
    4(ε + Φ): near the saddle (ε ≈ −Φ, λ ≪ Φ) ε comes from S and P, near a
    minimum the larger of S and P comes from the smaller one and ε.
    """
    assert state.s is not None and state.p is not None
    eps = state.eps
    u = eta * eps
    s = state.s + state.s * (u * (u - 2.0))
    p = state.p + state.p * (u * (u + 2.0))
    eps = eps + eps * (u * (eta * (eps + phi)) - eta * lam)
    eps, s, p = rederive(eps, s, p, phi)
    return ReducedState(eps, None, s, p)


class GD:
    """Gradient descent as a dynamics of the protocol (see module doc)."""

    name = "gd"

    def start(self, state: ReducedState | FullState, params: GDParams) -> ReducedState | FullState:
        return start_vectors(state) if isinstance(state, FullState) else start_split(state, params.phi)

    def observe(self, state: ReducedState | FullState, params: GDParams) -> Observation:
        eps, lam = residual_and_scale(state, params.phi)
        eta_sharpness = params.eta * sharpness(eps, lam, params.phi)
        # S as η·S/η: the sweep's rows have always recorded sharpness_T so.
        return Observation(eps, lam, 0.5 * eps * eps, eta_sharpness / params.eta, eta_sharpness)

    def step(
        self, state: ReducedState | FullState, params: GDParams, t: int, obs: Observation
    ) -> tuple[ReducedState | FullState, Step]:
        u = params.eta * obs.eps
        if isinstance(state, FullState):
            scale = u[:, None]
            return FullState(state.a - scale * state.b, state.b - scale * state.a, state.q0), Step(u, {})
        return gd_map(state, params.eta, params.phi, obs.lam), Step(u, {})

    def tolerance(self, params: GDParams, rule: StopRule) -> FloatArray:
        return np.full(len(params.eta), rule.loss_tol)

    def measured_log_q(self, state: ReducedState | FullState, product: FloatArray | None = None) -> FloatArray | None:
        return measured_log_q(state, product)

    def window(self, rule: StopRule) -> int | None:
        return None


def parameter_rows(value: float | FloatArray, n: int, name: str) -> FloatArray:
    """A scalar or shape-(n,) parameter as a float64 array of shape (n,) (a copy)."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim > 1 or (array.ndim == 1 and array.shape[0] != n):
        raise ValueError(f"{name} must be a scalar or of shape ({n},), got shape {array.shape}")
    return np.array(np.broadcast_to(array, (n,)))


def integrate(
    state: ReducedState | FullState, eta: float | FloatArray, phi: float | FloatArray, rule: StopRule
) -> TrajectoryResults:
    """Run every trajectory of ``state`` to its stopping time with GD (the driver's
    final-rows mode). ``eta`` and ``phi`` are scalars or arrays of shape (n,)."""
    n = np.shape(state[0])[0]
    params = GDParams(parameter_rows(eta, n, "eta"), parameter_rows(phi, n, "phi"))
    return run(GD(), state, params, rule).results


def stepped(state: Any, eta: FloatArray, phi: FloatArray) -> ReducedState | FullState:
    """One GD step of a started state (for tests and traces)."""
    params = GDParams(eta, phi)
    return GD().step(state, params, 0, GD().observe(state, params))[0]
