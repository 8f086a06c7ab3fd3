"""Observers: what the driver accumulates along every trajectory, written once for every dynamics.

Each observer is an immutable NamedTuple of per-trajectory arrays with pure
update functions (optax style); the driver keeps them in step with the working
set (:func:`lin2net.dynamics.protocol.take`).

* :class:`LogQ`: log Q(t)/Q(0) = Σ_{s<t} log|1 − u_s²|, each term taken as
  log1p(−u²) below 1 (so a tiny η loses nothing to the rounding of 1 − u²) and
  summed with Neumaier's compensation (no drift over 10⁶ steps);
* :class:`Diagnostics`: Σ ε², max |ε| and the count of steps taken with η·S > 2
  over t < T, and max η·S over t <= T (docs/columns.md);
* :class:`Window`: sums over the final window (states t > first) of Q/Q0,
  log Q/Q0, S, the loss and λ, and their count, for the window means.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from lin2net.dynamics.protocol import FloatArray, Observation

IntArray = NDArray[np.int64]


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


def log_q_term(u: FloatArray) -> FloatArray:
    """log|1 − u²|: log1p(−u²) below 1 (no rounding of 1 − u² first),
    log(u² − 1) above (−inf at u² = 1, NaN for NaN)."""
    x = u * u
    below = x < 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        term: FloatArray = np.where(below, np.log1p(-np.where(below, x, 0.0)), np.log(np.abs(x - 1.0)))
    return term


class LogQ(NamedTuple):
    """The compensated sum of log|1 − u²|: ``total`` and Neumaier's running ``error``."""

    total: FloatArray
    error: FloatArray

    @classmethod
    def zeros(cls, n: int) -> LogQ:
        return cls(np.zeros(n), np.zeros(n))

    def add(self, u: FloatArray) -> LogQ:
        """One more factor |1 − u²| (one step with Q-factor argument u)."""
        return LogQ(*compensated_add(self.total, self.error, log_q_term(u)))

    def value(self) -> FloatArray:
        return compensated_value(self.total, self.error)


class Diagnostics(NamedTuple):
    """Running Σ ε², max η·S, the number of steps with η·S > 2, and max |ε|."""

    sum_eps2: FloatArray
    max_eta_sharpness: FloatArray
    eos_steps: IntArray
    max_abs_eps: FloatArray

    @classmethod
    def start(cls, n: int) -> Diagnostics:
        return cls(np.zeros(n), np.full(n, -np.inf), np.zeros(n, dtype=np.int64), np.zeros(n))

    def see(self, obs: Observation) -> Diagnostics:
        """A state observed (t <= T): max η·S (NaN never wins)."""
        return self._replace(max_eta_sharpness=np.fmax(self.max_eta_sharpness, obs.eta_sharpness))

    def stepped(self, obs: Observation) -> Diagnostics:
        """A step taken from the observed state (t < T)."""
        return Diagnostics(
            self.sum_eps2 + obs.eps * obs.eps,
            self.max_eta_sharpness,
            self.eos_steps + (obs.eta_sharpness > 2.0),
            np.fmax(self.max_abs_eps, np.abs(obs.eps)),
        )


WINDOW_COLUMNS = ("q_ratio_window", "log_q_ratio_window", "sharpness_window", "loss_window", "lambda_window")


class Window(NamedTuple):
    """Sums over the final window of (Q/Q0, log Q/Q0, S, loss, λ), shape (5, n), and
    the number of states summed."""

    sums: FloatArray
    states: IntArray

    @classmethod
    def zeros(cls, n: int) -> Window:
        return cls(np.zeros((5, n)), np.zeros(n, dtype=np.int64))

    def add(self, obs: Observation, log_q: FloatArray) -> Window:
        """One more state in the window, with its log Q(t)/Q(0)."""
        sums = self.sums.copy()
        for row, value in enumerate((np.exp(log_q), log_q, obs.sharpness, obs.loss, obs.lam)):
            sums[row] += value
        return Window(sums, self.states + 1)

    def take(self, rows: NDArray[np.bool_]) -> Window:
        return Window(self.sums[:, rows], self.states[rows])

    def means(self) -> FloatArray:
        """The window means, shape (5, n): NaN for a trajectory that stopped before it."""
        with np.errstate(invalid="ignore", divide="ignore"):
            means: FloatArray = self.sums / self.states[None, :]
        return means
