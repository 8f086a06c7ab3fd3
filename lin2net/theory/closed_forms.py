"""Closed forms of the depth-2 linear network L(a, b) = 1/2 (a·b − Φ)².

Notation (see docs/math.md): residual ε = a·b − Φ, scale λ = ‖a‖² + ‖b‖²,
S = ‖a + b‖², P = ‖a − b‖², so that ε = (S − P)/4 − Φ and λ = (S + P)/2.
All functions are elementwise over NumPy arrays (batch axis first) and pure.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def sharpness(eps: ArrayLike, lam: ArrayLike, phi: ArrayLike) -> FloatArray:
    """Top eigenvalue of the Hessian at any point, not only at minima.

    H = v vᵀ + ε [[0, I], [I, 0]] with v = (b, a) has top eigenvalue
    S(ε, λ) = (λ + sqrt(λ² + 8ε(ε + Φ) + 4ε²)) / 2; at a minimum S = λ.
    Since λ ≥ 2|ε + Φ| (Cauchy–Schwarz) the discriminant is at least
    (4ε + 2Φ)² ≥ 0 in exact arithmetic; the clip only guards rounding.
    """
    eps = np.asarray(eps, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    disc = lam * lam + 8.0 * eps * (eps + phi) + 4.0 * eps * eps
    top: FloatArray = 0.5 * (lam + np.sqrt(np.maximum(disc, 0.0)))
    return top


def gradient_flow_sharpness(
    eps0: ArrayLike, lam0: ArrayLike, phi: ArrayLike, s0: ArrayLike | None = None, p0: ArrayLike | None = None
) -> FloatArray:
    """Sharpness λ_GF of the gradient-flow limit from (ε0, λ0).

    Gradient flow conserves λ² − 8ε(ε + Φ) + 4ε² (Lemma 2 of the seed paper),
    and at the limit ε = 0, so λ_GF = sqrt(λ0² − 8ε0(ε0 + Φ) + 4ε0²)
    = sqrt(4Φ² + S0 P0). The product form is used: S0 P0 = λ0² − 4(ε0 + Φ)²
    is a difference of non-negative terms that does not cancel ε0 against Φ;
    given S0 and P0 measured from the vectors, their product is used as is
    (exact to rounding even when one of them is tiny).

    For S0 = 0 exactly (a = −b) the flow keeps a + b = 0 and runs into the
    saddle a = b = 0, whose sharpness is Φ (its Hessian has eigenvalues ±Φ):
    λ_GF is then Φ, not the formula's 2Φ.
    """
    eps0 = np.asarray(eps0, dtype=np.float64)
    lam0 = np.asarray(lam0, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    if s0 is not None and p0 is not None:
        s0_p0 = np.asarray(s0, dtype=np.float64) * np.asarray(p0, dtype=np.float64)
    else:
        product = eps0 + phi
        s0_p0 = (lam0 - 2.0 * product) * (lam0 + 2.0 * product)
    limit: FloatArray = np.sqrt(4.0 * phi * phi + np.maximum(s0_p0, 0.0))
    s0_values = np.asarray(s0, dtype=np.float64) if s0 is not None else lam0 + 2.0 * (eps0 + phi)
    saddle: FloatArray = np.where(s0_values == 0.0, np.abs(phi), limit)
    return saddle


def reduced_coordinates(a: ArrayLike, b: ArrayLike, phi: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(ε, λ, Q) of vectors a, b of shape (n, d): residual, scale, imbalance."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    eps = np.einsum("nd,nd->n", a, b) - phi
    lam = np.einsum("nd,nd->n", a, a) + np.einsum("nd,nd->n", b, b)
    return eps, lam, imbalance(a, b)


def sum_and_difference_norms(a: ArrayLike, b: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(S, P) = (‖a + b‖², ‖a − b‖²) of vectors a, b of shape (n, d).

    GD multiplies a + b by 1 − ηε and a − b by 1 + ηε, so S and P evolve by
    exact multiplicative updates and keep full relative precision even when
    one of them is tiny (a start near a = −b or a = b).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    total, difference = a + b, a - b
    s: FloatArray = np.einsum("nd,nd->n", total, total)
    p: FloatArray = np.einsum("nd,nd->n", difference, difference)
    return s, p


def split_scale(eps: ArrayLike, lam: ArrayLike, phi: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(S, P) from (ε, λ) when the vectors are not at hand: S = λ + 2(ε + Φ),
    P = λ − 2(ε + Φ), clipped at 0 (keeps NaN). Only as precise as λ in absolute
    terms; :func:`sum_and_difference_norms` is exact to rounding."""
    eps = np.asarray(eps, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    twice_product = 2.0 * (eps + np.asarray(phi, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        s: FloatArray = np.maximum(lam + twice_product, 0.0)
        p: FloatArray = np.maximum(lam - twice_product, 0.0)
    return s, p


def imbalance(a: FloatArray, b: FloatArray) -> FloatArray:
    """Q = Σ_i |a_i² − b_i²| per row of (n, d) arrays, as a product to avoid cancellation."""
    q: FloatArray = np.abs((a - b) * (a + b)).sum(axis=1)
    return q


def full_hessian(a: ArrayLike, b: ArrayLike, phi: float) -> FloatArray:
    """Hessian of L at one point (a, b) in R^{2d}, shape (2d, 2d); for tests and traces."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = a.shape[0]
    eps = float(a @ b) - phi
    v = np.concatenate([b, a])
    swap = np.block([[np.zeros((d, d)), np.eye(d)], [np.eye(d), np.zeros((d, d))]])
    return np.outer(v, v) + eps * swap
