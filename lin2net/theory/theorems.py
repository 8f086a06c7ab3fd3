"""The seed paper's step-size conditions and Theorem 1's bounds, per trajectory.

Pure, elementwise functions of a trajectory's initial values (ε0, λ0, Φ, η)
and of what the integrator measured (Σ_{t<T} ε_t², log Q(T)/Q(0)). They state
what the paper claims; whether the claims hold is measured elsewhere
(:mod:`lin2net.analysis.check`), never assumed here.

Theorem 1 (seed paper, Section 4). If 0 < η < min{1/(2|ε0|), 2/√(λ0² + 4Φ²)},
then at the limit point of GD, for every i,

    exp(−√η ε0²/Φ) < |Q_i(∞)|/|Q_i(0)| < exp(−η² Σ_t ε_t²) < 1.

Theorem 2 (Section 5) has two step-size conditions: the first (linear
convergence) equals Theorem 1's; the second (convergence, possibly slow) is

    min{√2/|ε0|, 2/√(λ0² + 4Φ²)} < η < min{2/|ε0|, 2/λ0 + 2ε0(ε0 + Φ)/λ0³}.

The two are disjoint. Conditions on 1/|ε0| are written as η|ε0| < c so that
ε0 = 0 (no bound) needs no division; Φ = 0 makes the lower bound 0 (log −∞)
unless ε0 = 0, where it is 1 (log 0): a trajectory that starts at a minimum
keeps its imbalance.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lin2net.theory.closed_forms import FloatArray

REGIMES = ("linear", "slow", "outside")
"""Labels of :func:`regime`: Theorem 2's first condition, its second, neither."""


def edge_of_stability_eta(lam0: ArrayLike, phi: ArrayLike) -> FloatArray:
    """2/√(λ0² + 4Φ²), the step size at which the bound of Lemma 1 reaches 2/η."""
    lam0 = np.asarray(lam0, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    return np.asarray(2.0 / np.hypot(lam0, 2.0 * phi), dtype=np.float64)


def edge_sides(eta: ArrayLike, lam0: ArrayLike, phi: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """``(η < η_edge, η > η_edge)`` elementwise, η_edge = :func:`edge_of_stability_eta`,
    exactly as comparing with that function's values.

    ``np.hypot`` costs about 20 ns a value; 2/√(λ0² + 4Φ²) by ``sqrt`` costs a
    few and differs from it by a few ulps (unless the squares under- or
    overflow), so hypot is computed only where η lies within 10⁻⁹ (relative)
    of the cheap value, or where that value is not to be trusted."""
    eta_b, lam0_b, phi_b = np.broadcast_arrays(
        np.asarray(eta, dtype=np.float64), np.asarray(lam0, dtype=np.float64), np.asarray(phi, dtype=np.float64)
    )
    with np.errstate(all="ignore"):
        squares = lam0_b * lam0_b + 4.0 * phi_b * phi_b
        cheap = 2.0 / np.sqrt(squares)
        margin = 1e-9 * cheap
        below = eta_b < cheap - margin
        above = eta_b > cheap + margin
    unsure = ~(below | above) | ~np.isfinite(cheap) | ~(squares > 1e-280)
    if unsure.any():
        exact = edge_of_stability_eta(lam0_b[unsure], phi_b[unsure])
        below[unsure] = eta_b[unsure] < exact
        above[unsure] = eta_b[unsure] > exact
    return below, above


def thm1_regime(eta: ArrayLike, eps0: ArrayLike, lam0: ArrayLike, phi: ArrayLike) -> NDArray[np.bool_]:
    """Theorem 1's (and Theorem 2's first) condition η < min{1/(2|ε0|), 2/√(λ0² + 4Φ²)}."""
    eta = np.asarray(eta, dtype=np.float64)
    eps0 = np.asarray(eps0, dtype=np.float64)
    below_edge, _ = edge_sides(eta, lam0, phi)
    return np.asarray((eta > 0) & (2.0 * eta * np.abs(eps0) < 1.0) & below_edge)


def slow_regime(eta: ArrayLike, eps0: ArrayLike, lam0: ArrayLike, phi: ArrayLike) -> NDArray[np.bool_]:
    """Theorem 2's second condition (see module doc), with ε = ε0 and λ = λ0."""
    eta = np.asarray(eta, dtype=np.float64)
    eps0 = np.asarray(eps0, dtype=np.float64)
    lam0 = np.asarray(lam0, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    # At the largest valid parameters (1e150) products overflow to ±inf, and
    # the comparisons with inf still decide the condition right.
    with np.errstate(over="ignore", invalid="ignore"):
        eta_eps = eta * np.abs(eps0)
        _, above_edge = edge_sides(eta, lam0, phi)
        above = (eta_eps > np.sqrt(2.0)) | above_edge
        below = (eta_eps < 2.0) & (eta < 2.0 / lam0 + 2.0 * eps0 * (eps0 + phi) / lam0**3)
    return np.asarray(above & below)


def regime(eta: ArrayLike, eps0: ArrayLike, lam0: ArrayLike, phi: ArrayLike) -> NDArray[np.str_]:
    """``linear``, ``slow`` or ``outside`` (:data:`REGIMES`) per trajectory."""
    linear = thm1_regime(eta, eps0, lam0, phi)
    slow = slow_regime(eta, eps0, lam0, phi)
    return np.where(linear, REGIMES[0], np.where(slow, REGIMES[1], REGIMES[2]))


def log_thm1_lower(eta: ArrayLike, eps0: ArrayLike, phi: ArrayLike) -> FloatArray:
    """log of Theorem 1's lower bound on Q(∞)/Q(0): −√η ε0²/Φ (see module doc for Φ = 0)."""
    eta = np.asarray(eta, dtype=np.float64)
    eps0 = np.asarray(eps0, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    with np.errstate(over="ignore"):  # overflows to inf at parameters near 1e150: the bound is then 0 (log −inf)
        numerator = np.sqrt(eta) * eps0 * eps0
    positive = phi > 0
    safe_phi = np.where(positive, phi, 1.0)
    return np.asarray(
        np.where(positive, -numerator / safe_phi, np.where(numerator == 0, 0.0, -np.inf)), dtype=np.float64
    )


def log_thm1_upper(eta: ArrayLike, sum_eps2: ArrayLike) -> FloatArray:
    """log of Theorem 1's upper bound on Q(∞)/Q(0), −η² Σ_t ε_t², with the sum taken to T."""
    eta = np.asarray(eta, dtype=np.float64)
    return np.asarray(-(eta * eta) * np.asarray(sum_eps2, dtype=np.float64), dtype=np.float64)


def thm1_lower(eta: ArrayLike, eps0: ArrayLike, phi: ArrayLike) -> FloatArray:
    """Theorem 1's lower bound exp(−√η ε0²/Φ) on Q(∞)/Q(0)."""
    return np.exp(log_thm1_lower(eta, eps0, phi))


def thm1_upper(eta: ArrayLike, sum_eps2: ArrayLike) -> FloatArray:
    """Theorem 1's upper bound exp(−η² Σ_{t<T} ε_t²) on Q(T)/Q(0)."""
    return np.exp(log_thm1_upper(eta, sum_eps2))


def rounding_tolerance(steps: ArrayLike, log_bound: ArrayLike) -> FloatArray:
    """How far log Q(T)/Q(0) may sit on the wrong side of a bound from rounding alone.

    The integrator sums T terms log|1 − η²ε_t²|, each with an absolute rounding
    error up to a few ulps of 1 (1 − η²ε² is rounded before the log), and the
    bound itself carries a relative error of a few ulps. A bound counts as
    violated only beyond this; the margins are reported either way.
    """
    steps = np.asarray(steps, dtype=np.float64)
    log_bound = np.asarray(log_bound, dtype=np.float64)
    ulp = np.finfo(np.float64).eps
    bound_part = np.where(np.isfinite(log_bound), np.abs(log_bound), 0.0)
    return np.asarray(4.0 * ulp * (steps + 1.0) + 8.0 * ulp * bound_part, dtype=np.float64)
