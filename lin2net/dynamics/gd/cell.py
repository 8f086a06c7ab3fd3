"""GD's cells: a shard's cells in, initial conditions and GD results out.

GD's ``simulate`` and ``trace`` of the registry (:mod:`lin2net.dynamics.registry`).
The compiled kernel integrates all of a shard's cells in one call with η and Φ
given per trajectory, so lanes refill across cell boundaries; the reduced and
full integrators are the NumPy reference (:mod:`lin2net.dynamics.gd.reference`)
through the one driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any, TypeVar

import numpy as np

from lin2net.dynamics.driver import TrajectoryResults, concatenate, run
from lin2net.dynamics.gd.reference import (
    GD,
    FullState,
    GDParams,
    ReducedState,
    integrate,
    residual_and_scale,
    start_vectors,
)
from lin2net.dynamics.initialization import (
    InitialConditions,
    block_rows,
    initial_blocks,
    initial_conditions,
    shard_initial_conditions,
)
from lin2net.dynamics.protocol import Status, StopRule
from lin2net.sweep.config import SweepConfig
from lin2net.sweep.grid import Cell
from lin2net.theory.closed_forms import sum_and_difference_norms


def stop_rule(config: SweepConfig) -> StopRule:
    return StopRule(config.loss_tol, config.max_steps, config.divergence_threshold)


def per_trajectory(cells: Sequence[Cell], trajectories: int, name: str, dtype: Any = np.float64) -> np.ndarray:
    """A cell parameter repeated for each of the cell's trajectories."""
    return np.repeat(np.array([getattr(cell, name) for cell in cells], dtype=dtype), trajectories)


def simulate_gd_cells(
    config: SweepConfig,
    cells: Sequence[Cell],
    threads: int | None = None,
    cancel: Any = None,
    part: tuple[int, int] | None = None,
) -> tuple[InitialConditions, TrajectoryResults]:
    """Integrate every trajectory of ``cells`` with GD and the config's integrator.

    ``threads`` and ``cancel`` (an int64 array of one element: nonzero stops
    the kernel, which raises) go to the compiled kernel; the NumPy
    integrators ignore them. Results do not depend on ``threads``.
    ``part = (first, stop)``, for one cell: only its trajectories first …
    stop − 1 (a cell larger than a shard runs in parts; the same rows).
    """
    rule = stop_rule(config)
    n = config.trajectories
    first, stop = part if part is not None else (0, n)
    if part is not None:
        assert len(cells) == 1, "a part is of one cell"
        n = stop - first
    if config.integrator == "full":
        return _simulate_full(config, cells, rule, first, stop)
    if part is not None:
        initial = initial_conditions(config, cells[0], first, stop)
    else:
        initial = shard_initial_conditions(config, cells)
    if config.integrator == "compiled":
        from lin2net.dynamics.gd.kernel import integrate_compiled  # imports numba: only when used

        eta, phi = per_trajectory(cells, n, "eta"), per_trajectory(cells, n, "phi")
        results = integrate_compiled(
            initial.eps0, initial.lam0, eta, phi, rule, threads=threads, s0=initial.s0, p0=initial.p0, cancel=cancel
        )
        return initial, results
    eta, phi = per_trajectory(cells, n, "eta"), per_trajectory(cells, n, "phi")
    reduced = ReducedState(initial.eps0, initial.lam0, initial.s0, initial.p0)
    return initial, integrate(reduced, eta, phi, rule)


_Columns = TypeVar("_Columns", InitialConditions, TrajectoryResults)


def _rows(arrays: _Columns, rows: slice) -> _Columns:
    """The same per-trajectory arrays, only ``rows`` (views)."""
    return replace(arrays, **{f.name: getattr(arrays, f.name)[rows] for f in fields(arrays)})


def _simulate_full(
    config: SweepConfig, cells: Sequence[Cell], rule: StopRule, first: int, stop: int
) -> tuple[InitialConditions, TrajectoryResults]:
    """The full-vector integrator, block by block (trajectories first … stop − 1 of each cell)."""
    starts: list[InitialConditions] = []
    parts: list[TrajectoryResults] = []
    for cell in cells:
        for block in initial_blocks(config, cell, first, stop):
            state = start_vectors(FullState(block.a, block.b))
            assert state.q0 is not None
            eps0, lam0 = residual_and_scale(state, np.array([cell.phi]))
            s0, p0 = sum_and_difference_norms(block.a, block.b)
            rows = block_rows(block, first, stop)  # a whole block is integrated, then cut
            starts.append(_rows(InitialConditions(eps0=eps0, lam0=lam0, q0=state.q0, s0=s0, p0=p0), rows))
            parts.append(_rows(integrate(state, cell.eta, cell.phi, rule), rows))
    names = [f.name for f in fields(InitialConditions)]
    initial = InitialConditions(**{k: np.concatenate([getattr(s, k) for s in starts]) for k in names})
    return initial, concatenate(parts)


def trace_gd(config: SweepConfig, cell: Cell, trajectory: int, rule: StopRule) -> tuple[dict[str, Any], Status]:
    """Trajectory ``trajectory`` of a GD cell step by step (the driver's every-step
    mode on the reduced map, from the sweep's own S0, P0): per-state columns and how it ended."""
    initial = initial_conditions(config, cell)
    k = slice(trajectory, trajectory + 1)
    state = ReducedState(initial.eps0[k], initial.lam0[k], initial.s0[k], initial.p0[k])
    outcome = run(GD(), state, GDParams(np.array([cell.eta]), np.array([cell.phi])), rule, record="every")
    assert outcome.history is not None
    return outcome.history.trajectory(0), Status(int(outcome.results.status[0]))
