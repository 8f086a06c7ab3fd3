"""Compile lin2net's numba kernels once, into numba's on-disk cache, before a test run.

``tests/conftest.py`` runs this (``python -m tests.warm_kernels``) once per
``pytest`` invocation, in the controlling process's place, before any test or
xdist worker starts. Every worker and every ``python -m lin2net`` subprocess a
test starts then loads the kernels from the cache instead of compiling them
again (the SGD kernel alone takes 15-30 s to compile on a loaded 2-core
machine, and each of two workers would otherwise compile it at once). With a
warm cache this takes about a second. Set ``LIN2NET_TEST_NO_WARM=1`` to skip it.
"""

from __future__ import annotations

from lin2net.dynamics.cells import simulate_cells
from lin2net.kernels.kit import LANES, available_threads
from lin2net.sweep.config import parse_config
from lin2net.sweep.grid import expand_grid

# A few steps of each dynamics with enough trajectories that every thread gets
# lanes: the one-thread lane loop and the parallel kernel are both compiled.
CONFIGS = (
    {"name": "warm-gd", "grid": {"eta": 0.1, "lambda0": 1.0, "d": 2}, "max_steps": 10},
    {
        "name": "warm-sgd",
        "algorithm": "sgd",
        "data": {"n": 8},
        "grid": {"eta": 0.1, "lambda0": 1.0, "d": 2, "batch_size": 2, "label_noise": [0.0, 0.1]},
        "max_steps": 10,
        "window": 5,
    },
)


def main() -> None:
    for raw in CONFIGS:
        for threads in sorted({1, available_threads()}):
            config = parse_config({**raw, "trajectories": 4 * LANES * threads})
            for cell in expand_grid(config):
                simulate_cells(config, [cell], threads=threads)


if __name__ == "__main__":
    main()
