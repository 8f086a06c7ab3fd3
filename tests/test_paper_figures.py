"""Figures 1 and 2 of the paper (`lin2net plot --kind phase|regions`): the dynamics they draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose
from typer.testing import CliRunner

from lin2net.analysis.paper_figures import PHASE_STARTS, draw_phase_portrait, draw_regions, gd_path, gf_path
from lin2net.cli import app

runner = CliRunner()


@pytest.mark.parametrize(("a", "b"), PHASE_STARTS)
def test_figure1_gd_shrinks_q_by_equation_8_and_the_flow_conserves_it(a: float, b: float) -> None:
    eta, phi = 0.15, 1.0
    gd = gd_path(a, b, eta, phi)
    q = gd[:, 0] ** 2 - gd[:, 1] ** 2
    eps = gd[:-1, 0] * gd[:-1, 1] - phi
    assert_allclose(q[1:], (1 - eta**2 * eps**2) * q[:-1], rtol=1e-9, atol=1e-12)
    assert abs(q[-1]) < abs(q[0])  # GD ends more balanced than it started
    assert abs(gd[-1, 0] * gd[-1, 1] - phi) < 1e-5  # on the minima
    gf = gf_path(a, b, eta, phi, horizon=5.0)
    assert_allclose(gf[:, 0] ** 2 - gf[:, 1] ** 2, a * a - b * b, rtol=1e-9, atol=1e-12)


def test_figure2_trajectories_start_in_every_region_and_end_on_the_minima() -> None:
    figure = draw_regions()
    ax = figure.axes[0]
    lines = [line for line in ax.lines if len(line.get_xdata()) > 2]
    starts = [float(line.get_xdata()[0]) for line in lines]
    assert any(x > 1 for x in starts) and any(0 < x < 1 for x in starts) and any(x < 0 for x in starts)
    for line in lines:
        x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        assert np.all(y >= 2 * np.abs(x) - 1e-9)  # Cauchy–Schwarz: λ ≥ 2|a·b|
        assert x[-1] == pytest.approx(1.0, abs=1e-5) and y[-1] >= 2.0 - 1e-9


def test_paper_figures_from_the_cli(tmp_path: Path) -> None:
    for kind in ("phase", "regions"):
        path = tmp_path / f"{kind}.png"
        result = runner.invoke(app, ["plot", "--kind", kind, "--eta", "0.2", "-o", str(path)])
        assert result.exit_code == 0 and path.stat().st_size > 10_000, result.output
    result = runner.invoke(app, ["plot", "--kind", "phase", "--eta", "-1", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and result.output.startswith("error: --eta: must be a finite number > 0")


def test_figure1_title_states_the_parameters() -> None:
    figure = draw_phase_portrait(0.2, 1.5)
    assert "d = 1, Φ = 1.5, η = 0.2" in figure.get_suptitle()
