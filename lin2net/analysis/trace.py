"""One gradient-descent trajectory step by step, beside the gradient flow from the same start.

:func:`trace_trajectory` runs the exact reduced map of
:class:`lin2net.dynamics.gd.reference.ReducedState` with the same arithmetic, stopping
rule and log-space accumulation of Q(t)/Q(0) as :func:`lin2net.dynamics.gd.reference.integrate`,
so a traced trajectory ends exactly where the sweep's row for it says it
ends, but it records every step. :func:`sweep_initialization` rebuilds the
initialization that a sweep cell used for a given trajectory index.

Columns of the per-step table (one row per t = 0 … T):

* ``t``; ``eps``, ``lambda``, ``loss`` = ε²/2; ``q_ratio`` = Q(t)/Q(0) and
  ``log_q_ratio``; ``sharpness`` S(t) (exact top Hessian eigenvalue) and
  ``eta_sharpness`` = η·S(t);
* ``gf_eps``, ``gf_lambda``, ``gf_loss``, ``gf_sharpness``: the gradient flow
  from the same initialization at GF time η·t (:mod:`lin2net.theory.gradient_flow`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from lin2net.dynamics.gd.reference import ReducedState, Status, StopRule, compensated_add, compensated_value, log_q_term
from lin2net.dynamics.initialization import initial_blocks, initial_conditions
from lin2net.errors import ConfigError
from lin2net.sweep.config import parse_config
from lin2net.sweep.grid import expand_grid
from lin2net.theory.closed_forms import FloatArray, reduced_coordinates, sharpness, sum_and_difference_norms
from lin2net.theory.gradient_flow import GradientFlow

TABLE_SUFFIXES = (".parquet", ".csv")
TRACE_MAX_STEPS = 10_000_000  # a trace keeps every step: ~1 GB of table at this many


@dataclass(frozen=True)
class Start:
    """One initialization: vectors a, b of shape (d,), the reduced (ε0, λ0, Q0), and
    S0 = ‖a + b‖², P0 = ‖a − b‖² (the state the reduced map carries)."""

    a: FloatArray
    b: FloatArray
    phi: float
    eps0: float
    lam0: float
    q0: float
    s0: float = math.nan
    p0: float = math.nan


def start_from_vectors(a: ArrayLike, b: ArrayLike, phi: float) -> Start:
    """The start (a, b); ε0, λ0 and Q0 measured from the vectors."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ConfigError("--a/--b", f"a and b must be non-empty and of equal length, got {a.size} and {b.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ConfigError("--a/--b", "entries must be finite numbers")
    if not (math.isfinite(phi) and phi >= 0):
        raise ConfigError("--phi", f"must be a finite number >= 0, got {phi!r}")
    eps0, lam0, q0 = reduced_coordinates(a[None, :], b[None, :], phi)
    if lam0[0] == 0:
        raise ConfigError("--a/--b", "a = b = 0 is the saddle point: gradient descent never moves from it")
    s0, p0 = sum_and_difference_norms(a[None, :], b[None, :])
    return Start(a, b, phi, float(eps0[0]), float(lam0[0]), float(q0[0]), float(s0[0]), float(p0[0]))


def sweep_initialization(
    *, eta: float, lambda0: float, phi: float, d: int, seed: int, init: str, trajectory: int
) -> Start:
    """The initialization of trajectory ``trajectory`` in the sweep cell (η, λ0, Φ, d)
    of a sweep with root seed ``seed`` and init ``sphere`` or ``gaussian``: the same
    numbers (ε0, λ0 and Q0 included) that the sweep's row for it started from."""
    if trajectory < 0:
        raise ConfigError("--trajectory", f"must be >= 0, got {trajectory}")
    if init == "explicit":
        raise ConfigError("--init", "use --a and --b for an explicit initialization")
    try:
        config = parse_config(
            {
                "name": "trace",
                "seed": seed,
                "trajectories": trajectory + 1,
                "grid": {"eta": eta, "lambda0": lambda0, "phi": phi, "d": d},
                "init": init,
            }
        )
    except ConfigError as exc:  # name the command-line option, not the config key behind it
        raise ConfigError("--" + exc.key.removeprefix("grid."), exc.problem) from None
    cell = expand_grid(config)[0]
    initial = initial_conditions(config, cell)  # the sweep's own numbers for this row
    for block in initial_blocks(config, cell):
        row = trajectory - block.start
        if row < block.a.shape[0]:
            return Start(
                block.a[row],
                block.b[row],
                cell.phi,
                float(initial.eps0[trajectory]),
                float(initial.lam0[trajectory]),
                float(initial.q0[trajectory]),
                float(initial.s0[trajectory]),
                float(initial.p0[trajectory]),
            )
    raise AssertionError("unreachable: the last block holds the last trajectory")  # pragma: no cover


@dataclass
class Trace:
    """A traced trajectory: the per-step table, how it ended and at which step."""

    table: pd.DataFrame
    status: Status
    steps: int
    eta: float
    phi: float
    flow: GradientFlow

    @property
    def lambda_gf(self) -> float:
        """Sharpness at the limit of the gradient flow from the same start."""
        return float(self.flow.limit_sharpness)


def trace_trajectory(start: Start, eta: float, rule: StopRule) -> Trace:
    """Run GD from ``start`` to its stopping time T, recording t = 0 … T."""
    if not (math.isfinite(eta) and eta > 0):
        raise ConfigError("--eta", f"must be a finite number > 0, got {eta!r}")
    phi = start.phi
    known = not (math.isnan(start.s0) or math.isnan(start.p0))
    state = ReducedState(
        np.array([start.eps0]),
        np.array([start.lam0]),
        np.array([start.s0]) if known else None,
        np.array([start.p0]) if known else None,
    )
    state.start(np.array([phi]))
    eps, lam = float(state.eps[0]), float(state.lam[0])
    log_q, log_q_error = np.zeros(1), np.zeros(1)  # compensated, as integrate() sums it
    eps_t: list[float] = []
    lam_t: list[float] = []
    log_q_t: list[float] = []
    status = Status.MAX_STEPS
    t = 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while True:
            eps_t.append(eps)
            lam_t.append(lam)
            log_q_t.append(float(compensated_value(log_q, log_q_error)[0]))
            if 0.5 * eps * eps <= rule.loss_tol:
                status = Status.CONVERGED
                break
            if not (abs(eps) <= rule.divergence_threshold and abs(lam) <= rule.divergence_threshold):
                status = Status.DIVERGED
                break
            if t >= rule.max_steps:
                break
            # The same log term as integrate(), and the sweep's own map (one trajectory).
            log_q, log_q_error = compensated_add(log_q, log_q_error, log_q_term(np.array([eta * eps])))
            state.step(state.eps, state.lam, np.array([eta]), np.array([phi]))
            eps, lam = float(state.eps[0]), float(state.lam[0])
            t += 1
    steps = np.arange(t + 1)
    eps_a, lam_a, log_q_a = np.array(eps_t), np.array(lam_t), np.array(log_q_t)
    flow = GradientFlow.from_vectors(start.a, start.b, phi)
    gf_eps, gf_lam = flow.at(eta * steps)
    with np.errstate(over="ignore", invalid="ignore"):
        sharp = sharpness(eps_a, lam_a, phi)
        table = pd.DataFrame(
            {
                "t": steps,
                "eps": eps_a,
                "lambda": lam_a,
                "loss": 0.5 * eps_a * eps_a,
                "q_ratio": np.exp(log_q_a),
                "log_q_ratio": log_q_a,
                "sharpness": sharp,
                "eta_sharpness": eta * sharp,
                "gf_eps": gf_eps,
                "gf_lambda": gf_lam,
                "gf_loss": 0.5 * gf_eps * gf_eps,
                "gf_sharpness": sharpness(gf_eps, gf_lam, phi),
            }
        )
    return Trace(table, status, t, eta, phi, flow)


def sgd_trace(start: Start, sgd: Any, eta: float) -> Trace:
    """A :class:`Trace` of an SGD trajectory (``sgd``: a lin2net.dynamics.sgd.reference.SGDTrace
    re-simulated from ``start``), with the same columns as GD's (loss and
    sharpness those of the full-batch loss, the gradient flow of the full-batch
    loss from the same start) plus each step's batch moments ``s``, ``r`` and
    gradient factor ``g`` (NaN on the last row: no step was taken from it)."""
    phi = start.phi
    steps = np.asarray(sgd.t)
    flow = GradientFlow.from_vectors(start.a, start.b, phi)
    gf_eps, gf_lam = flow.at(eta * steps)

    def per_state(values: Any) -> FloatArray:
        padded: FloatArray = np.full(steps.shape, np.nan)
        padded[: len(values)] = values
        return padded

    with np.errstate(over="ignore", invalid="ignore"):
        sharp = np.asarray(sgd.sharpness, dtype=np.float64)
        table = pd.DataFrame(
            {
                "t": steps,
                "eps": sgd.eps,
                "lambda": sgd.lam,
                "loss": sgd.loss,
                "q_ratio": np.exp(sgd.log_q_ratio),
                "log_q_ratio": sgd.log_q_ratio,
                "sharpness": sharp,
                "eta_sharpness": eta * sharp,
                "g": per_state(sgd.g),
                "s": per_state(sgd.s),
                "r": per_state(sgd.r),
                "gf_eps": gf_eps,
                "gf_lambda": gf_lam,
                "gf_loss": 0.5 * gf_eps * gf_eps,
                "gf_sharpness": sharpness(gf_eps, gf_lam, phi),
            }
        )
    return Trace(table, Status(sgd.status), int(steps[-1]), eta, phi, flow)


def write_trace_table(trace: Trace, path: Path) -> None:
    """Write the per-step table to ``path`` (.parquet or .csv), atomically."""
    from lin2net.store.outdir import atomic_write

    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ConfigError("--output", f"unknown table format {suffix or '(none)'!r}; use .parquet or .csv")
    if suffix == ".csv":
        atomic_write(Path(path), lambda temp: trace.table.to_csv(temp, index=False))
    else:
        atomic_write(Path(path), lambda temp: trace.table.to_parquet(temp, index=False))
