"""The SGD data set (lin2net.dynamics.sgd.data)."""

from __future__ import annotations

import numpy as np
from numpy.testing import assert_allclose

from lin2net.dynamics.sgd.data import DataSpec, build_data


def test_data_set_is_normalized_and_its_loss_is_half_eps_squared_plus_floor() -> None:
    data = build_data(DataSpec(n=50, noise=0.4), 9)
    assert_allclose(np.mean(data.x2), 1.0, rtol=1e-15)
    assert abs(np.mean(data.x_nu)) < 1e-16
    for phi, m in ((1.0, 0.7), (2.0, 2.5)):
        direct = 0.5 * np.mean((m * data.x - data.labels(phi)) ** 2)
        assert_allclose(0.5 * (m - phi) ** 2 + data.noise_floor, direct, rtol=1e-13)
    assert build_data(DataSpec(n=50, noise=0.4), 9).x.tobytes() == data.x.tobytes()
