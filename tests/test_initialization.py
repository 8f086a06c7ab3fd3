"""Initial points: the sphere law, exact scale, determinism, bounded blocks."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats

from lin2net.dynamics.initialization import BLOCK_FLOATS, block_size, initial_blocks, initial_conditions
from lin2net.sweep.grid import expand_grid
from tests.conftest import make_config


@pytest.mark.parametrize("d", [1, 2, 7, 30])
def test_sphere_product_follows_the_beta_law(d: int) -> None:
    """a·b = (λ0/2)(2B − 1) with B ~ Beta(d/2, d/2) (docs/math.md §5)."""
    lambda0, phi = 2.5, 0.0
    config = make_config(trajectories=4000, grid={"eta": 0.1, "lambda0": lambda0, "phi": phi, "d": d})
    (cell,) = expand_grid(config)
    initial = initial_conditions(config, cell)
    beta = (initial.eps0 + phi) / lambda0 + 0.5  # = B
    result = stats.kstest(beta, stats.beta(d / 2, d / 2).cdf)
    assert result.pvalue > 1e-3, result
    # and the law is not something else: a shifted law is rejected
    assert stats.kstest(beta, stats.beta(d / 2 + 1, d / 2).cdf).pvalue < 1e-3 or d > 20


def test_sphere_scale_is_exact_and_vectors_lie_on_the_sphere() -> None:
    config = make_config(trajectories=300, grid={"eta": 0.1, "lambda0": 3.7, "d": 5})
    (cell,) = expand_grid(config)
    initial = initial_conditions(config, cell)
    assert np.all(initial.lam0 == 3.7)
    for block in initial_blocks(config, cell):
        assert_allclose((block.a**2).sum(1) + (block.b**2).sum(1), 3.7, rtol=1e-14)


def test_gaussian_scale_in_expectation() -> None:
    config = make_config(trajectories=20000, init="gaussian", grid={"eta": 0.1, "lambda0": 2.0, "d": 3})
    (cell,) = expand_grid(config)
    lam = initial_conditions(config, cell).lam0
    # λ = (λ0/(2d)) χ²_{2d}: mean λ0, variance λ0²/d
    assert abs(lam.mean() - 2.0) < 4 * np.sqrt(4.0 / 3 / lam.size)
    assert_allclose(lam.var(), 4.0 / 3, rtol=0.05)


def test_explicit_init_is_the_given_point() -> None:
    config = make_config(
        trajectories=1, init={"explicit": {"a": [1.0, 2.0], "b": [0.5, -1.0]}}, grid={"eta": 0.1, "phi": 2.0}
    )
    (cell,) = expand_grid(config)
    assert (cell.d, cell.lambda0) == (2, 6.25)
    initial = initial_conditions(config, cell)
    assert_allclose([initial.eps0[0], initial.lam0[0], initial.q0[0]], [1.0 * 0.5 - 2.0 - 2.0, 6.25, 0.75 + 3.0])


def test_initializations_are_reproducible_and_prefix_stable() -> None:
    small = make_config(trajectories=100, grid={"eta": 0.1, "lambda0": 1.0, "d": 200})
    large = make_config(trajectories=20000, grid={"eta": 0.1, "lambda0": 1.0, "d": 200})
    assert block_size(200) < 20000  # several blocks
    (cell_small,), (cell_large,) = expand_grid(small), expand_grid(large)
    first = initial_conditions(small, cell_small)
    again = initial_conditions(small, cell_small)
    more = initial_conditions(large, cell_large)
    assert_array_equal(first.eps0, again.eps0)
    assert_array_equal(first.eps0, more.eps0[:100])
    assert len(np.unique(more.eps0)) == 20000  # blocks use distinct streams


def test_blocks_bound_memory() -> None:
    config = make_config(trajectories=50_000, grid={"eta": 0.1, "lambda0": 1.0, "d": 100})
    (cell,) = expand_grid(config)
    sizes = [block.a.size + block.b.size for block in initial_blocks(config, cell)]
    assert max(sizes) <= BLOCK_FLOATS and sum(sizes) == 50_000 * 200


def test_seed_changes_the_draws() -> None:
    one = make_config(seed=1, grid={"eta": 0.1, "lambda0": 1.0, "d": 3})
    two = make_config(seed=2, grid={"eta": 0.1, "lambda0": 1.0, "d": 3})
    e1 = initial_conditions(one, expand_grid(one)[0]).eps0
    e2 = initial_conditions(two, expand_grid(two)[0]).eps0
    assert not np.array_equal(e1, e2)


@pytest.mark.parametrize("init", ["sphere", "gaussian"])
def test_scaled_directions_equal_the_vectors_they_stand_for(init: str) -> None:
    """initial_conditions rescales each width's shared draws; the result is the
    (ε0, λ0, Q0, S0, P0) of the vectors initial_blocks yields, to rounding."""
    from lin2net.dynamics.initialization import initial_blocks, initial_conditions
    from lin2net.sweep.grid import expand_grid
    from lin2net.theory.closed_forms import reduced_coordinates, sum_and_difference_norms

    config = make_config(init=init, trajectories=300, grid={"eta": 0.1, "lambda0": [0.3, 7.0], "phi": 2.0, "d": [1, 9]})
    for cell in expand_grid(config):
        initial = initial_conditions(config, cell)
        (block,) = initial_blocks(config, cell)
        eps0, lam0, q0 = reduced_coordinates(block.a, block.b, cell.phi)
        s0, p0 = sum_and_difference_norms(block.a, block.b)
        scale = cell.lambda0
        np.testing.assert_allclose(initial.eps0, eps0, rtol=0, atol=4e-16 * scale + 4e-16 * cell.phi)
        for mine, theirs in ((initial.lam0, lam0), (initial.q0, q0), (initial.s0, s0), (initial.p0, p0)):
            np.testing.assert_allclose(mine, theirs, rtol=1e-14, atol=1e-15 * scale)
        if init == "sphere":
            assert (initial.lam0 == cell.lambda0).all()


@pytest.mark.parametrize("init", ["sphere", "gaussian"])
def test_a_shard_of_cells_gets_each_cells_own_numbers(init: str) -> None:
    """shard_initial_conditions broadcasts over cells of one width; every
    cell's rows are bitwise those of initial_conditions for that cell alone."""
    from lin2net.dynamics.initialization import shard_initial_conditions

    config = make_config(
        init=init, trajectories=37, grid={"eta": 0.1, "lambda0": [0.3, 7.0], "phi": [0.0, 2.0], "d": [1, 9, 4]}
    )
    cells = expand_grid(config)
    shard = shard_initial_conditions(config, cells)
    for i, cell in enumerate(cells):
        alone = initial_conditions(config, cell)
        for name in ("eps0", "lam0", "q0", "s0", "p0"):
            assert_array_equal(getattr(shard, name)[i * 37 : (i + 1) * 37], getattr(alone, name))
