"""Run one grid cell: initializations in, one table row per trajectory out.

This is the seam between the numerical kernels (pure arrays) and the sweep
orchestration (files, progress); it knows the output columns of DESIGN.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, replace
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lin2net import theory
from lin2net.closed_forms import gradient_flow_sharpness, sharpness, sum_and_difference_norms
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
        ("thm1_regime", pa.bool_()),
        ("thm1_lower", pa.float64()),
        ("thm1_upper", pa.float64()),
        ("regime", pa.string()),
    ]
)
TABLE_ROWS = 1 << 15  # trajectories per slice of a cell's table (and per Parquet row group)
CONSTANT_CHUNK = 1 << 16  # rows per chunk of a constant column (shared, so stored once)
_Columns = TypeVar("_Columns", InitialConditions, TrajectoryResults)
STATUS_LABELS = pa.array([status.label for status in Status], type=pa.string())


def stop_rule(config: SweepConfig) -> StopRule:
    return StopRule(config.loss_tol, config.max_steps, config.divergence_threshold)


def simulate_cell(
    config: SweepConfig, cell: Cell, threads: int | None = None
) -> tuple[InitialConditions, TrajectoryResults]:
    """Integrate every trajectory of the cell with the config's integrator.

    ``threads`` is passed to the compiled kernel (default: all cores); the
    NumPy integrators ignore it. Results do not depend on it.
    """
    rule = stop_rule(config)
    if config.integrator == "compiled":
        from lin2net.compiled import integrate_compiled  # imports numba: only when used

        initial = initial_conditions(config, cell)
        results = integrate_compiled(
            initial.eps0, initial.lam0, cell.eta, cell.phi, rule, threads=threads, s0=initial.s0, p0=initial.p0
        )
        return initial, results
    if config.integrator == "reduced":
        initial = initial_conditions(config, cell)
        reduced = ReducedState(initial.eps0, initial.lam0, initial.s0, initial.p0)
        return initial, integrate(reduced, cell.eta, cell.phi, rule)
    starts: list[InitialConditions] = []
    parts: list[TrajectoryResults] = []
    for block in initial_blocks(config, cell):
        state = FullState(block.a, block.b, cell.phi)
        eps0, lam0 = state.residual_and_scale()
        s0, p0 = sum_and_difference_norms(block.a, block.b)
        starts.append(InitialConditions(eps0=eps0, lam0=lam0, q0=state.q0, s0=s0, p0=p0))
        parts.append(integrate(state, cell.eta, cell.phi, rule))
    initial = InitialConditions(
        **{f.name: np.concatenate([getattr(s, f.name) for s in starts]) for f in fields(starts[0])}
    )
    return initial, concatenate(parts)


def cell_tables(
    cell: Cell, initial: InitialConditions, results: TrajectoryResults, rows: int = TABLE_ROWS
) -> Iterator[pa.Table]:
    """The cell's table in consecutive slices of at most ``rows`` trajectories.

    Writing slice by slice keeps only one slice's derived columns in memory
    (a cell of 10⁶ trajectories would otherwise hold ~220 MB of table).
    """
    n = initial.eps0.shape[0]
    for start in range(0, max(n, 1), rows):
        stop = min(n, start + rows)
        yield cell_table(cell, _slice(initial, start, stop), _slice(results, start, stop), first=start)


def _slice(arrays: _Columns, start: int, stop: int) -> _Columns:
    """The same dataclass of per-trajectory arrays, restricted to rows start…stop−1 (views)."""
    return replace(arrays, **{f.name: getattr(arrays, f.name)[start:stop] for f in fields(arrays)})


def cell_table(cell: Cell, initial: InitialConditions, results: TrajectoryResults, first: int = 0) -> pa.Table:
    """The per-trajectory table of DESIGN.md for one simulated cell (or for the
    slice of it that starts at trajectory ``first``).

    Built in Arrow so that memory stays near the size of the varying columns:
    a per-cell constant is one block of ``CONSTANT_CHUNK`` repeated values
    referenced by every chunk of its column, and ``status`` is a take from
    the three labels (no Python lists, no fixed-width NumPy strings).
    """
    n = initial.eps0.shape[0]

    def constant(value: object, name: str) -> pa.ChunkedArray:
        block = pa.repeat(pa.scalar(value, type=TRAJECTORY_SCHEMA.field(name).type), min(n, CONSTANT_CHUNK))
        full, rest = divmod(n, CONSTANT_CHUNK)
        return pa.chunked_array([block] * full + ([block.slice(0, rest)] if rest else []), type=block.type)

    eta_lambda0 = cell.eta * cell.lambda0 if cell.eta_lambda0 is None else cell.eta_lambda0
    columns = {
        "cell_id": constant(cell.cell_id, "cell_id"),
        "trajectory": np.arange(first, first + n, dtype=np.int64),
        "eta": constant(cell.eta, "eta"),
        "lambda0": constant(cell.lambda0, "lambda0"),
        "phi": constant(cell.phi, "phi"),
        "d": constant(cell.d, "d"),
        "init": constant(cell.init, "init"),
        "eta_lambda0": constant(eta_lambda0, "eta_lambda0"),
        "eps0": initial.eps0,
        "lambda_init": initial.lam0,
        "q0": initial.q0,
        "sharpness0": sharpness(initial.eps0, initial.lam0, cell.phi),
        "status": pc.take(STATUS_LABELS, pa.array(results.status)),
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
        "thm1_regime": theory.thm1_regime(cell.eta, initial.eps0, initial.lam0, cell.phi),
        "thm1_lower": theory.thm1_lower(cell.eta, initial.eps0, cell.phi),
        "thm1_upper": theory.thm1_upper(cell.eta, results.sum_eps2),
        "regime": theory.regime(cell.eta, initial.eps0, initial.lam0, cell.phi),
    }
    return pa.Table.from_pydict(columns, schema=TRAJECTORY_SCHEMA)


def run_cell(config: SweepConfig, cell: Cell, threads: int | None = None) -> pa.Table:
    """Simulate one cell and return its per-trajectory table.

    ``threads`` is how many threads this cell may use (the sweep gives each
    worker process its share of the cores); only the compiled kernel uses it,
    and results never depend on it.
    """
    initial, results = simulate_cell(config, cell, threads)
    return pa.concat_tables(cell_tables(cell, initial, results))
