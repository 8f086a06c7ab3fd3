"""Terminal hints of issue 18 §3: each names the fix in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lin2net.analysis.tables import format_value
from lin2net.cli import app
from lin2net.errors import ConfigError
from lin2net.sweep.config import parse_config

runner = CliRunner()


def test_a_top_level_axis_points_to_the_grid() -> None:
    raw = {"name": "x", "algorithm": "sgd", "batch_size": 4, "grid": {"eta": 0.1, "lambda0": 1.0, "batch_size": 2}}
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    assert error.value.key == "batch_size"
    assert "it is an axis: write it under grid: as grid.batch_size" in error.value.problem


def test_negative_zero_prints_as_zero() -> None:
    assert format_value(-0.0) == "0"
    assert format_value(-1e-20) == "-1e-20"


def test_a_rerun_after_extend_says_which_set_to_repeat(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "c", "trajectories": 3, "grid": {"eta": [0.1], "lambda0": 1.0, "d": 2}}))
    out = str(tmp_path / "out")
    assert runner.invoke(app, ["sweep", str(config), "-o", out, "-q", "-j", "1"]).exit_code == 0
    extend = ["sweep", str(config), "-o", out, "-q", "-j", "1", "--extend", "--set", "grid.eta=[0.1, 0.2]"]
    assert runner.invoke(app, extend).exit_code == 0
    plain = runner.invoke(app, ["sweep", str(config), "-o", out, "-q", "-j", "1"])
    assert plain.exit_code == 2
    assert "to resume it, repeat the same options: --set 'grid.eta=[0.1, 0.2]'" in plain.output
    assert "--overwrite would delete its results" in plain.output
    again = runner.invoke(app, ["sweep", str(config), "-o", out, "-q", "-j", "1", "--set", "grid.eta=[0.1, 0.2]"])
    assert again.exit_code == 0, again.output


def test_eta_lambda0_is_stored_as_the_grid_defines_it(tmp_path: Path) -> None:
    """η = 1.5, λ0 = 0.4: the row says 0.6, not the binary product 0.6000000000000001."""
    from lin2net.store.outdir import read_trajectories
    from lin2net.sweep.grid import grid_product
    from lin2net.sweep.runner import run_sweep

    assert 1.5 * 0.4 != 0.6 and grid_product(1.5, 0.4) == 0.6
    out = tmp_path / "out"
    run_sweep(parse_config({"name": "p", "trajectories": 2, "grid": {"eta": 1.5, "lambda0": [0.4, 0.1], "d": 2}}), out)
    values = set(read_trajectories(out, ["eta_lambda0"]).column("eta_lambda0").to_pylist())
    assert values == {0.6, 0.15}
    result = runner.invoke(app, ["summarize", str(out), "--format", "csv"])
    assert "0.6000000000000001" not in result.output and ",0.6," in result.output


def test_check_separates_stable_minima_from_passing_hits(tmp_path: Path) -> None:
    """check names how many converged trajectories ended at a stable minimum (η·S(T) < 2)."""
    from lin2net.analysis.check import check_sweep
    from lin2net.store.outdir import read_trajectories
    from lin2net.sweep.runner import run_sweep

    out = tmp_path / "out"
    run_sweep(parse_config({"name": "s", "trajectories": 60, "grid": {"eta": [0.3, 1.5], "lambda0": [0.1, 1.0]}}), out)
    frame = read_trajectories(out).to_pandas()
    converged = frame[frame.status == "converged"]
    stable = int((converged.eta * converged.sharpness_T < 2).sum())
    passing = len(converged) - stable
    assert passing > 0  # at η = 1.5 > 1/Φ some trajectories pass through loss_tol
    sentence = check_sweep(out).stability_sentence()
    assert sentence == (
        f"Of the {len(converged)} trajectories that reached loss <= loss_tol, {stable} converged at a stable "
        f"minimum (eta*S(T) < 2) and {passing} only passed through it (eta*S(T) >= 2)."
    )


def test_summarize_by_names_the_pooled_axes_and_q25_q75_sit_beside_the_iqr(tmp_path: Path) -> None:
    from lin2net.sweep.runner import run_sweep

    out = tmp_path / "out"
    grid = {"eta": [0.1, 0.3], "lambda0": [0.5, 2.0], "d": [2, 4]}
    run_sweep(parse_config({"name": "p", "trajectories": 10, "grid": grid}), out)
    table = runner.invoke(app, ["summarize", str(out), "--by", "d"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "pooled over η, λ0" in table.output
    csv = runner.invoke(app, ["summarize", str(out), "--format", "csv"])
    header = csv.output.splitlines()[0].split(",")
    for value in ("steps", "q_ratio", "sharpness_T"):
        assert {f"{value}_iqr", f"{value}_q25", f"{value}_q75"} <= set(header)
