"""Batched gradient descent on L(a, b) = 1/2 (a·b − Φ)², stopped per trajectory.

One driver, :func:`integrate`, advances a batch of trajectories in lock-step
and retires each one at its own stopping time T:

* ``converged`` at the first t with L(t) = ε(t)²/2 <= ``loss_tol``;
* ``diverged`` at the first t where ε or λ is non-finite or exceeds
  ``divergence_threshold`` in absolute value;
* ``max_steps`` when t reaches ``max_steps``.

Retired trajectories leave the working set, so the work done is proportional
to the steps the trajectories actually need. Along the way the driver
accumulates the diagnostics of DESIGN.md: log Q(T)/Q(0) = Σ_{t<T} log|1 − η²ε_t²|
(log space: the product underflows on long runs), Σ_{t<T} ε_t², max_{t<T} |ε_t|
(0 when T = 0), max_{t<=T} η·S(t) and the number of steps t < T taken with
η·S(t) > 2, where S is the exact sharpness.

The state being stepped is pluggable (:class:`ReducedState`, :class:`FullState`):
the reduced map is exact and costs O(1) per step whatever d; the full map steps
the actual vectors and exists to cross-check it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from lin2net.closed_forms import FloatArray, imbalance, reduced_coordinates, sharpness

IntArray = NDArray[np.int64]


class Status(IntEnum):
    """How a trajectory ended; stored as its lower-case name in tables."""

    CONVERGED = 0
    DIVERGED = 1
    MAX_STEPS = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class StopRule:
    """When a trajectory leaves the working set."""

    loss_tol: float
    max_steps: int
    divergence_threshold: float = 1e30


class DynamicsState(Protocol):
    """A batch of trajectories that the driver can observe, step and shrink."""

    def residual_and_scale(self) -> tuple[FloatArray, FloatArray]:
        """Current (ε, λ), each of shape (n,)."""

    def step(self, eps: FloatArray, lam: FloatArray, eta: float, phi: float) -> None:
        """One simultaneous GD step a ← a − ηεb, b ← b − ηεa for every trajectory."""

    def keep(self, mask: NDArray[np.bool_]) -> None:
        """Drop the trajectories where ``mask`` is False."""

    def measured_log_q_ratio(self, rows: NDArray[np.bool_]) -> FloatArray | None:
        """log Q(t)/Q(0) measured from the state for the selected rows, or None
        when the state has no vectors and the driver's product formula is used."""


class ReducedState:
    """The exact 2-D map of DESIGN.md fact 1, independent of d:

    ε' = ε (1 − ηλ + η² ε (ε + Φ)),   λ' = (1 + η² ε²) λ − 4 η ε (ε + Φ).
    Tiny ε keeps full relative precision (no a·b − Φ cancellation).
    """

    def __init__(self, eps0: FloatArray, lam0: FloatArray) -> None:
        self.eps = np.array(eps0, dtype=np.float64)
        self.lam = np.array(lam0, dtype=np.float64)

    def residual_and_scale(self) -> tuple[FloatArray, FloatArray]:
        return self.eps, self.lam

    def step(self, eps: FloatArray, lam: FloatArray, eta: float, phi: float) -> None:
        eta_eps = eta * eps
        product = eps + phi  # a·b
        self.eps = eps * (1.0 - eta * lam + eta_eps * eta * product)
        self.lam = (1.0 + eta_eps * eta_eps) * lam - 4.0 * eta_eps * product

    def keep(self, mask: NDArray[np.bool_]) -> None:
        self.eps = self.eps[mask]
        self.lam = self.lam[mask]

    def measured_log_q_ratio(self, rows: NDArray[np.bool_]) -> FloatArray | None:
        return None


class FullState:
    """The actual vectors a, b of shape (n, d), stepped as written in the paper.

    Independent of the reduced map: ε, λ and Q are measured from the vectors,
    so Q(T)/Q(0) comes out of the vectors, not out of the product formula.
    """

    def __init__(self, a: FloatArray, b: FloatArray, phi: float) -> None:
        self.a = np.array(a, dtype=np.float64)
        self.b = np.array(b, dtype=np.float64)
        self.phi = phi
        self.q0 = imbalance(self.a, self.b)

    def residual_and_scale(self) -> tuple[FloatArray, FloatArray]:
        eps, lam, _ = reduced_coordinates(self.a, self.b, self.phi)
        return eps, lam

    def measured_log_q_ratio(self, rows: NDArray[np.bool_]) -> FloatArray | None:
        log_ratio: FloatArray = np.log(imbalance(self.a[rows], self.b[rows]) / self.q0[rows])
        return log_ratio

    def step(self, eps: FloatArray, lam: FloatArray, eta: float, phi: float) -> None:
        scale = (eta * eps)[:, None]
        self.a, self.b = self.a - scale * self.b, self.b - scale * self.a

    def keep(self, mask: NDArray[np.bool_]) -> None:
        self.a = self.a[mask]
        self.b = self.b[mask]
        self.q0 = self.q0[mask]


@dataclass
class TrajectoryResults:
    """Per-trajectory outcome, every array of shape (n,), in input order."""

    status: NDArray[np.int8]
    steps: IntArray
    eps_T: FloatArray
    lambda_T: FloatArray
    sharpness_T: FloatArray
    log_q_ratio: FloatArray
    sum_eps2: FloatArray
    max_eta_sharpness: FloatArray
    eos_steps: IntArray
    max_abs_eps: FloatArray

    @classmethod
    def empty(cls, n: int) -> TrajectoryResults:
        nan = np.full(n, np.nan)
        return cls(
            status=np.full(n, -1, dtype=np.int8),
            steps=np.zeros(n, dtype=np.int64),
            eps_T=nan.copy(),
            lambda_T=nan.copy(),
            sharpness_T=nan.copy(),
            log_q_ratio=nan.copy(),
            sum_eps2=nan.copy(),
            max_eta_sharpness=nan.copy(),
            eos_steps=np.zeros(n, dtype=np.int64),
            max_abs_eps=nan.copy(),
        )

    @property
    def q_ratio(self) -> FloatArray:
        """Q(T)/Q(0) = Π_{t<T} |1 − η² ε_t²| (0 where it underflows, inf past overflow)."""
        with np.errstate(over="ignore"):
            ratio: FloatArray = np.exp(self.log_q_ratio)
        return ratio


def integrate(state: DynamicsState, eta: float, phi: float, rule: StopRule) -> TrajectoryResults:
    """Run every trajectory of ``state`` to its stopping time (see module doc)."""
    eps, _ = state.residual_and_scale()
    n = eps.shape[0]
    out = TrajectoryResults.empty(n)
    index = np.arange(n)  # original position of each trajectory in the working set
    log_q = np.zeros(n)
    sum_eps2 = np.zeros(n)
    max_eta_sharp = np.full(n, -np.inf)
    eos_steps = np.zeros(n, dtype=np.int64)
    max_abs_eps = np.zeros(n)
    eta2 = eta * eta
    t = 0
    # Overflow is an expected outcome (divergence), recorded in `status`.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while index.size:
            eps, lam = state.residual_and_scale()
            eta_sharp = eta * sharpness(eps, lam, phi)
            np.fmax(max_eta_sharp, eta_sharp, out=max_eta_sharp)
            converged = 0.5 * eps * eps <= rule.loss_tol
            diverged = ~converged & ~(
                (np.abs(eps) <= rule.divergence_threshold) & (np.abs(lam) <= rule.divergence_threshold)
            )
            done = converged | diverged if t < rule.max_steps else np.ones_like(converged)
            if done.any():
                status = np.where(converged, Status.CONVERGED, np.where(diverged, Status.DIVERGED, Status.MAX_STEPS))
                rows = index[done]
                out.status[rows] = status[done]
                out.steps[rows] = t
                out.eps_T[rows] = eps[done]
                out.lambda_T[rows] = lam[done]
                out.sharpness_T[rows] = eta_sharp[done] / eta
                measured = state.measured_log_q_ratio(done)
                out.log_q_ratio[rows] = log_q[done] if measured is None else measured
                out.sum_eps2[rows] = sum_eps2[done]
                out.max_eta_sharpness[rows] = max_eta_sharp[done]
                out.eos_steps[rows] = eos_steps[done]
                out.max_abs_eps[rows] = max_abs_eps[done]
                running = ~done
                if not running.any():
                    break
                state.keep(running)
                index, log_q, sum_eps2 = index[running], log_q[running], sum_eps2[running]
                max_eta_sharp, eos_steps = max_eta_sharp[running], eos_steps[running]
                max_abs_eps = max_abs_eps[running]
                eps, lam, eta_sharp = eps[running], lam[running], eta_sharp[running]
            eps2 = eps * eps
            eos_steps += eta_sharp > 2.0
            log_q += np.log(np.abs(1.0 - eta2 * eps2))
            sum_eps2 += eps2
            np.fmax(max_abs_eps, np.abs(eps), out=max_abs_eps)
            state.step(eps, lam, eta, phi)
            t += 1
    return out


def concatenate(parts: list[TrajectoryResults]) -> TrajectoryResults:
    """Join results of consecutive blocks of trajectories."""
    names = TrajectoryResults.__dataclass_fields__
    return TrajectoryResults(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in names})
