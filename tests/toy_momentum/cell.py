"""The toy's ``simulate`` and ``trace`` for the registry (any integrator: it has only the reference)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lin2net.dynamics.driver import TrajectoryResults, concatenate, run
from lin2net.dynamics.initialization import InitialConditions, block_rows, initial_blocks
from lin2net.dynamics.protocol import Status, StopRule
from lin2net.sweep.config import SweepConfig
from lin2net.sweep.grid import Cell
from lin2net.theory.closed_forms import reduced_coordinates, sum_and_difference_norms
from tests.toy_momentum.dynamics import HeavyBall, MomentumParams, start


def _params(cell: Cell, n: int) -> MomentumParams:
    return MomentumParams(np.full(n, cell.eta), np.full(n, cell.phi), np.full(n, float(cell.value("beta"))))


def simulate(
    config: SweepConfig,
    cells: Sequence[Cell],
    threads: int | None = None,
    cancel: Any = None,
    part: tuple[int, int] | None = None,
) -> tuple[InitialConditions, TrajectoryResults]:
    rule = StopRule(config.loss_tol, config.max_steps, config.divergence_threshold)
    first, stop = part if part is not None else (0, config.trajectories)
    starts, parts = [], []
    for cell in cells:
        for block in initial_blocks(config, cell, first, stop):
            rows = block_rows(block, first, stop)
            a, b = block.a[rows], block.b[rows]
            eps0, lam0, q0 = reduced_coordinates(a, b, cell.phi)
            starts.append(InitialConditions(eps0, lam0, q0, *sum_and_difference_norms(a, b)))
            parts.append(run(HeavyBall(), start(a, b), _params(cell, a.shape[0]), rule).results)
    names = ("eps0", "lam0", "q0", "s0", "p0")
    initial = InitialConditions(*(np.concatenate([getattr(s, k) for s in starts]) for k in names))
    return initial, concatenate(parts)


def trace(config: SweepConfig, cell: Cell, trajectory: int, rule: StopRule) -> tuple[dict[str, Any], Status]:
    for block in initial_blocks(config, cell):
        row = trajectory - block.start
        if row < block.a.shape[0]:
            state = start(block.a[row : row + 1], block.b[row : row + 1])
            outcome = run(HeavyBall(), state, _params(cell, 1), rule, record="every")
            assert outcome.history is not None
            return outcome.history.trajectory(0), Status(int(outcome.results.status[0]))
    raise IndexError(trajectory)
