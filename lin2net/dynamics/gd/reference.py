"""Batched gradient descent on L(a, b) = 1/2 (a·b − Φ)², stopped per trajectory.

One driver, :func:`integrate`, advances a batch of trajectories in lock-step
and retires each one at its own stopping time T:

* ``converged`` at the first t with L(t) = ε(t)²/2 <= ``loss_tol``;
* ``diverged`` at the first t where ε or λ is non-finite or exceeds
  ``divergence_threshold`` in absolute value;
* ``max_steps`` when t reaches ``max_steps``.

Retired trajectories leave the working set, so the work done is proportional
to the steps the trajectories actually need. Along the way the driver
accumulates the diagnostics of docs/columns.md: log Q(T)/Q(0) = Σ_{t<T} log|1 − η²ε_t²|
(log space: the product underflows on long runs), Σ_{t<T} ε_t², max_{t<T} |ε_t|
(0 when T = 0), max_{t<=T} η·S(t) and the number of steps t < T taken with
η·S(t) > 2, where S is the exact sharpness.

η and Φ are scalars or arrays of shape (n,), one value per trajectory (a batch
may mix grid cells). Each log term is log|1 − x| with x = (ηε)², taken as
log1p(−x) when x < 1 so a tiny η loses nothing to the rounding of 1 − x, and
the terms are summed with Neumaier's compensation (no drift over 10⁶ steps).

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

from lin2net.theory.closed_forms import FloatArray, imbalance, reduced_coordinates, sharpness, split_scale

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

    def start(self, phi: FloatArray) -> None:
        """Called once by the driver before the first observation, with Φ per trajectory."""

    def residual_and_scale(self) -> tuple[FloatArray, FloatArray]:
        """Current (ε, λ), each of shape (n,)."""

    def step(self, eps: FloatArray, lam: FloatArray, eta: FloatArray, phi: FloatArray) -> None:
        """One simultaneous GD step a ← a − ηεb, b ← b − ηεa for every trajectory."""

    def keep(self, mask: NDArray[np.bool_]) -> None:
        """Drop the trajectories where ``mask`` is False."""

    def measured_log_q_ratio(self, rows: NDArray[np.bool_], product: FloatArray | None = None) -> FloatArray | None:
        """log Q(t)/Q(0) measured from the state for the selected rows, or None
        when the state has no vectors and the driver's product formula is used.
        Where Q(0) = 0 the ratio is 0/0; it is then defined as the product
        Π|1 − η²ε_t²| (``product``, in log), the factor every Q_i was multiplied by."""


class SplitState:
    """The state (ε, S, P) of the reduced maps, S = ‖a + b‖², P = ‖a − b‖²,
    shared by GD (:class:`ReducedState`) and SGD (lin2net.dynamics.sgd.reference.SGDReducedState),
    which differ only in their step. ``s0``/``p0`` default to λ0 ± 2(ε0 + Φ)
    (see :func:`split_scale`); pass the values measured from the vectors for
    full precision."""

    def __init__(
        self, eps0: FloatArray, lam0: FloatArray, s0: FloatArray | None = None, p0: FloatArray | None = None
    ) -> None:
        self.eps = np.array(eps0, dtype=np.float64)
        self._lam0 = np.array(lam0, dtype=np.float64)
        self.s = None if s0 is None else np.array(s0, dtype=np.float64)
        self.p = None if p0 is None else np.array(p0, dtype=np.float64)

    def start(self, phi: FloatArray) -> None:
        if self.s is None or self.p is None:
            self.s, self.p = split_scale(self.eps, self._lam0, phi)

    @property
    def lam(self) -> FloatArray:
        if self.s is None or self.p is None:
            return self._lam0
        lam: FloatArray = 0.5 * (self.s + self.p)
        return lam

    def residual_and_scale(self) -> tuple[FloatArray, FloatArray]:
        return self.eps, self.lam

    def keep(self, mask: NDArray[np.bool_]) -> None:
        self.eps = self.eps[mask]
        self._lam0 = self._lam0[mask]
        if self.s is not None and self.p is not None:
            self.s, self.p = self.s[mask], self.p[mask]

    def measured_log_q_ratio(self, rows: NDArray[np.bool_], product: FloatArray | None = None) -> FloatArray | None:
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


def compensated_add(total: FloatArray, error: FloatArray, term: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Neumaier's step: (total + term, the running compensation with this step's error)."""
    new_total = total + term
    big = np.abs(total) >= np.abs(term)
    new_error: FloatArray = error + np.where(big, (total - new_total) + term, (term - new_total) + total)
    return new_total, new_error


def compensated_value(total: FloatArray, error: FloatArray) -> FloatArray:
    """The compensated sum total + error (total itself where it is ±inf or NaN)."""
    value: FloatArray = np.where(np.isfinite(total), total + error, total)
    return value


class ReducedState(SplitState):
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

    def step(self, eps: FloatArray, lam: FloatArray, eta: FloatArray, phi: FloatArray) -> None:
        self.start(phi)
        assert self.s is not None and self.p is not None
        u = eta * eps
        s = self.s + self.s * (u * (u - 2.0))
        p = self.p + self.p * (u * (u + 2.0))
        eps = eps + eps * (u * (eta * (eps + phi)) - eta * lam)
        self.eps, self.s, self.p = rederive(eps, s, p, phi)


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

    def start(self, phi: FloatArray) -> None:
        pass

    def residual_and_scale(self) -> tuple[FloatArray, FloatArray]:
        eps, lam, _ = reduced_coordinates(self.a, self.b, self.phi)
        return eps, lam

    def measured_log_q_ratio(self, rows: NDArray[np.bool_], product: FloatArray | None = None) -> FloatArray | None:
        q0 = self.q0[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio: FloatArray = np.log(imbalance(self.a[rows], self.b[rows]) / q0)
        if product is not None:  # Q(0) = 0: 0/0, defined as the product (as the reduced maps report it)
            log_ratio = np.where(q0 == 0, product, log_ratio)
        return log_ratio

    def step(self, eps: FloatArray, lam: FloatArray, eta: FloatArray, phi: FloatArray) -> None:
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


def log_q_term(u: FloatArray) -> FloatArray:
    """log|1 − u²| for u = ηε: log1p(−u²) below 1 (no rounding of 1 − u² first),
    log(u² − 1) above (−inf at u² = 1, NaN for NaN)."""
    x = u * u
    below = x < 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        term: FloatArray = np.where(below, np.log1p(-np.where(below, x, 0.0)), np.log(np.abs(x - 1.0)))
    return term


def parameter_rows(value: float | FloatArray, n: int, name: str) -> FloatArray:
    """A scalar or shape-(n,) parameter as a float64 array of shape (n,) (a copy)."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim > 1 or (array.ndim == 1 and array.shape[0] != n):
        raise ValueError(f"{name} must be a scalar or of shape ({n},), got shape {array.shape}")
    return np.array(np.broadcast_to(array, (n,)))


def integrate(
    state: DynamicsState, eta: float | FloatArray, phi: float | FloatArray, rule: StopRule
) -> TrajectoryResults:
    """Run every trajectory of ``state`` to its stopping time (see module doc).

    ``eta`` and ``phi`` are scalars or arrays of shape (n,), one per trajectory.
    """
    eps, _ = state.residual_and_scale()
    n = eps.shape[0]
    eta_rows = parameter_rows(eta, n, "eta")
    phi_rows = parameter_rows(phi, n, "phi")
    state.start(phi_rows)
    out = TrajectoryResults.empty(n)
    index = np.arange(n)  # original position of each trajectory in the working set
    log_q = np.zeros(n)
    log_q_error = np.zeros(n)  # Neumaier's running compensation of the log_q sum
    sum_eps2 = np.zeros(n)
    max_eta_sharp = np.full(n, -np.inf)
    eos_steps = np.zeros(n, dtype=np.int64)
    max_abs_eps = np.zeros(n)
    t = 0
    # Overflow is an expected outcome (divergence), recorded in `status`.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while index.size:
            eps, lam = state.residual_and_scale()
            eta_sharp = eta_rows * sharpness(eps, lam, phi_rows)
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
                out.sharpness_T[rows] = eta_sharp[done] / eta_rows[done]
                total = compensated_value(log_q[done], log_q_error[done])
                measured = state.measured_log_q_ratio(done, total)
                out.log_q_ratio[rows] = total if measured is None else measured
                out.sum_eps2[rows] = sum_eps2[done]
                out.max_eta_sharpness[rows] = max_eta_sharp[done]
                out.eos_steps[rows] = eos_steps[done]
                out.max_abs_eps[rows] = max_abs_eps[done]
                running = ~done
                if not running.any():
                    break
                state.keep(running)
                index, log_q, log_q_error = index[running], log_q[running], log_q_error[running]
                sum_eps2, max_eta_sharp, eos_steps = sum_eps2[running], max_eta_sharp[running], eos_steps[running]
                max_abs_eps, eta_rows, phi_rows = max_abs_eps[running], eta_rows[running], phi_rows[running]
                eps, lam, eta_sharp = eps[running], lam[running], eta_sharp[running]
            eps2 = eps * eps
            eos_steps += eta_sharp > 2.0
            log_q, log_q_error = compensated_add(log_q, log_q_error, log_q_term(eta_rows * eps))
            sum_eps2 += eps2
            np.fmax(max_abs_eps, np.abs(eps), out=max_abs_eps)
            state.step(eps, lam, eta_rows, phi_rows)
            t += 1
    return out


def concatenate(parts: list[TrajectoryResults]) -> TrajectoryResults:
    """Join results of consecutive blocks of trajectories."""
    names = TrajectoryResults.__dataclass_fields__
    return TrajectoryResults(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in names})
