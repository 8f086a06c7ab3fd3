"""Gradient flow θ̇ = −∇L(θ) integrated to rest, batched over trajectories.

The data families have no closed form for the gradient-flow limit in general,
so :func:`flow_to_rest` follows the flow in two phases, per trajectory:

1. an embedded Runge–Kutta pair (Dormand–Prince 5(4), the pair of scipy's
   ``RK45``) with a step size of its own per trajectory: each step's 4th/5th-order
   difference, divided by ``atol + rtol·max(|θ|, |θ_new|)`` componentwise, must
   have RMS ≤ 1; it runs until ‖∇L‖ ≤ ``handover`` (the flow is then in the
   linear regime near its limit). It cannot go much further: near a minimum the
   step is held at the edge of the method's stability region by the Hessian's
   top eigenvalue, where the top mode neither grows nor decays, so ‖∇L‖ stalls
   at about λ_max·rtol·|θ|;
2. gradient descent with η = 1/λ̂ (λ̂ the Hessian's top eigenvalue, re-measured
   every :data:`REMEASURE` steps), which contracts every non-flat mode by
   1 − λ_i/λ̂ ∈ [0, 1), until ‖∇L‖ ≤ ``gtol`` (rest). From a point at distance δ
   of the minimizer manifold GD and GF end O(δ²) apart (the drift along the
   manifold is second order in the remaining motion), far below ``gtol``'s
   effect: stopping at ‖∇L‖ = g leaves the limit about g/μ off (μ the least
   nonzero Hessian eigenvalue there).

A ReLU network's loss has kinks (a pre-activation a_jᵀx_i = 0): where the flow
runs into one and slides along it (Filippov), phase 1's step collapses and it
stops after ``rk_steps``; such a trajectory continues with GD at the small step
η = ``kink_step``/λ̂ (GD's limit as η → 0 is the sliding flow; it chatters across
the kink at amplitude O(η)), and comes to rest where ‖∇L‖ ≤ gtol or where its
loss falls by less than ``plateau``·(L + c²) over :data:`REMEASURE` steps (at a
minimum on a kink the one-sided gradients do not vanish). Its limit is then
exact only to O(kink_step): the relu family documents this.

The tolerances (:data:`TOLERANCES`) scale with each trajectory's size c (‖θ0‖²
plus the label scale: the units of f): atol = atol_scale·√c, handover =
handover_scale·c^{3/2}, gtol = gtol_scale·c^{3/2}. A trajectory not at rest after
``max_steps`` steps of either phase is reported as not at rest (its sharpness is
then NaN: non-convergence is a result, not an error).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lin2net.dynamics import dormand_prince
from lin2net.theory.closed_forms import FloatArray

Gradient = Callable[[FloatArray], FloatArray]
REMEASURE = 25  # GD steps between measurements of the Hessian's top eigenvalue


@dataclass(frozen=True)
class FlowTolerances:
    """The two phases' tolerances (see the module doc) and the step cap per phase."""

    rtol: float = 1e-11
    atol_scale: float = 1e-14
    handover_scale: float = 1e-7
    gtol_scale: float = 1e-13
    rk_steps: int = 2_000
    kink_step: float = 1 / 32
    plateau: float = 1e-15
    max_steps: int = 10_000


TOLERANCES = FlowTolerances()

def flow_to_rest(
    gradient: Gradient,
    sharpness: Gradient,
    loss: Gradient,
    theta0: FloatArray,
    scale: FloatArray,
    tolerances: FlowTolerances = TOLERANCES,
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """(θ at rest, at_rest) per row of ``theta0`` (shape (n, D)) under θ̇ = −∇L(θ).

    ``gradient`` maps any (k, D) batch of rows to ∇L (k, D), ``sharpness`` and
    ``loss`` to the Hessian's top eigenvalue and L (k,); ``scale`` (n,) is each
    row's c (units of f).
    """
    theta = np.array(theta0, dtype=np.float64)
    c = np.maximum(np.asarray(scale, dtype=np.float64), np.finfo(np.float64).tiny)
    atol = tolerances.atol_scale * np.sqrt(c)
    handover = tolerances.handover_scale * c**1.5
    finite = np.all(np.isfinite(theta), axis=1)
    slope = np.where(finite[:, None], -gradient(np.where(finite[:, None], theta, 0.0)), np.nan)
    near = _runge_kutta(gradient, theta, slope, atol, handover, tolerances)
    moving = np.all(np.isfinite(theta), axis=1)
    fraction = np.where(near, 1.0, tolerances.kink_step)
    at_rest = _descend(gradient, sharpness, loss, theta, moving, fraction, c, tolerances)
    return theta, at_rest


def _norm(v: FloatArray) -> FloatArray:
    norm: FloatArray = np.sqrt(np.sum(v * v, axis=1))
    return norm


def _runge_kutta(
    gradient: Gradient,
    theta: FloatArray,
    slope: FloatArray,
    atol: FloatArray,
    handover: FloatArray,
    tolerances: FlowTolerances,
) -> NDArray[np.bool_]:
    """Phase 1, in place on ``theta`` (``slope`` = −∇L there); True where ‖∇L‖ ≤ handover."""
    near = _norm(slope) <= handover
    # First step: each coordinate moves by about 1e-3 of the state's RMS size.
    size = np.sqrt(np.mean(theta * theta, axis=1)) + atol
    h = 1e-3 * size / np.maximum(np.sqrt(np.mean(slope * slope, axis=1)), np.finfo(np.float64).tiny)
    active = np.flatnonzero(~near & np.all(np.isfinite(slope), axis=1))
    steps = 0
    while active.size and steps < min(tolerances.rk_steps, tolerances.max_steps):
        steps += 1
        y = theta[active]
        step = dormand_prince.attempt(lambda x: -gradient(x), y, h[active], slope[active])
        weight = atol[active][:, None] + tolerances.rtol * np.maximum(np.abs(y), np.abs(step.new))
        err = dormand_prince.error_ratio(step.error, weight)
        ok = np.isfinite(err) & (err <= 1.0) & np.all(np.isfinite(step.last), axis=1)
        accepted = active[ok]
        theta[accepted] = step.new[ok]
        slope[accepted] = step.last[ok]  # FSAL: the last stage is −∇L at the new point
        h[active] = dormand_prince.next_step(h[active], err)
        near[accepted] = _norm(slope[accepted]) <= handover[accepted]
        active = active[~near[active]]
    return near


def _descend(
    gradient: Gradient,
    sharpness: Gradient,
    loss: Gradient,
    theta: FloatArray,
    moving: NDArray[np.bool_],
    fraction: FloatArray,
    c: FloatArray,
    tolerances: FlowTolerances,
) -> NDArray[np.bool_]:
    """Phase 2, in place on ``theta``: GD with η = fraction/λ̂ on the rows ``moving``;
    True where ‖∇L‖ ≤ gtol, or (rows with fraction < 1) where the loss plateaus."""
    gtol = tolerances.gtol_scale * c**1.5
    at_rest = np.zeros(theta.shape[0], dtype=bool)
    active = np.flatnonzero(moving)
    eta = np.zeros(theta.shape[0])
    last = np.full(theta.shape[0], np.inf)
    steps = 0
    while active.size:
        grad = gradient(theta[active])
        done = _norm(grad) <= gtol[active]
        if steps % REMEASURE == 0:
            value = loss(theta[active])
            kinked = fraction[active] < 1.0
            done |= kinked & (last[active] - value <= tolerances.plateau * (value + c[active] ** 2))
            last[active] = value
        at_rest[active[done]] = True
        active, grad = active[~done], grad[~done]
        if not active.size or steps >= tolerances.max_steps:
            break
        if steps % REMEASURE == 0:
            top = sharpness(theta[active])
            eta[active] = np.where(top > 0, fraction[active] / np.where(top > 0, top, 1.0), 0.0)
        theta[active] -= eta[active][:, None] * grad
        steps += 1
    return at_rest
