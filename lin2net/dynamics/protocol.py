"""The dynamics protocol: what one dynamics (GD, SGD, …) gives the one driver.

A dynamics is an immutable description (its static settings, e.g. SGD's data
set) with pure functions on small immutable values, in the style of optax:

* ``start(state, params) -> state``: the state ready for its first observation;
* ``state``: a NamedTuple of per-trajectory arrays (GD's reduced (ε, S, P), the
  full vectors (a, b), a momentum buffer, a family's parameter vector…); the
  driver never looks inside it, it only selects rows with :func:`take`;
* ``params``: a NamedTuple of per-trajectory parameters (η, Φ, batch size…);
* ``observe(state, params) -> Observation``: what is measured at each state;
* ``step(state, params, t, observation) -> (state, Step)``: one update, with the
  Q-factor argument u_t (Q_{t+1} = (1 − u_t²) Q_t) and any per-step extras a
  trace records (SGD's batch moments);
* ``tolerance(params, rule)``: the per-trajectory ``loss_tol`` of the stop rule;
* ``finish(results, window) -> results``: the dynamics' final table fragment.

The stop rule (:func:`stop_status`) is written once, here; the driver
(:mod:`lin2net.dynamics.driver`) and the observers
(:mod:`lin2net.dynamics.observers`) are written once for every dynamics.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
Tree = TypeVar("Tree", bound=tuple[Any, ...])


class Status(IntEnum):
    """How a trajectory ended; stored as its lower-case name in tables."""

    CONVERGED = 0
    DIVERGED = 1
    MAX_STEPS = 2

    @property
    def label(self) -> str:
        return self.name.lower()


RUNNING = -1  # the status of a trajectory that takes another step


@dataclass(frozen=True)
class StopRule:
    """When a trajectory leaves the working set."""

    loss_tol: float
    max_steps: int
    divergence_threshold: float = 1e30


class Observation(NamedTuple):
    """What the driver measures at a state, each of shape (n,): the residual ε, the
    scale λ, the loss, the sharpness S (top Hessian eigenvalue of the loss the stop
    rule watches) and η·S (the edge of stability is η·S = 2)."""

    eps: FloatArray
    lam: FloatArray
    loss: FloatArray
    sharpness: FloatArray
    eta_sharpness: FloatArray


class Step(NamedTuple):
    """What a step reports: ``u`` with Q_{t+1} = (1 − u²)·Q_t (η·ε for GD), and the
    extras a trace records for the step (name → shape-(n,) array; may be empty)."""

    u: FloatArray
    extras: dict[str, FloatArray]


def stop_status(obs: Observation, loss_tol: FloatArray | float, rule: StopRule, t: int) -> NDArray[np.int8]:
    """The stop rule, written once: ``converged`` at ½ε² <= loss_tol, else ``diverged``
    where |ε| or |λ| is non-finite or beyond the threshold, else ``max_steps`` at
    t = max_steps; :data:`RUNNING` where the trajectory takes another step."""
    eps, lam = obs.eps, obs.lam
    converged = 0.5 * eps * eps <= loss_tol
    diverged = ~converged & ~((np.abs(eps) <= rule.divergence_threshold) & (np.abs(lam) <= rule.divergence_threshold))
    out_of_steps = t >= rule.max_steps
    status: NDArray[np.int8] = np.where(
        converged,
        np.int8(Status.CONVERGED),
        np.where(diverged, np.int8(Status.DIVERGED), np.int8(Status.MAX_STEPS if out_of_steps else RUNNING)),
    ).astype(np.int8)
    return status


def take(tree: Tree, rows: NDArray[Any]) -> Tree:
    """The same NamedTuple of per-trajectory arrays, restricted to ``rows``."""
    leaves = [None if leaf is None else leaf[rows] for leaf in tree]
    make: Any = type(tree)  # the NamedTuple class: one positional argument per field
    return make(*leaves)  # type: ignore[no-any-return]


class Dynamics(Protocol):
    """One dynamics, run by :func:`lin2net.dynamics.driver.run` (see module doc)."""

    @property
    def name(self) -> str:
        """The dynamics' name (its ``algorithm:`` value in a config)."""

    def start(self, state: Any, params: Any) -> Any:
        """The state ready for its first observation (e.g. S, P derived from λ0 and Φ)."""

    def observe(self, state: Any, params: Any) -> Observation:
        """The observation of every trajectory at its current state."""

    def step(self, state: Any, params: Any, t: int, obs: Observation) -> tuple[Any, Step]:
        """Every trajectory one step on (all of them: the driver drops stopped ones first)."""

    def tolerance(self, params: Any, rule: StopRule) -> FloatArray:
        """Per trajectory, the loss_tol of the stop rule (−inf: never converges by chance)."""

    def measured_log_q(self, state: Any, product: FloatArray | None = None) -> FloatArray | None:
        """log Q(t)/Q(0) measured from the state (full vectors), or None: then the
        driver's compensated sum of log|1 − u²| (``product``) is the value. A
        measurement that is 0/0 (Q(0) = 0) takes ``product``."""

    def window(self, rule: StopRule) -> int | None:
        """States t > this are averaged by the window observer (None: no window)."""
