"""Gradient flow ȧ = −εb, ḃ = −εa on L(a, b) = 1/2 (a·b − Φ)², solved exactly.

In reduced coordinates the flow is ε̇ = −λε, λ̇ = −4ε(ε + Φ), and each
Q_i = a_i² − b_i² is conserved. It is integrated in the variables where it is
linear-fractional: with s = a + b, q = a − b, S = ‖s‖², P = ‖q‖²,

    ṡ = −ε s,  q̇ = ε q,  so  Ṡ = −2εS,  Ṗ = 2εP,  S·P = C (constant),

and since ε = (S − P)/4 − Φ = (S² − 4ΦS − C)/(4S),

    Ṡ = −(S − x₊)(S − x₋)/2,   x± = 2Φ ± λ*,   λ* = √(4Φ² + C),

a Riccati equation with constant roots. Hence w = (S − x₊)/(S − x₋) obeys
ẇ = −λ* w: w(t) = w0 e^{−λ* t}, and

    S = (x₊ − x₋w)/(1 − w),   P = C/S,   λ = (S + P)/2,
    ε = w λ*² / ((1 − w)(x₊ − x₋w)).

This is exact for every t ≥ 0; every quantity is formed from sums of
non-negative terms and ``expm1``, so tiny ε keeps its relative precision
(no (S − P)/4 − Φ cancellation), and λ² − 8ε(ε + Φ) + 4ε² = C + 4Φ²
(Lemma 2 of the seed paper) holds by construction. The limit is S = x₊,
ε = 0, λ = λ* — the closed form of
:func:`lin2net.theory.closed_forms.gradient_flow_sharpness`, which the tests check
against an independent ODE solver rather than against this module.

Degenerate starts: S0 = 0 (a = −b) keeps S = 0, and P obeys the logistic
Ṗ = −P(P + 4Φ)/2, so the flow runs into the saddle (a, b) = 0 with ε → −Φ;
λ* = 0 (Φ = 0 and P0 = 0) gives S = S0/(1 + S0 t/2), algebraic decay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from lin2net.theory.closed_forms import FloatArray


@dataclass(frozen=True)
class GradientFlow:
    """Exact gradient flow from initializations given by (ε0, S0, P0, Φ).

    Arrays broadcast with each other; :meth:`at` broadcasts them with the times.
    """

    eps0: FloatArray
    s0: FloatArray
    p0: FloatArray
    phi: FloatArray

    @classmethod
    def from_reduced(cls, eps0: ArrayLike, lam0: ArrayLike, phi: ArrayLike) -> GradientFlow:
        """From (ε0, λ0, Φ): S0 = λ0 + 2(ε0 + Φ), P0 = λ0 − 2(ε0 + Φ) (clipped at 0 against rounding)."""
        eps0 = np.asarray(eps0, dtype=np.float64)
        lam0 = np.asarray(lam0, dtype=np.float64)
        phi = np.asarray(phi, dtype=np.float64)
        product = 2.0 * (eps0 + phi)
        return cls(eps0, np.maximum(lam0 + product, 0.0), np.maximum(lam0 - product, 0.0), phi)

    @classmethod
    def from_vectors(cls, a: ArrayLike, b: ArrayLike, phi: float) -> GradientFlow:
        """From vectors a, b of shape (d,) or (n, d): S0, P0 measured without cancellation."""
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        eps0 = np.sum(a * b, axis=-1) - phi
        s0 = np.sum(np.square(a + b), axis=-1)
        p0 = np.sum(np.square(a - b), axis=-1)
        return cls(np.asarray(eps0), np.asarray(s0), np.asarray(p0), np.asarray(phi, dtype=np.float64))

    @property
    def lam0(self) -> FloatArray:
        return np.asarray(0.5 * (self.s0 + self.p0))

    @property
    def conserved(self) -> FloatArray:
        """C = S·P = λ² − 4(ε + Φ)², conserved along the flow (as is C + 4Φ², Lemma 2)."""
        return np.asarray(self.s0 * self.p0)

    @property
    def limit_sharpness(self) -> FloatArray:
        """λ* = √(4Φ² + S0 P0): scale and sharpness at the limit when S0 > 0; for
        S0 = 0 (a = −b) the flow runs into the saddle a = b = 0, of sharpness Φ."""
        limit = np.sqrt(4.0 * self.phi * self.phi + self.conserved)
        return np.asarray(np.where(self.s0 == 0.0, np.abs(self.phi), limit))

    def at(self, time: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """(ε(t), λ(t)) at GF times ``time`` ≥ 0, broadcast against the initializations."""
        s, p, eps = self._state(np.asarray(time, dtype=np.float64))
        return eps, 0.5 * (s + p)

    def vectors_at(self, a0: ArrayLike, b0: ArrayLike, time: float) -> tuple[FloatArray, FloatArray]:
        """a(t), b(t) for this flow's initialization(s) a0, b0 (shape (d,) or (n, d)).

        s = a + b and q = a − b keep their directions: s(t) = s0 √(S(t)/S0),
        q(t) = q0 √(P(t)/P0), so every Q_i = s_i q_i is conserved exactly.
        """
        a0 = np.asarray(a0, dtype=np.float64)
        b0 = np.asarray(b0, dtype=np.float64)
        s, p, _ = self._state(np.asarray(time, dtype=np.float64))
        s_scale = np.sqrt(np.divide(s, self.s0, out=np.zeros_like(s), where=self.s0 > 0))
        p_scale = np.sqrt(np.divide(p, self.p0, out=np.zeros_like(p), where=self.p0 > 0))
        s_vec = (a0 + b0) * np.asarray(s_scale)[..., None]
        q_vec = (a0 - b0) * np.asarray(p_scale)[..., None]
        return 0.5 * (s_vec + q_vec), 0.5 * (s_vec - q_vec)

    def _state(self, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(S, P, ε) at times t (see module doc for the formulas and their conditioning)."""
        eps0, s0, p0, phi, t = np.broadcast_arrays(self.eps0, self.s0, self.p0, self.phi, t)
        c = s0 * p0
        lam_star = np.sqrt(4.0 * phi * phi + c)
        regular = (s0 > 0) & (lam_star > 0)
        one = np.ones_like(lam_star)
        # Regular case. gap = λ* − 2Φ = −x₋ ≥ 0 without cancellation; m0 = S0 − x₋ > 0.
        lam_safe = np.where(regular, lam_star, one)
        gap = c / (lam_safe + 2.0 * phi)
        x_plus = 2.0 * phi + lam_safe
        m0 = np.where(regular, s0 + gap, one)
        w0 = 4.0 * s0 * eps0 / (m0 * m0)  # (S0 − x₊)/(S0 − x₋), using (S0 − x₊)(S0 − x₋) = 4 S0 ε0
        decay = np.exp(-lam_safe * t)
        grown = -np.expm1(-lam_safe * t)  # 1 − e^{−λ* t}
        w = w0 * decay
        # 1 − w and D = x₊ − x₋ w, each as a sum of non-negative terms.
        one_minus_w = np.where(w0 >= 0, 2.0 * lam_safe / m0 + w0 * grown, 1.0 - w)
        d = np.where(w0 >= 0, x_plus + gap * w, 2.0 * lam_safe * s0 / m0 - gap * w0 * grown)
        d_safe = np.where(regular, d, one)
        s_reg = d / one_minus_w
        eps_reg = w * lam_safe * lam_safe / (one_minus_w * d_safe)
        p_reg = c * one_minus_w / d_safe
        # Degenerate cases: logistic y' = −k y − y²/2 with y0 = S0 (λ* = 0, k = 0) or P0 (S0 = 0, k = 2Φ).
        k = np.where(s0 > 0, 0.0, 2.0 * phi)
        y0 = np.where(s0 > 0, s0, p0)
        k_safe = np.where(k > 0, k, one)
        horizon = np.where(k > 0, -np.expm1(-k_safe * t) / k_safe, t)  # (1 − e^{−kt})/k, or t when k = 0
        y = y0 * np.exp(-k * t) / (1.0 + 0.5 * y0 * horizon)
        s = np.where(regular, s_reg, np.where(s0 > 0, y, 0.0))
        p = np.where(regular, p_reg, np.where(s0 > 0, 0.0, y))
        eps = np.where(regular, eps_reg, (s - p) / 4.0 - phi)
        return s, p, eps
