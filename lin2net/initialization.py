"""Initial points (a, b) for a cell, generated in fixed-size blocks.

``sphere``: (a, b) uniform in direction on ‖a‖² + ‖b‖² = λ0 in R^{2d};
``gaussian``: i.i.d. N(0, λ0/(2d)) entries (so E‖a‖² + ‖b‖² = λ0);
``explicit``: the one given point.

Blocks hold at most ``BLOCK_FLOATS`` numbers, so memory stays bounded for any
d × trajectories, and block k always comes from the same random stream: the
first n initializations are the same whatever the total count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from lin2net.closed_forms import FloatArray, reduced_coordinates, sum_and_difference_norms
from lin2net.config import SweepConfig
from lin2net.grid import Cell, initialization_rng

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


def initial_blocks(config: SweepConfig, cell: Cell) -> Iterator[InitialBlock]:
    """Yield the cell's initializations block by block, in trajectory order."""
    if config.explicit is not None:
        a = np.asarray(config.explicit.a, dtype=np.float64)[None, :]
        b = np.asarray(config.explicit.b, dtype=np.float64)[None, :]
        yield InitialBlock(0, a, b)
        return
    d, per_block = cell.d, block_size(cell.d)
    for block, start in enumerate(range(0, config.trajectories, per_block)):
        n = min(per_block, config.trajectories - start)
        z = initialization_rng(config.seed, config.init, d, block).standard_normal((n, 2 * d))
        if config.init == "sphere":
            z *= np.sqrt(cell.lambda0) / np.linalg.norm(z, axis=1, keepdims=True)
        else:
            z *= np.sqrt(cell.lambda0 / (2 * d))
        yield InitialBlock(start, z[:, :d], z[:, d:])


def initial_conditions(config: SweepConfig, cell: Cell) -> InitialConditions:
    """(ε0, λ0, Q0, S0, P0) of every trajectory of the cell, without keeping the vectors."""
    parts = [
        (*reduced_coordinates(block.a, block.b, cell.phi), *sum_and_difference_norms(block.a, block.b))
        for block in initial_blocks(config, cell)
    ]
    eps0, lam0, q0, s0, p0 = (np.concatenate(column) for column in zip(*parts, strict=True))
    if config.init == "sphere":
        lam0[:] = cell.lambda0  # exact by construction; avoid the rounding of the re-summed norm
    return InitialConditions(eps0=eps0, lam0=lam0, q0=q0, s0=s0, p0=p0)
