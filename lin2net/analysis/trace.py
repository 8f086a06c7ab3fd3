"""One trajectory step by step, beside the gradient flow from the same start.

A trace is the one driver's every-step mode (:func:`lin2net.dynamics.driver.run`
with ``record="every"``): the same dynamics, arithmetic, stopping rule and
observers as the sweep's reference integrators, so a traced trajectory ends
exactly where the sweep's row for it says it ends, but every state is kept.
:func:`trace_trajectory` traces GD from any start; :func:`trace_sweep` traces
trajectory k of a cell of a sweep with that sweep's dynamics (its registry
entry's ``trace``). :func:`sweep_initialization` rebuilds the initialization
that a sweep cell used for a given trajectory index.

Columns of the per-step table (one row per t = 0 … T):

* ``t``; ``eps``, ``lambda``, ``loss``; ``q_ratio`` = Q(t)/Q(0) and
  ``log_q_ratio``; ``sharpness`` S(t) (exact top Hessian eigenvalue) and
  ``eta_sharpness`` = η·S(t);
* the dynamics' step extras, NaN on the last row (SGD: the step's batch moments
  ``s``, ``r`` and gradient factor ``g``);
* ``gf_eps``, ``gf_lambda``, ``gf_loss``, ``gf_sharpness``: the gradient flow
  from the same initialization at GF time η·t (:mod:`lin2net.theory.gradient_flow`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from lin2net.dynamics import registry
from lin2net.dynamics.driver import run
from lin2net.dynamics.gd.reference import GD, GDParams, ReducedState
from lin2net.dynamics.initialization import initial_blocks, initial_conditions
from lin2net.dynamics.protocol import Status, StopRule
from lin2net.errors import ConfigError
from lin2net.sweep.config import SweepConfig, parse_config
from lin2net.sweep.grid import Cell, expand_grid
from lin2net.theory.closed_forms import FloatArray, reduced_coordinates, sharpness, sum_and_difference_norms
from lin2net.theory.gradient_flow import GradientFlow

TABLE_SUFFIXES = (".parquet", ".csv")
# Errors name the parameters of these functions (``a/b``, ``eta``, ``max_steps``…);
# the CLI names its options instead (lin2net.cli.trace).
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
        raise ConfigError("a/b", f"a and b must be non-empty and of equal length, got {a.size} and {b.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ConfigError("a/b", "entries must be finite numbers")
    if not (math.isfinite(phi) and phi >= 0):
        raise ConfigError("phi", f"must be a finite number >= 0, got {phi!r}")
    eps0, lam0, q0 = reduced_coordinates(a[None, :], b[None, :], phi)
    if lam0[0] == 0:
        raise ConfigError("a/b", "a = b = 0 is the saddle point: gradient descent never moves from it")
    s0, p0 = sum_and_difference_norms(a[None, :], b[None, :])
    return Start(a, b, phi, float(eps0[0]), float(lam0[0]), float(q0[0]), float(s0[0]), float(p0[0]))


def sweep_initialization(
    *, eta: float, lambda0: float, phi: float, d: int, seed: int, init: str, trajectory: int
) -> Start:
    """The initialization of trajectory ``trajectory`` in the sweep cell (η, λ0, Φ, d)
    of a sweep with root seed ``seed`` and init ``sphere`` or ``gaussian``: the same
    numbers (ε0, λ0 and Q0 included) that the sweep's row for it started from."""
    if trajectory < 0:
        raise ConfigError("trajectory", f"must be >= 0, got {trajectory}")
    if init == "explicit":
        raise ConfigError("init", "give the vectors a and b for an explicit initialization")
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
    except ConfigError as exc:  # name the parameter of this function, not the config key behind it
        raise ConfigError(exc.key.removeprefix("grid."), exc.problem) from None
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


def trace_table(columns: dict[str, Any], status: Status, start: Start, eta: float) -> Trace:
    """A :class:`Trace` from the driver's per-state ``columns`` of one trajectory
    (:meth:`lin2net.dynamics.driver.History.trajectory`), with the gradient flow
    (of the loss the dynamics descends) from the same start at GF time η·t."""
    phi = start.phi
    steps = np.asarray(columns["t"])
    flow = GradientFlow.from_vectors(start.a, start.b, phi)
    gf_eps, gf_lam = flow.at(eta * steps)
    gradient_flow = {
        "gf_eps": gf_eps,
        "gf_lambda": gf_lam,
        "gf_loss": 0.5 * gf_eps * gf_eps,
        "gf_sharpness": sharpness(gf_eps, gf_lam, phi),
    }
    return Trace(step_table(columns, gradient_flow), status, int(steps[-1]), eta, phi, flow)


def step_table(columns: dict[str, Any], after: dict[str, Any] | None = None) -> pd.DataFrame:
    """The per-step table of the driver's per-state ``columns`` of one trajectory:
    ``t``, ``eps``, ``lambda``, ``loss``, ``q_ratio``, ``log_q_ratio``, ``sharpness``,
    ``eta_sharpness``, then the step extras, then the columns ``after``."""
    known = {"t", "eps", "lam", "loss", "log_q_ratio", "sharpness", "eta_sharpness"}
    extras = {name: values for name, values in columns.items() if name not in known}
    with np.errstate(over="ignore", invalid="ignore"):
        return pd.DataFrame(
            {
                "t": np.asarray(columns["t"]),
                "eps": columns["eps"],
                "lambda": columns["lam"],
                "loss": columns["loss"],
                "q_ratio": np.exp(columns["log_q_ratio"]),
                "log_q_ratio": columns["log_q_ratio"],
                "sharpness": columns["sharpness"],
                "eta_sharpness": columns["eta_sharpness"],
                **extras,
                **(after or {}),
            }
        )


def trace_trajectory(start: Start, eta: float, rule: StopRule) -> Trace:
    """Run GD from ``start`` to its stopping time T, recording t = 0 … T."""
    if not (math.isfinite(eta) and eta > 0):
        raise ConfigError("eta", f"must be a finite number > 0, got {eta!r}")
    known = not (math.isnan(start.s0) or math.isnan(start.p0))
    state = ReducedState(
        np.array([start.eps0]),
        np.array([start.lam0]),
        np.array([start.s0]) if known else None,
        np.array([start.p0]) if known else None,
    )
    outcome = run(GD(), state, GDParams(np.array([eta]), np.array([start.phi])), rule, record="every")
    assert outcome.history is not None
    return trace_table(outcome.history.trajectory(0), Status(int(outcome.results.status[0])), start, eta)


@dataclass
class FamilyTrace:
    """A traced trajectory of a model family (``deep``, ``vector``, ``relu``): the
    per-step table (``t``, ``eps``, ``lambda``, ``loss``, ``q_ratio``, ``log_q_ratio``,
    ``sharpness``, ``eta_sharpness``, ``lambda_gf``: the sharpness of the gradient-flow
    solution from θ_t, NaN on the last row), how it ended, and λ_GF from θ_0."""

    table: pd.DataFrame
    status: Status
    steps: int
    eta: float
    phi: float
    lambda_gf: float


def family_trace_table(columns: dict[str, Any], status: Status, eta: float, phi: float) -> FamilyTrace:
    """A :class:`FamilyTrace` from the driver's per-state columns of one trajectory."""
    table = step_table(columns)
    gf = table["lambda_gf"].to_numpy() if "lambda_gf" in table else np.array([np.nan])
    return FamilyTrace(table, status, int(table["t"].iloc[-1]), eta, phi, float(gf[0]))


def trace_sweep(
    config: SweepConfig, cell: Cell, trajectory: int, max_steps: int | None = None, loss_tol: float | None = None
) -> tuple[Any, Start | None]:
    """Trajectory ``trajectory`` of ``cell`` of the sweep ``config``, step by step, with
    the sweep's dynamics and stop rule (``max_steps``, ``loss_tol`` override it), and
    the start it ran from: its last row is the sweep's row for it."""
    rule = StopRule(config.loss_tol, config.max_steps, config.divergence_threshold)
    steps = rule.max_steps if max_steps is None else max_steps
    if steps > TRACE_MAX_STEPS:
        problem = f"the sweep's max_steps is {steps} and a trace keeps every step: give max_steps <= {TRACE_MAX_STEPS}"
        raise ConfigError("max_steps", problem)
    rule = replace(rule, max_steps=steps, loss_tol=rule.loss_tol if loss_tol is None else loss_tol)
    trace = registry.get(config.algorithm).function("trace")
    if registry.is_family(config.algorithm):  # θ ∈ R^D: no shallow start, no closed-form flow
        columns, status = trace(config, cell, trajectory, rule)
        return family_trace_table(columns, status, cell.eta, cell.phi), None
    if config.explicit is not None:
        start = start_from_vectors(config.explicit.a, config.explicit.b, cell.phi)
    else:
        start = sweep_initialization(
            eta=cell.eta,
            lambda0=cell.lambda0,
            phi=cell.phi,
            d=cell.d,
            seed=config.seed,
            init=config.init,
            trajectory=trajectory,
        )
    columns, status = trace(config, cell, trajectory, rule)
    return trace_table(columns, status, start, cell.eta), start


def write_trace_table(trace: Trace, path: Path) -> None:
    """Write the per-step table to ``path`` (.parquet or .csv), atomically."""
    from lin2net.store.outdir import atomic_write

    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ConfigError("path", f"unknown table format {suffix or '(none)'!r}; use .parquet or .csv")
    if suffix == ".csv":
        atomic_write(Path(path), lambda temp: trace.table.to_csv(temp, index=False))
    else:
        atomic_write(Path(path), lambda temp: trace.table.to_parquet(temp, index=False))
