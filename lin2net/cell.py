"""Run one grid cell: initializations in, one table row per trajectory out.

This is the seam between the numerical kernels (pure arrays) and the sweep
orchestration (files, progress); it knows the output columns of DESIGN.md.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from lin2net.closed_forms import gradient_flow_sharpness, sharpness
from lin2net.config import SweepConfig
from lin2net.grid import Cell
from lin2net.initialization import InitialConditions, initial_blocks, initial_conditions
from lin2net.integrator import (
    FullState,
    ReducedState,
    Status,
    StopRule,
    TrajectoryResults,
    concatenate,
    integrate,
)

TRAJECTORY_SCHEMA = pa.schema(
    [
        ("cell_id", pa.string()),
        ("trajectory", pa.int64()),
        ("eta", pa.float64()),
        ("lambda0", pa.float64()),
        ("phi", pa.float64()),
        ("d", pa.int64()),
        ("init", pa.string()),
        ("eta_lambda0", pa.float64()),
        ("eps0", pa.float64()),
        ("lambda_init", pa.float64()),
        ("q0", pa.float64()),
        ("sharpness0", pa.float64()),
        ("status", pa.string()),
        ("steps", pa.int64()),
        ("eps_T", pa.float64()),
        ("lambda_T", pa.float64()),
        ("sharpness_T", pa.float64()),
        ("q_ratio", pa.float64()),
        ("log_q_ratio", pa.float64()),
        ("lambda_gf", pa.float64()),
        ("sum_eps2", pa.float64()),
        ("max_eta_sharpness", pa.float64()),
        ("eos_steps", pa.int64()),
        ("max_abs_eps", pa.float64()),
    ]
)
STATUS_LABELS = np.array([status.label for status in Status])


def stop_rule(config: SweepConfig) -> StopRule:
    return StopRule(config.loss_tol, config.max_steps, config.divergence_threshold)


def simulate_cell(config: SweepConfig, cell: Cell) -> tuple[InitialConditions, TrajectoryResults]:
    """Integrate every trajectory of the cell with the config's integrator."""
    rule = stop_rule(config)
    if config.integrator == "reduced":
        initial = initial_conditions(config, cell)
        return initial, integrate(ReducedState(initial.eps0, initial.lam0), cell.eta, cell.phi, rule)
    starts: list[InitialConditions] = []
    parts: list[TrajectoryResults] = []
    for block in initial_blocks(config, cell):
        state = FullState(block.a, block.b, cell.phi)
        eps0, lam0 = state.residual_and_scale()
        starts.append(InitialConditions(eps0=eps0, lam0=lam0, q0=state.q0))
        parts.append(integrate(state, cell.eta, cell.phi, rule))
    initial = InitialConditions(*(np.concatenate([getattr(s, k) for s in starts]) for k in ("eps0", "lam0", "q0")))
    return initial, concatenate(parts)


def cell_table(cell: Cell, initial: InitialConditions, results: TrajectoryResults) -> pa.Table:
    """The per-trajectory table of DESIGN.md for one simulated cell."""
    n = initial.eps0.shape[0]

    def constant(value: object) -> list[object]:
        return [value] * n

    columns = {
        "cell_id": constant(cell.cell_id),
        "trajectory": np.arange(n, dtype=np.int64),
        "eta": np.full(n, cell.eta),
        "lambda0": np.full(n, cell.lambda0),
        "phi": np.full(n, cell.phi),
        "d": np.full(n, cell.d, dtype=np.int64),
        "init": constant(cell.init),
        "eta_lambda0": np.full(n, cell.eta * cell.lambda0 if cell.eta_lambda0 is None else cell.eta_lambda0),
        "eps0": initial.eps0,
        "lambda_init": initial.lam0,
        "q0": initial.q0,
        "sharpness0": sharpness(initial.eps0, initial.lam0, cell.phi),
        "status": STATUS_LABELS[results.status],
        "steps": results.steps,
        "eps_T": results.eps_T,
        "lambda_T": results.lambda_T,
        "sharpness_T": results.sharpness_T,
        "q_ratio": results.q_ratio,
        "log_q_ratio": results.log_q_ratio,
        "lambda_gf": gradient_flow_sharpness(initial.eps0, initial.lam0, cell.phi),
        "sum_eps2": results.sum_eps2,
        "max_eta_sharpness": results.max_eta_sharpness,
        "eos_steps": results.eos_steps,
        "max_abs_eps": results.max_abs_eps,
    }
    return pa.Table.from_pydict(columns, schema=TRAJECTORY_SCHEMA)


def run_cell(config: SweepConfig, cell: Cell, threads: int | None = None) -> pa.Table:
    """Simulate one cell and return its per-trajectory table.

    ``threads`` is how many threads this cell may use (the sweep gives each
    worker process its share of the cores); the numpy integrators are single
    threaded and ignore it, a compiled kernel may not. Results never depend on it.
    """
    initial, results = simulate_cell(config, cell)
    return cell_table(cell, initial, results)
