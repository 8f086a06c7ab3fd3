"""A model family's cells: starts θ_0 in, one row per trajectory out (``simulate`` and ``trace``).

The registry entries of every model family (``deep``, ``vector``, ``vector-sgd``,
``relu``, ``relu-sgd``) point here: the cell's model comes from its family's hook
(:func:`lin2net.dynamics.families.build_model`), its starts from
:func:`lin2net.dynamics.families.initial_theta`, and the one driver runs
:class:`lin2net.dynamics.parameter_vector.ParameterVectorDynamics` on them. Each
cell is one batched run over its trajectories (the model is one grid point's).
SGD streams are keyed by (root seed, trajectory index), as today's SGD, so a row
is re-simulated alone by :func:`trace_family`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from lin2net.dynamics import families
from lin2net.dynamics.driver import TrajectoryResults, run
from lin2net.dynamics.parameter_vector import ParameterVectorDynamics, run_parameters, start_state
from lin2net.dynamics.protocol import FloatArray, Status, StopRule
from lin2net.kernels.counter_rng import trajectory_keys
from lin2net.sweep.config import SweepConfig
from lin2net.sweep.grid import Cell


@dataclass
class FamilyStart:
    """Per trajectory at θ_0, shape (n,): λ(0) = ‖θ_0‖², L(θ_0), Q(θ_0), S(θ_0), ε(θ_0)
    and the sharpness of the gradient-flow solution from θ_0."""

    lambda_init: FloatArray
    loss0: FloatArray
    q0: FloatArray
    sharpness0: FloatArray
    eps0: FloatArray
    lambda_gf: FloatArray


@dataclass
class FamilyResults(TrajectoryResults):
    """The driver's results and L(θ_T) = ½ε_T²."""

    loss_T: FloatArray = field(default_factory=lambda: np.zeros(0))


def stop_rule(config: SweepConfig) -> StopRule:
    return StopRule(config.loss_tol, config.max_steps, config.divergence_threshold)


def _dynamics(config: SweepConfig, cell: Cell) -> tuple[ParameterVectorDynamics, int]:
    """The cell's dynamics and its batch size (0: full batch)."""
    model = families.build_model(config, cell)
    if config.user_algorithm == "sgd":
        n_data = int(config.data.n) if hasattr(config.data, "n") else None
        return ParameterVectorDynamics(model, n_data), int(cell.value("batch_size"))
    return ParameterVectorDynamics(model), 0


def simulate_cell(
    config: SweepConfig, cell: Cell, first: int = 0, stop: int | None = None
) -> tuple[FamilyStart, FamilyResults]:
    """Trajectories ``first`` … ``stop − 1`` of one family cell to their stopping time."""
    stop = config.trajectories if stop is None else stop
    theta = families.initial_theta(config, cell, first, stop)
    dynamics, batch = _dynamics(config, cell)
    model = dynamics.model
    keys = trajectory_keys(config.seed, np.arange(first, stop, dtype=np.int64))
    params = run_parameters(cell.eta, theta.shape[0], batch, keys)
    state = dynamics.start(start_state(model, theta), params)
    with np.errstate(all="ignore"):
        start = FamilyStart(
            lambda_init=np.einsum("nd,nd->n", theta, theta),
            loss0=model.loss(theta),
            q0=state.q0,
            sharpness0=state.sharpness,
            eps0=model.residual(theta),
            lambda_gf=model.gradient_flow_sharpness(theta),
        )
    results = run(dynamics, state, params, stop_rule(config)).results
    out = FamilyResults(**{f.name: getattr(results, f.name) for f in fields(TrajectoryResults)})
    out.loss_T = 0.5 * results.eps_T * results.eps_T
    return start, out


def simulate_family_cells(
    config: SweepConfig,
    cells: Sequence[Cell],
    threads: int | None = None,
    cancel: Any = None,
    part: tuple[int, int] | None = None,
) -> tuple[FamilyStart, FamilyResults]:
    """Every trajectory of ``cells`` (``part``: trajectories first … stop − 1 of one cell);
    the registry's ``simulate`` of every family entry. ``threads`` and ``cancel`` are
    for compiled kernels; this NumPy path ignores them (results never depend on them)."""
    first, stop = part if part is not None else (0, config.trajectories)
    if part is not None:
        assert len(cells) == 1, "a part is of one cell"
    pieces = [simulate_cell(config, cell, first, stop) for cell in cells]
    start = FamilyStart(
        **{f.name: np.concatenate([getattr(p[0], f.name) for p in pieces]) for f in fields(FamilyStart)}
    )
    names = [f.name for f in fields(FamilyResults)]
    joined = FamilyResults(**{k: np.concatenate([getattr(p[1], k) for p in pieces]) for k in names})
    return start, joined


def trace_family(config: SweepConfig, cell: Cell, trajectory: int, rule: StopRule) -> tuple[dict[str, Any], Status]:
    """Trajectory ``trajectory`` of a family cell step by step (the driver's every-step
    mode, the sweep's own start and SGD stream): per-state columns, with
    ``lambda_gf``, the sharpness of the gradient-flow solution from the state θ_t
    (deep: every state but the last, whose step is not taken, so Kreisler et al.'s
    monotonicity can be read off; vector and relu: t = 0 only, NaN after, as their
    λ_GF integrates the flow), and how it ended."""
    theta = families.initial_theta(config, cell, trajectory, trajectory + 1)
    dynamics, batch = _dynamics(config, cell)
    keys = trajectory_keys(config.seed, np.array([trajectory], dtype=np.int64))
    params = run_parameters(cell.eta, 1, batch, keys)
    every = config.family == "deep"
    traced = TracedDynamics(dynamics.model, dynamics.data_size) if every else dynamics
    outcome = run(traced, start_state(dynamics.model, theta), params, rule, record="every")
    assert outcome.history is not None
    columns = outcome.history.trajectory(0)
    if not every:  # λ_GF from θ_0 only: a data family's is an ODE integration per state
        gf = np.full(columns["t"].shape, np.nan)
        with np.errstate(all="ignore"):
            gf[0] = dynamics.model.gradient_flow_sharpness(theta)[0]
        columns["lambda_gf"] = gf
    return columns, Status(int(outcome.results.status[0]))


class TracedDynamics(ParameterVectorDynamics):
    """The same dynamics, whose steps also report the GF-solution sharpness at θ_t."""

    def step(self, state: Any, params: Any, t: int, obs: Any) -> Any:
        moved, step = super().step(state, params, t, obs)
        with np.errstate(all="ignore"):
            step.extras["lambda_gf"] = self.model.gradient_flow_sharpness(state.theta)
        return moved, step
