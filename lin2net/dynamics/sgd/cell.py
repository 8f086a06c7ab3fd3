"""One SGD grid cell: the config's data set, initializations and keys in, results out.

The seam between :mod:`lin2net.dynamics.gd.cell` (tables, files) and the SGD integrators:
the initial points are GD's (same stream, same ε0, λ0, Q0, S0, P0), the data set is
built once per (data spec, seed) and the counter-RNG key of trajectory r is
``counter_rng.trajectory_keys(seed, r)``, so a row can be re-simulated alone
with :func:`trace_sgd_cell`. SGD's ``simulate`` and ``trace`` of the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np

from lin2net.dynamics.gd.reference import FullState, ReducedState, residual_and_scale, start_vectors
from lin2net.dynamics.initialization import InitialConditions, block_rows, initial_blocks, initial_conditions
from lin2net.dynamics.protocol import Status, StopRule
from lin2net.dynamics.sgd.data import DataSet, DataSpec, build_data
from lin2net.dynamics.sgd.reference import SGDParameters, SGDResults, integrate_sgd, trace_sgd
from lin2net.kernels.counter_rng import trajectory_keys
from lin2net.sweep.config import SweepConfig
from lin2net.sweep.grid import Cell
from lin2net.theory.closed_forms import sum_and_difference_norms


@lru_cache(maxsize=8)
def cached_data(spec: DataSpec, seed: int) -> DataSet:
    """The sweep's data set (the same for every cell; built once per process)."""
    return build_data(spec, seed)


def cell_parameters(config: SweepConfig, cell: Cell, start: int, stop: int) -> SGDParameters:
    """Per-trajectory parameters of trajectories start…stop−1 of an SGD cell."""
    keys = trajectory_keys(config.seed, np.arange(start, stop, dtype=np.int64))
    batch_size, label_noise = int(cell.value("batch_size")), float(cell.value("label_noise"))
    return SGDParameters.broadcast(stop - start, cell.eta, cell.phi, batch_size, label_noise, keys)


def _rule(config: SweepConfig) -> StopRule:
    return StopRule(config.loss_tol, config.max_steps, config.divergence_threshold)


def simulate_sgd_cell(
    config: SweepConfig,
    cell: Cell,
    threads: int | None = None,
    cancel: Any = None,
    part: tuple[int, int] | None = None,
) -> tuple[InitialConditions, SGDResults]:
    """Integrate every trajectory of an SGD cell with the config's integrator
    (compiled kernel, NumPy reduced reference, or full vectors); with
    ``part = (first, stop)`` only trajectories first … stop − 1 (same rows)."""
    assert config.data is not None, "simulate_sgd_cell needs algorithm: sgd"
    data = cached_data(config.data, config.seed)
    rule = _rule(config)
    first, stop = part if part is not None else (0, config.trajectories)
    if config.integrator == "full":
        starts: list[InitialConditions] = []
        parts: list[SGDResults] = []
        for block in initial_blocks(config, cell, first, stop):
            n = block.a.shape[0]
            params = cell_parameters(config, cell, block.start, block.start + n)
            state = start_vectors(FullState(block.a, block.b))
            assert state.q0 is not None
            eps0, lam0 = residual_and_scale(state, params.phi)
            s0, p0 = sum_and_difference_norms(block.a, block.b)
            rows = block_rows(block, first, stop)  # a whole block is integrated, then cut
            start = InitialConditions(eps0=eps0, lam0=lam0, q0=state.q0, s0=s0, p0=p0)
            starts.append(_rows(start, rows))
            parts.append(_rows(integrate_sgd(state, params, data, config.sampling, rule, config.window), rows))
        initial = _join_initial(starts)
        names = SGDResults.__dataclass_fields__
        return initial, SGDResults(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in names})
    initial = initial_conditions(config, cell, first, stop)
    params = cell_parameters(config, cell, first, stop)
    return initial, _integrate_reduced(config, initial, params, data, threads, cancel)


def _integrate_reduced(
    config: SweepConfig,
    initial: InitialConditions,
    params: SGDParameters,
    data: DataSet,
    threads: int | None,
    cancel: Any = None,
) -> SGDResults:
    """The reduced map from ``initial`` with per-trajectory ``params``: the
    compiled kernel or the NumPy reference, as the config says."""
    rule = _rule(config)
    if config.integrator == "compiled":
        from lin2net.dynamics.sgd.kernel import integrate_sgd_compiled  # imports numba: only when used

        return integrate_sgd_compiled(
            initial.eps0,
            initial.lam0,
            params,
            data,
            config.sampling,
            rule,
            config.window,
            threads=threads,
            s0=initial.s0,
            p0=initial.p0,
            cancel=cancel,
        )
    reduced = ReducedState(initial.eps0, initial.lam0, initial.s0, initial.p0)
    return integrate_sgd(reduced, params, data, config.sampling, rule, config.window)


def simulate_sgd_cells(
    config: SweepConfig,
    cells: Sequence[Cell],
    threads: int | None = None,
    cancel: Any = None,
    part: tuple[int, int] | None = None,
) -> tuple[InitialConditions, SGDResults]:
    """Every trajectory of ``cells`` (a shard): one kernel call with per-trajectory
    parameters for the compiled and reduced integrators; a cell's rows are those
    of :func:`simulate_sgd_cell` (``part``: trajectories first … stop − 1 of one cell)."""
    if part is not None:
        (cell,) = cells
        return simulate_sgd_cell(config, cell, threads, cancel, part)
    if config.integrator == "full" or len(cells) == 1:
        parts = [simulate_sgd_cell(config, cell, threads, cancel) for cell in cells]
        return _join_initial([p[0] for p in parts]), _join_results([p[1] for p in parts])
    assert config.data is not None, "simulate_sgd_cells needs algorithm: sgd"
    data = cached_data(config.data, config.seed)
    initial = _join_initial([initial_conditions(config, cell) for cell in cells])
    n = config.trajectories
    params = _join_parameters([cell_parameters(config, cell, 0, n) for cell in cells])
    return initial, _integrate_reduced(config, initial, params, data, threads, cancel)


_Rows = TypeVar("_Rows", InitialConditions, SGDResults)


def _rows(arrays: _Rows, rows: slice) -> _Rows:
    """The same per-trajectory arrays, only ``rows``."""
    return replace(arrays, **{f.name: getattr(arrays, f.name)[rows] for f in fields(arrays)})


def _join_initial(parts: Sequence[InitialConditions]) -> InitialConditions:
    names = [f.name for f in fields(InitialConditions)]
    return InitialConditions(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in names})


def _join_results(parts: Sequence[SGDResults]) -> SGDResults:
    names = [f.name for f in fields(SGDResults)]
    return SGDResults(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in names})


def _join_parameters(parts: Sequence[SGDParameters]) -> SGDParameters:
    return SGDParameters(*(np.concatenate(leaves) for leaves in zip(*parts, strict=True)))


def trace_sgd_cell(config: SweepConfig, cell: Cell, trajectory: int, rule: StopRule) -> tuple[dict[str, Any], Status]:
    """Trajectory ``trajectory`` of an SGD cell step by step, on the sweep's own batches
    and noise (the driver's every-step mode): per-state columns (with the step's
    batch moments ``s``, ``r`` and gradient factor ``g``) and how it ended."""
    assert config.data is not None, "trace_sgd_cell needs algorithm: sgd"
    initial = initial_conditions(config, cell)
    params = cell_parameters(config, cell, trajectory, trajectory + 1)
    data = cached_data(config.data, config.seed)
    k = slice(trajectory, trajectory + 1)
    state = ReducedState(initial.eps0[k], initial.lam0[k], initial.s0[k], initial.p0[k])
    history, status = trace_sgd(state, params, data, config.sampling, rule, config.window)
    return history.trajectory(0), status
