"""Run grid cells of any dynamics: initializations in, one table row per trajectory out.

This is the seam between the dynamics (pure arrays; each registered in
:mod:`lin2net.dynamics.registry` with its ``simulate``) and the sweep
orchestration (files, progress); it knows the output columns (docs/columns.md):
the common ones, then the dynamics' axes and result columns. A shard's cells
are simulated together by the dynamics' ``simulate`` (one kernel call with
per-trajectory parameters, so lanes refill across cell boundaries). A cell's
rows do not depend on which shard holds it, nor on the shard's size or the
thread count.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import fields, replace
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from lin2net.dynamics import registry
from lin2net.dynamics.driver import TrajectoryResults
from lin2net.dynamics.initialization import InitialConditions
from lin2net.dynamics.protocol import Status
from lin2net.store.shard_file import row_groups
from lin2net.sweep.config import SweepConfig
from lin2net.sweep.grid import Cell, grid_product
from lin2net.theory import theorems
from lin2net.theory.closed_forms import gradient_flow_sharpness, sharpness

# The columns every dynamics' rows begin with (docs/columns.md): the cell and
# trajectory, the grid point and the start ...
_HEAD = [
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
]
# ... and the rest of the start, then the end of the run and its summaries.
_TAIL = [
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
]

TRAJECTORY_SCHEMA = pa.schema(
    [
        *_HEAD,
        *_TAIL,
        ("thm1_regime", pa.bool_()),
        ("thm1_lower", pa.float64()),
        ("thm1_upper", pa.float64()),
        ("regime", pa.dictionary(pa.int8(), pa.string())),
    ]
)
"""The common columns of the shallow model's rows (GD, SGD and the like), with Theorem 1–2's."""

FAMILY_SCHEMA = pa.schema([*_HEAD, ("loss0", pa.float64()), *_TAIL])
"""The common columns of a model family's rows (docs/columns.md, "Model families"):
its loss at the start (loss0), and no Theorem 1–2 columns (they are the shallow
model's); ε is the family's residual."""


def trajectory_schema(algorithm: str) -> pa.Schema:
    """The row schema of a dynamics' sweeps: the common columns (a model family's
    own, :data:`FAMILY_SCHEMA`), then its axes, then its result columns (the
    registry's fragment; GD adds none)."""
    entry = registry.get(algorithm)
    schema = FAMILY_SCHEMA if registry.is_family(algorithm) else TRAJECTORY_SCHEMA
    for axis in entry.axes:
        schema = schema.append(pa.field(axis.name, pa.int64() if axis.dtype is int else pa.float64()))
    for name, alias in entry.result_columns:
        schema = schema.append(pa.field(name, pa.type_for_alias(alias)))
    return schema


_Columns = TypeVar("_Columns", InitialConditions, TrajectoryResults)
STATUS_LABELS = pa.array([status.label for status in Status], type=pa.string())
REGIME_LABELS = pa.array(list(theorems.REGIMES), type=pa.string())


def simulate_cells(
    config: SweepConfig,
    cells: Sequence[Cell],
    threads: int | None = None,
    cancel: Any = None,
    part: tuple[int, int] | None = None,
) -> tuple[InitialConditions, TrajectoryResults]:
    """Integrate every trajectory of ``cells`` with the config's dynamics and integrator.

    ``threads`` and ``cancel`` (an int64 array of one element: nonzero stops
    the kernel, which raises) go to the compiled kernels; the NumPy
    integrators ignore them. Results do not depend on ``threads``.
    ``part = (first, stop)``: of one cell, only trajectories first … stop − 1
    (a cell larger than a shard runs in parts; its rows are the same).
    """
    simulate = registry.get(config.algorithm).function("simulate")
    initial, results = simulate(config, cells, threads, cancel, part=part)
    return initial, results


def simulate_cell(
    config: SweepConfig, cell: Cell, threads: int | None = None
) -> tuple[InitialConditions, TrajectoryResults]:
    """:func:`simulate_cells` for one cell."""
    return simulate_cells(config, [cell], threads)


def shard_tables(
    cells: Sequence[Cell],
    trajectories: int,
    initial: InitialConditions,
    results: TrajectoryResults,
    first: int = 0,
) -> Iterator[pa.Table]:
    """The cells' table in the row ranges of :func:`lin2net.store.shard_file.row_groups`
    (whole cells per range): only one range's derived columns are in memory.
    ``first``: the rows are a part of one cell, from its trajectory ``first``."""
    ids = pa.array([cell.cell_id for cell in cells], type=pa.string())
    for start, stop in row_groups(len(cells), trajectories):
        initial_rows, result_rows = _slice(initial, start, stop), _slice(results, start, stop)
        yield _table(cells, ids, trajectories, start, stop, initial_rows, result_rows, first)


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
    first: int = 0,
) -> pa.Table:
    """Rows ``start`` … ``stop − 1`` of the cells' per-trajectory table (docs/columns.md):
    the columns every dynamics has, then the shallow model's or a model family's own
    (``initial`` is then a :class:`lin2net.dynamics.family_cells.FamilyStart`), then
    the dynamics' axes and result columns; the schema puts them in order."""
    rows = np.arange(start, stop, dtype=np.int64)
    which = rows // max(1, trajectories)  # index of each row's cell
    entry = registry.get(cells[0].algorithm)

    def parameter(name: str, dtype: Any = np.float64) -> np.ndarray:
        values: np.ndarray = np.array([getattr(cell, name) for cell in cells], dtype=dtype)[which]
        return values

    eta_lambda0 = np.array(
        [grid_product(cell.eta, cell.lambda0) if cell.eta_lambda0 is None else cell.eta_lambda0 for cell in cells]
    )[which]
    inits = pa.array(sorted({cell.init for cell in cells}), type=pa.string())
    init_index = {label: i for i, label in enumerate(inits.to_pylist())}
    columns: dict[str, Any] = {
        "cell_id": _dictionary(which.astype(np.int32), ids, pa.int32()),
        "trajectory": rows - which * trajectories + first,
        "eta": parameter("eta"),
        "lambda0": parameter("lambda0"),
        "phi": parameter("phi"),
        "d": parameter("d", np.int64),
        "init": _dictionary(np.array([init_index[c.init] for c in cells], dtype=np.int8)[which], inits, pa.int8()),
        "eta_lambda0": eta_lambda0,
        "eps0": initial.eps0,
        "q0": initial.q0,
        "status": _dictionary(results.status, STATUS_LABELS, pa.int8()),
        "steps": results.steps,
        "eps_T": results.eps_T,
        "lambda_T": results.lambda_T,
        "sharpness_T": results.sharpness_T,
        "q_ratio": results.q_ratio,
        "log_q_ratio": results.log_q_ratio,
        "sum_eps2": results.sum_eps2,
        "max_eta_sharpness": results.max_eta_sharpness,
        "eos_steps": results.eos_steps,
        "max_abs_eps": results.max_abs_eps,
    }
    if registry.is_family(entry.name):
        columns.update(_family_columns(initial))
    else:
        columns.update(_shallow_columns(columns["eta"], columns["phi"], initial, results))
    for axis in entry.axes:
        columns[axis.name] = np.array([cell.value(axis.name) for cell in cells], dtype=axis.dtype)[which]
    for name, _ in entry.result_columns:
        columns[name] = getattr(results, name)
    return pa.Table.from_pydict(columns, schema=trajectory_schema(entry.name))


def _shallow_columns(
    eta: np.ndarray, phi: np.ndarray, initial: InitialConditions, results: TrajectoryResults
) -> dict[str, Any]:
    """The shallow model's own columns: its closed forms at the start, Theorem 1–2's."""
    linear = theorems.thm1_regime(eta, initial.eps0, initial.lam0, phi)
    slow = theorems.slow_regime(eta, initial.eps0, initial.lam0, phi)
    return {
        "lambda_init": initial.lam0,
        "sharpness0": sharpness(initial.eps0, initial.lam0, phi),
        "lambda_gf": gradient_flow_sharpness(initial.eps0, initial.lam0, phi, initial.s0, initial.p0),
        "thm1_regime": linear,
        "thm1_lower": theorems.thm1_lower(eta, initial.eps0, phi),
        "thm1_upper": theorems.thm1_upper(eta, results.sum_eps2),
        "regime": _dictionary(np.where(linear, 0, np.where(slow, 1, 2)).astype(np.int8), REGIME_LABELS, pa.int8()),
    }


def _family_columns(initial: Any) -> dict[str, Any]:
    """A model family's own columns (:data:`FAMILY_SCHEMA`), all measured by its model at the start."""
    return {
        "lambda_init": initial.lambda_init,
        "loss0": initial.loss0,
        "sharpness0": initial.sharpness0,
        "lambda_gf": initial.lambda_gf,
    }


def cell_table(cell: Cell, initial: Any, results: TrajectoryResults) -> pa.Table:
    """One simulated cell's per-trajectory table."""
    n = initial.eps0.shape[0]
    return pa.concat_tables(list(shard_tables([cell], n, initial, results)))


def run_cell(config: SweepConfig, cell: Cell, threads: int | None = None) -> pa.Table:
    """Simulate one cell and return its per-trajectory table (results never
    depend on ``threads``)."""
    initial, results = simulate_cell(config, cell, threads)
    return cell_table(cell, initial, results)
