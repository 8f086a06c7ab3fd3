"""Initial points (a, b) for a cell, generated in fixed-size blocks.

``sphere``: (a, b) uniform in direction on ‖a‖² + ‖b‖² = λ0 in R^{2d};
``gaussian``: i.i.d. N(0, λ0/(2d)) entries (so E‖a‖² + ‖b‖² = λ0);
``explicit``: the one given point.

Blocks hold at most ``BLOCK_FLOATS`` numbers, so memory stays bounded for any
d × trajectories, and block k always comes from the same random stream: the
first n initializations are the same whatever the total count.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from lin2net.sweep.config import SweepConfig
from lin2net.sweep.grid import Cell, initialization_rng
from lin2net.theory.closed_forms import FloatArray, imbalance, reduced_coordinates, sum_and_difference_norms

BLOCK_FLOATS = 1 << 20  # 8 MiB of float64 per block of (a, b)


@dataclass
class InitialBlock:
    """Initializations ``start`` … ``start + n − 1`` of a cell, vectors of shape (n, d)."""

    start: int
    a: FloatArray
    b: FloatArray


@dataclass
class InitialConditions:
    """What the reduced map needs, per trajectory, shape (n,): residual ε0, scale
    λ0, imbalance Q0, and S0 = ‖a + b‖², P0 = ‖a − b‖² measured from the vectors
    (the state the integrators carry; exact even for a start near a = ±b)."""

    eps0: FloatArray
    lam0: FloatArray
    q0: FloatArray
    s0: FloatArray
    p0: FloatArray


def block_size(d: int) -> int:
    """Trajectories per block for width d (depends on d only, never on the machine)."""
    return max(1, BLOCK_FLOATS // (2 * d))


def initial_blocks(config: SweepConfig, cell: Cell, first: int = 0, stop: int | None = None) -> Iterator[InitialBlock]:
    """Yield the cell's initializations block by block, in trajectory order
    (only the whole blocks that hold some of trajectories ``first`` …
    ``stop − 1``; the others are not drawn: see :func:`block_rows`)."""
    stop = config.trajectories if stop is None else stop
    if config.explicit is not None:
        a = np.asarray(config.explicit.a, dtype=np.float64)[None, :]
        b = np.asarray(config.explicit.b, dtype=np.float64)[None, :]
        yield InitialBlock(0, a, b)
        return
    d = cell.d
    for start, z in scaled_draws(config.seed, config.init, d, 2 * d, cell.lambda0, config.trajectories, first, stop):
        yield InitialBlock(start, z[:, :d], z[:, d:])


def scaled_draws(
    seed: int, init: str, d: int, size: int, lambda0: float, trajectories: int, first: int = 0, stop: int | None = None
) -> Iterator[tuple[int, FloatArray]]:
    """(start, z of shape (n, size)) block by block, in trajectory order: random starts
    in R^size of width d, ``sphere`` uniform on ‖z‖² = λ0, ``gaussian`` i.i.d.
    N(0, λ0/size) entries. Blocks hold BLOCK_FLOATS numbers (the shallow model's
    :func:`block_size` at size = 2d), block k from stream k of
    :func:`lin2net.sweep.grid.initialization_rng`; only the whole blocks that hold
    some of trajectories ``first`` … ``stop − 1`` are drawn."""
    stop = trajectories if stop is None else stop
    per_block = max(1, BLOCK_FLOATS // size)
    for block, start in enumerate(range(0, trajectories, per_block)):
        n = min(per_block, trajectories - start)
        if start + n <= first or start >= stop:
            continue
        z = initialization_rng(seed, init, d, block, size).standard_normal((n, size))
        if init == "sphere":
            z *= np.sqrt(lambda0) / np.linalg.norm(z, axis=1, keepdims=True)
        else:
            z *= np.sqrt(lambda0 / size)
        yield start, z


def block_rows(block: InitialBlock, first: int, stop: int) -> slice:
    """The rows of ``block`` that are trajectories ``first`` … ``stop − 1``. A
    block is computed whole and cut afterwards: NumPy's reductions round
    differently on a shorter array, and a cell's rows must not depend on
    the part that computes them."""
    n = block.a.shape[0]
    return slice(max(first, block.start) - block.start, min(stop, block.start + n) - block.start)


@dataclass(frozen=True)
class _Directions:
    """Per trajectory, for the raw draws z = (za, zb) of a (seed, init, d)
    stream scaled to unit length (sphere) or left as drawn (gaussian): the
    invariants every cell of that width rescales, shape (n,) each."""

    dot: FloatArray  # za·zb
    norm2: FloatArray  # ‖za‖² + ‖zb‖²
    imbalance: FloatArray  # Σ_i |za_i² − zb_i²|
    s: FloatArray  # ‖za + zb‖²
    p: FloatArray  # ‖za − zb‖²


@lru_cache(maxsize=4)
def _directions(
    seed: int, init: str, d: int, trajectories: int, first: int = 0, stop: int | None = None
) -> _Directions:
    """The invariants of the draws of width ``d`` of a cell of ``trajectories``
    (only draws ``first`` … ``stop − 1`` if given: a part of a large cell).

    Cells that differ only in λ0 or Φ (or η) share their draws (common random
    numbers), so a shard computes these once per width, not once per cell: a
    cell then costs O(n), not O(n·d), and no random numbers."""
    parts = []
    stop = trajectories if stop is None else stop
    for block, start in enumerate(range(0, trajectories, block_size(d))):
        n = min(block_size(d), trajectories - start)
        if start + n <= first or start >= stop:  # outside the range asked for (a part of a large cell)
            continue
        z = initialization_rng(seed, init, d, block).standard_normal((n, 2 * d))
        if init == "sphere":
            z /= np.linalg.norm(z, axis=1, keepdims=True)
        a, b = z[:, :d], z[:, d:]
        s, p = sum_and_difference_norms(a, b)
        norm2 = np.ones(n) if init == "sphere" else np.einsum("nd,nd->n", z, z)
        cut = slice(max(first, start) - start, min(stop, start + n) - start)  # whole block, then cut (block_rows)
        parts.append(tuple(v[cut] for v in (np.einsum("nd,nd->n", a, b), norm2, imbalance(a, b), s, p)))
    columns = [np.concatenate(column) for column in zip(*parts, strict=True)]
    for column in columns:
        column.flags.writeable = False  # shared by every cell of this width
    return _Directions(*columns)


def initial_conditions(config: SweepConfig, cell: Cell, first: int = 0, stop: int | None = None) -> InitialConditions:
    """(ε0, λ0, Q0, S0, P0) of every trajectory of the cell, without keeping the vectors.

    A random start is its width's shared direction (see :func:`_directions`)
    scaled by k = λ0 (sphere: ‖a‖² + ‖b‖² = λ0 exactly) or k = λ0/(2d)
    (gaussian): every quadratic quantity is k times the direction's, one
    rounding each, and ε0 = k·(za·zb) − Φ."""
    if config.explicit is not None:
        (block,) = initial_blocks(config, cell)
        eps0, lam0, q0 = reduced_coordinates(block.a, block.b, cell.phi)
        s0, p0 = sum_and_difference_norms(block.a, block.b)
        return InitialConditions(eps0=eps0, lam0=lam0, q0=q0, s0=s0, p0=p0)
    unit = _directions(config.seed, config.init, cell.d, config.trajectories, first, stop)
    scale = cell.lambda0 if config.init == "sphere" else cell.lambda0 / (2 * cell.d)
    lam0 = np.full(unit.dot.shape, cell.lambda0) if config.init == "sphere" else scale * unit.norm2
    return InitialConditions(
        eps0=scale * unit.dot - cell.phi,
        lam0=lam0,
        q0=scale * unit.imbalance,
        s0=scale * unit.s,
        p0=scale * unit.p,
    )


def shard_initial_conditions(config: SweepConfig, cells: Sequence[Cell]) -> InitialConditions:
    """:func:`initial_conditions` of ``cells``, one after another: the same
    numbers (the same operations, broadcast over the cells that share a width),
    without a Python loop per cell."""
    if config.explicit is not None or not cells:
        parts = [initial_conditions(config, cell) for cell in cells]
        names = [f.name for f in fields(InitialConditions)]
        return InitialConditions(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in names})
    groups: list[InitialConditions] = []
    start = 0
    while start < len(cells):
        stop = start
        while stop < len(cells) and cells[stop].d == cells[start].d:
            stop += 1
        run = cells[start:stop]
        unit = _directions(config.seed, config.init, run[0].d, config.trajectories)
        lambda0 = np.array([cell.lambda0 for cell in run])[:, None]
        phi = np.array([cell.phi for cell in run])[:, None]
        scale = lambda0 if config.init == "sphere" else lambda0 / (2 * run[0].d)
        n = unit.dot.shape[0]
        lam0 = np.repeat(lambda0, n, axis=1) if config.init == "sphere" else scale * unit.norm2
        groups.append(
            InitialConditions(
                eps0=(scale * unit.dot - phi).ravel(),
                lam0=lam0.ravel(),
                q0=(scale * unit.imbalance).ravel(),
                s0=(scale * unit.s).ravel(),
                p0=(scale * unit.p).ravel(),
            )
        )
        start = stop
    names = [f.name for f in fields(InitialConditions)]
    return InitialConditions(**{k: np.concatenate([getattr(g, k) for g in groups]) for k in names})
