"""Run grid cells: initializations in, one table row per trajectory out.

This is the seam between the numerical kernels (pure arrays) and the sweep
orchestration (files, progress); it knows the output columns (docs/columns.md).
A shard's cells are simulated together: their initial conditions are joined,
and the compiled kernel integrates all of them in one call with η and Φ given
per trajectory, so lanes refill across cell boundaries. A cell's rows do not
depend on which shard holds it, nor on the shard's size or the thread count.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import fields, replace
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from lin2net.dynamics.gd.reference import (
    FullState,
    ReducedState,
    Status,
    StopRule,
    TrajectoryResults,
    concatenate,
    integrate,
)
from lin2net.dynamics.initialization import InitialConditions, initial_blocks, shard_initial_conditions
from lin2net.store.shard_file import row_groups
from lin2net.sweep.config import SweepConfig
from lin2net.sweep.grid import Cell, grid_product
from lin2net.theory import theorems
from lin2net.theory.closed_forms import gradient_flow_sharpness, sharpness, sum_and_difference_norms

TRAJECTORY_SCHEMA = pa.schema(
    [
        ("cell_id", pa.dictionary(pa.int32(), pa.string())),
        ("trajectory", pa.int64()),
        ("eta", pa.float64()),
        ("lambda0", pa.float64()),
        ("phi", pa.float64()),
        ("d", pa.int64()),
        ("init", pa.dictionary(pa.int8(), pa.string())),
        ("eta_lambda0", pa.float64()),
        ("eps0", pa.float64()),
        ("lambda_init", pa.float64()),
        ("q0", pa.float64()),
        ("sharpness0", pa.float64()),
        ("status", pa.dictionary(pa.int8(), pa.string())),
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
        ("regime", pa.dictionary(pa.int8(), pa.string())),
    ]
)
# SGD cells (algorithm: sgd) add these columns after GD's (GD tables are unchanged).
# (lin2net.dynamics.sgd.reference.WINDOW_COLUMNS; not imported here, as lin2net.dynamics.sgd.reference imports numba).
SGD_RESULT_COLUMNS = (
    "loss_T",
    "q_ratio_window",
    "log_q_ratio_window",
    "sharpness_window",
    "loss_window",
    "lambda_window",
)
SGD_TRAJECTORY_SCHEMA = TRAJECTORY_SCHEMA.append(pa.field("batch_size", pa.int64()))
for _name in ("label_noise", *SGD_RESULT_COLUMNS):
    SGD_TRAJECTORY_SCHEMA = SGD_TRAJECTORY_SCHEMA.append(pa.field(_name, pa.float64()))
_Columns = TypeVar("_Columns", InitialConditions, TrajectoryResults)
STATUS_LABELS = pa.array([status.label for status in Status], type=pa.string())
REGIME_LABELS = pa.array(list(theorems.REGIMES), type=pa.string())


def stop_rule(config: SweepConfig) -> StopRule:
    return StopRule(config.loss_tol, config.max_steps, config.divergence_threshold)


def per_trajectory(cells: Sequence[Cell], trajectories: int, name: str, dtype: Any = np.float64) -> np.ndarray:
    """A cell parameter repeated for each of the cell's trajectories."""
    return np.repeat(np.array([getattr(cell, name) for cell in cells], dtype=dtype), trajectories)


def simulate_cells(
    config: SweepConfig, cells: Sequence[Cell], threads: int | None = None, cancel: Any = None
) -> tuple[InitialConditions, TrajectoryResults]:
    """Integrate every trajectory of ``cells`` with the config's integrator.

    ``threads`` and ``cancel`` (an int64 array of one element: nonzero stops
    the kernel, which raises) go to the compiled kernel; the NumPy
    integrators ignore them. Results do not depend on ``threads``.
    """
    if config.algorithm == "sgd":
        from lin2net.dynamics.sgd.cell import simulate_sgd_cells  # imports numba: only when used

        return simulate_sgd_cells(config, cells, threads)
    rule = stop_rule(config)
    n = config.trajectories
    if config.integrator == "compiled":
        from lin2net.dynamics.gd.kernel import integrate_compiled  # imports numba: only when used

        initial = shard_initial_conditions(config, cells)
        eta, phi = per_trajectory(cells, n, "eta"), per_trajectory(cells, n, "phi")
        results = integrate_compiled(
            initial.eps0, initial.lam0, eta, phi, rule, threads=threads, s0=initial.s0, p0=initial.p0, cancel=cancel
        )
        return initial, results
    if config.integrator == "reduced":
        initial = shard_initial_conditions(config, cells)
        eta, phi = per_trajectory(cells, n, "eta"), per_trajectory(cells, n, "phi")
        reduced = ReducedState(initial.eps0, initial.lam0, initial.s0, initial.p0)
        return initial, integrate(reduced, eta, phi, rule)
    starts: list[InitialConditions] = []
    parts: list[TrajectoryResults] = []
    for cell in cells:
        for block in initial_blocks(config, cell):
            state = FullState(block.a, block.b, cell.phi)
            eps0, lam0 = state.residual_and_scale()
            s0, p0 = sum_and_difference_norms(block.a, block.b)
            starts.append(InitialConditions(eps0=eps0, lam0=lam0, q0=state.q0, s0=s0, p0=p0))
            parts.append(integrate(state, cell.eta, cell.phi, rule))
    names = [f.name for f in fields(InitialConditions)]
    initial = InitialConditions(**{k: np.concatenate([getattr(s, k) for s in starts]) for k in names})
    return initial, concatenate(parts)


def simulate_cell(
    config: SweepConfig, cell: Cell, threads: int | None = None
) -> tuple[InitialConditions, TrajectoryResults]:
    """:func:`simulate_cells` for one cell."""
    return simulate_cells(config, [cell], threads)


def shard_tables(
    cells: Sequence[Cell], trajectories: int, initial: InitialConditions, results: TrajectoryResults
) -> Iterator[pa.Table]:
    """The cells' table in the row ranges of :func:`lin2net.store.shard_file.row_groups`
    (whole cells per range): only one range's derived columns are in memory."""
    ids = pa.array([cell.cell_id for cell in cells], type=pa.string())
    for start, stop in row_groups(len(cells), trajectories):
        yield _table(cells, ids, trajectories, start, stop, _slice(initial, start, stop), _slice(results, start, stop))


def _slice(arrays: _Columns, start: int, stop: int) -> _Columns:
    """The same dataclass of per-trajectory arrays, restricted to rows start…stop−1 (views)."""
    return replace(arrays, **{f.name: getattr(arrays, f.name)[start:stop] for f in fields(arrays)})


def _dictionary(indices: np.ndarray, labels: pa.Array, index_type: pa.DataType) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(indices, type=index_type), labels)


def _table(
    cells: Sequence[Cell],
    ids: pa.Array,
    trajectories: int,
    start: int,
    stop: int,
    initial: InitialConditions,
    results: TrajectoryResults,
) -> pa.Table:
    """Rows ``start`` … ``stop − 1`` of the cells' per-trajectory table (docs/columns.md)."""
    rows = np.arange(start, stop, dtype=np.int64)
    which = rows // max(1, trajectories)  # index of each row's cell
    sgd = cells[0].batch_size is not None
    schema = SGD_TRAJECTORY_SCHEMA if sgd else TRAJECTORY_SCHEMA

    def parameter(name: str, dtype: Any = np.float64) -> np.ndarray:
        return np.array([getattr(cell, name) for cell in cells], dtype=dtype)[which]

    eta, phi = parameter("eta"), parameter("phi")
    lambda0 = parameter("lambda0")
    eta_lambda0 = np.array(
        [grid_product(cell.eta, cell.lambda0) if cell.eta_lambda0 is None else cell.eta_lambda0 for cell in cells]
    )[which]
    inits = pa.array(sorted({cell.init for cell in cells}), type=pa.string())
    init_index = {label: i for i, label in enumerate(inits.to_pylist())}
    linear = theorems.thm1_regime(eta, initial.eps0, initial.lam0, phi)
    slow = theorems.slow_regime(eta, initial.eps0, initial.lam0, phi)
    columns = {
        "cell_id": _dictionary(which.astype(np.int32), ids, pa.int32()),
        "trajectory": rows - which * trajectories,
        "eta": eta,
        "lambda0": lambda0,
        "phi": phi,
        "d": parameter("d", np.int64),
        "init": _dictionary(np.array([init_index[c.init] for c in cells], dtype=np.int8)[which], inits, pa.int8()),
        "eta_lambda0": eta_lambda0,
        "eps0": initial.eps0,
        "lambda_init": initial.lam0,
        "q0": initial.q0,
        "sharpness0": sharpness(initial.eps0, initial.lam0, phi),
        "status": _dictionary(results.status, STATUS_LABELS, pa.int8()),
        "steps": results.steps,
        "eps_T": results.eps_T,
        "lambda_T": results.lambda_T,
        "sharpness_T": results.sharpness_T,
        "q_ratio": results.q_ratio,
        "log_q_ratio": results.log_q_ratio,
        "lambda_gf": gradient_flow_sharpness(initial.eps0, initial.lam0, phi, initial.s0, initial.p0),
        "sum_eps2": results.sum_eps2,
        "max_eta_sharpness": results.max_eta_sharpness,
        "eos_steps": results.eos_steps,
        "max_abs_eps": results.max_abs_eps,
        "thm1_regime": linear,
        "thm1_lower": theorems.thm1_lower(eta, initial.eps0, phi),
        "thm1_upper": theorems.thm1_upper(eta, results.sum_eps2),
        "regime": _dictionary(np.where(linear, 0, np.where(slow, 1, 2)).astype(np.int8), REGIME_LABELS, pa.int8()),
    }
    if sgd:
        columns["batch_size"] = parameter("batch_size", np.int64)
        columns["label_noise"] = parameter("label_noise")
        for name in SGD_RESULT_COLUMNS:
            columns[name] = getattr(results, name)
    return pa.Table.from_pydict(columns, schema=schema)


def cell_table(cell: Cell, initial: InitialConditions, results: TrajectoryResults) -> pa.Table:
    """One simulated cell's per-trajectory table."""
    n = initial.eps0.shape[0]
    return pa.concat_tables(list(shard_tables([cell], n, initial, results)))


def run_cell(config: SweepConfig, cell: Cell, threads: int | None = None) -> pa.Table:
    """Simulate one cell and return its per-trajectory table (results never
    depend on ``threads``)."""
    initial, results = simulate_cell(config, cell, threads)
    return cell_table(cell, initial, results)
