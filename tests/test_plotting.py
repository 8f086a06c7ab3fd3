"""`lin2net plot`: the Figure-3 statistics, the trend they must show, and the files written."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from numpy.testing import assert_allclose
from typer.testing import CliRunner

from lin2net.analysis.plotting import cell_statistic, sweep_grid
from lin2net.cli import app
from lin2net.store.outdir import read_trajectories
from lin2net.sweep.config import parse_config
from lin2net.sweep.runner import run_sweep
from tests.conftest import trajectories_frame

runner = CliRunner()


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """η through the stable range at λ0 ∈ {0.3, 1}, Φ = 1, d ∈ {2, 8}, plus η = 1.6 where most diverge."""
    out = tmp_path_factory.mktemp("plot") / "out"
    config = parse_config(
        {
            "name": "small",
            "trajectories": 120,
            "grid": {"eta": [0.01, 0.03, 0.1, 0.3, 0.6, 1.6], "lambda0": [0.3, 1.0, 3.0], "phi": 1.0, "d": [2, 8]},
            "max_steps": 5000,
        }
    )
    run_sweep(config, out)
    return out


def test_median_q_ratio_falls_as_eta_grows_through_the_stable_range(small_sweep: Path) -> None:
    """Figure 3's trend: at fixed λ0, GD shrinks Q more the larger η (below 2/√(λ0² + 4Φ²))."""
    grid = sweep_grid(small_sweep, values=("q_ratio",))
    assert [p.facet for p in grid.panels] == [{"d": 2}, {"d": 8}]
    stable = grid.x_values < 2 / np.sqrt(3.0**2 + 4)  # 0.55: the stable range for every λ0 of the grid
    for panel in grid.panels:
        for j, _ in enumerate(grid.y_values):
            medians = panel.values[j, stable]
            assert np.all(np.diff(medians) < 0), (panel.facet, grid.y_values[j], medians)
            assert medians[0] > 0.99 and medians[-1] < 0.99


def test_panel_values_equal_direct_statistics(small_sweep: Path) -> None:
    frame = trajectories_frame(small_sweep)
    grid = sweep_grid(small_sweep)
    by_value = {(p.value, p.facet["d"]): p for p in grid.panels}
    for (eta, lambda0, d), group in frame.groupby(["eta", "lambda0", "d"]):
        i, j = list(grid.x_values).index(eta), list(grid.y_values).index(lambda0)
        converged = group["status"] == "converged"
        q_panel = by_value[("q_ratio", d)]
        assert q_panel.frac_converged[j, i] == pytest.approx(converged.mean())
        if converged.any():
            assert_allclose(q_panel.values[j, i], np.median(group.loc[converged, "q_ratio"]), rtol=1e-12)
        steps = np.sort(np.where(converged, group["steps"], np.inf))
        assert by_value[("steps", d)].values[j, i] == steps[(len(steps) + 1) // 2 - 1]  # inverted-cdf median


def test_cell_statistic_censors_steps_only_for_quantiles() -> None:
    status = np.array(["converged", "converged", "max_steps", "max_steps", "max_steps"])
    steps = np.array([10.0, 20.0, 99.0, 99.0, 99.0])
    assert cell_statistic(steps, status, "steps", "median") == np.inf
    assert cell_statistic(steps, status, "steps", "mean") == 15.0
    assert cell_statistic(steps, status, "steps", "frac_converged") == 0.4
    assert cell_statistic(steps, status, "q_ratio", "max") == 20.0


def _image(path: Path) -> np.ndarray:
    return np.asarray(matplotlib.image.imread(path))


def test_plot_writes_a_figure_with_content(small_sweep: Path, tmp_path: Path) -> None:
    path = tmp_path / "fig.png"
    result = runner.invoke(app, ["plot", str(small_sweep), "-o", str(path)])
    assert result.exit_code == 0, result.output
    image = _image(path)
    # 2 values x 2 facets: a 2 x 2 grid of 5 x 4.2 inch panels (and room for the colour bars) at 120 dpi.
    assert image.shape[:2] == (round((2 * 4.2 + 0.8) * 120), round((2 * 5.0 + 1.2) * 120))
    rgb = image[..., :3]
    assert (rgb.std(axis=(0, 1)) > 0.05).all()
    assert (rgb.min(axis=2) < 0.9).mean() > 0.2  # a good part of the figure is not white
    # Some cell is drawn hatched grey (η = 1.6 mostly diverges): the grey of the hatch fill is present.
    assert np.isclose(rgb, 0.82, atol=0.01).all(axis=2).sum() > 100


@pytest.mark.slow  # many trajectories or subprocesses: CI's slow pass (issue 19 §5, fast suite within 90 s)
def test_plot_default_path_and_other_formats(small_sweep: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["plot", str(small_sweep)])
    assert result.exit_code == 0, result.output
    assert (small_sweep / "figure3.png").stat().st_size > 10_000
    svg, pdf = tmp_path / "f.svg", tmp_path / "f.pdf"
    args = ["--value", "lambda_T", "--stat", "mean", "--x", "lambda0", "--y", "eta"]
    assert runner.invoke(app, ["plot", str(small_sweep), *args, "-o", str(svg)]).exit_code == 0
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    assert runner.invoke(app, ["plot", str(small_sweep), "--stat", "frac_converged", "-o", str(pdf)]).exit_code == 0
    assert pdf.read_bytes().startswith(b"%PDF")


def test_plot_facets_by_remaining_axes(small_sweep: Path) -> None:
    grid = sweep_grid(small_sweep, x="eta", y="d", values=("steps",), stat="q75")
    assert [p.facet for p in grid.panels] == [{"lambda0": 0.3}, {"lambda0": 1.0}, {"lambda0": 3.0}]
    assert grid.panels[0].values.shape == (2, 6)


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--value", "status"], "--value"),
        (["--value", "nope"], "--value"),
        (["--stat", "mode"], "--stat"),
        (["--x", "width"], "--x"),
        (["--x", "lambda0", "--y", "lambda0"], "--y"),
        (["-o", "figure.jpg"], "--output"),
    ],
)
def test_bad_plot_options_exit_2_with_one_line(small_sweep: Path, args: list[str], key: str) -> None:
    result = runner.invoke(app, ["plot", str(small_sweep), *args])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {key}") and result.output.strip().count("\n") == 0


@pytest.mark.slow  # many trajectories or subprocesses: CI's slow pass (issue 19 §5, fast suite within 90 s)
def test_each_view_has_its_own_default_file(small_sweep: Path) -> None:
    """Plots no longer overwrite OUT/figure3.png: the default view writes it, others are named by what they show."""
    views = {
        "figure3.png": [],
        "plot-lambda_T-mean-eta-lambda0.png": ["--value", "lambda_T", "--stat", "mean"],
        "plot-frac_converged-eta-d.png": ["--stat", "frac_converged", "--y", "d"],
        "plot-one_minus_q_ratio-median-eta-lambda0.png": ["--value", "one_minus_q_ratio"],
    }
    for name, args in views.items():
        result = runner.invoke(app, ["plot", str(small_sweep), *args])
        assert result.exit_code == 0, result.output
        assert result.output.strip().endswith(f"wrote {small_sweep / name}")
    assert {name: (small_sweep / name).stat().st_size > 10_000 for name in views} == dict.fromkeys(views, True)


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--x", "phi"], "error: --x: phi takes one value in this sweep (1); an axis with one value cannot be"),
        (["--y", "phi"], "error: --y: phi takes one value in this sweep (1)"),
        (["--x", "eta_lambda0"], "error: --x: eta_lambda0 is not an axis of this sweep's grid"),
    ],
)
def test_plots_that_cannot_show_anything_are_refused(small_sweep: Path, args: list[str], start: str) -> None:
    result = runner.invoke(app, ["plot", str(small_sweep), *args, "-o", "never.png"])
    assert result.exit_code == 2 and result.output.startswith(start) and result.output.count("\n") == 1, result.output
    assert not Path("never.png").exists()


def test_fraction_statistics_draw_one_map_per_facet(small_sweep: Path) -> None:
    frame = read_trajectories(small_sweep).to_pandas()
    grid = sweep_grid(small_sweep, stat="frac_diverged")
    assert [(p.value, p.facet) for p in grid.panels] == [("frac_diverged", {"d": 2}), ("frac_diverged", {"d": 8})]
    for panel in grid.panels:
        for (eta, lambda0), group in frame[frame["d"] == panel.facet["d"]].groupby(["eta", "lambda0"]):
            i, j = list(grid.x_values).index(eta), list(grid.y_values).index(lambda0)
            assert panel.values[j, i] == pytest.approx((group["status"] == "diverged").mean())


def test_one_minus_q_ratio_against_the_trajectories(small_sweep: Path) -> None:
    """1 − Q(T)/Q(0), from the mirrored statistic of Q(T)/Q(0), equals the statistic of 1 − q_ratio."""
    frame = read_trajectories(small_sweep).to_pandas()
    for stat, reduce in (("median", np.median), ("q25", lambda v: np.quantile(v, 0.25)), ("max", np.max)):
        grid = sweep_grid(small_sweep, values=("one_minus_q_ratio",), stat=stat)
        for panel in grid.panels:
            part = frame[(frame["d"] == panel.facet["d"]) & (frame["status"] == "converged")]
            for (eta, lambda0), group in part.groupby(["eta", "lambda0"]):
                i, j = list(grid.x_values).index(eta), list(grid.y_values).index(lambda0)
                expected = reduce(1.0 - group["q_ratio"].to_numpy())
                assert panel.values[j, i] == pytest.approx(expected, rel=1e-9, abs=1e-15), (stat, eta, lambda0)


def test_layout_is_roughly_square() -> None:
    from lin2net.analysis.plotting import layout

    assert layout(2, 1) == (1, 2) and layout(2, 2) == (2, 2) and layout(2, 8) == (4, 4)
    assert layout(1, 1) == (1, 1) and layout(1, 3) == (2, 2) and layout(1, 6) == (2, 3) and layout(1, 9) == (3, 3)


def test_figure_title_states_the_fixed_parameters(small_sweep: Path) -> None:
    grid = sweep_grid(small_sweep)
    assert grid.title == "Φ = 1; 120 trajectories per cell"
    assert sweep_grid(small_sweep, x="eta", y="d").title == "Φ = 1; 120 trajectories per cell"


def test_plot_notes_missing_cells(tmp_path: Path) -> None:
    """A cell that failed (through the test hook) is missing: the plot says so, as summarize does."""
    from lin2net.sweep.grid import expand_grid
    from tests.conftest import write_yaml

    raw = {"name": "m", "trajectories": 8, "grid": {"eta": [0.1, 0.3], "lambda0": [0.5, 1.0]}}
    failing = expand_grid(parse_config(raw))[0].cell_id
    out = tmp_path / "out"
    env = {"LIN2NET_TEST_FAIL_CELLS": failing}
    swept = runner.invoke(app, ["sweep", str(write_yaml(tmp_path / "m.yaml", raw)), "-o", str(out), "-j", "1"], env=env)
    assert swept.exit_code == 1, swept.output
    result = runner.invoke(app, ["plot", str(out)])
    assert result.exit_code == 0, result.output
    assert "note: 1 of 4 cells are missing from" in result.output and "1 of them failed" in result.output
    assert "the figure covers the 3 finished" in result.output


# ---- filters, derived values, line plots, scales, ticks (issue 18 §1) ----


def test_where_and_value_expressions_equal_the_direct_statistic(small_sweep: Path) -> None:
    """--value 'eta * sharpness_T' --where 'lambda0 = 1' equals the median computed by hand."""
    frame = trajectories_frame(small_sweep)
    grid = sweep_grid(small_sweep, x="eta", y="d", values=("eta * sharpness_T",), where="lambda0 = 1")
    assert [p.facet for p in grid.panels] == [{}]  # λ0 fixed by the filter: no facets
    panel = grid.panels[0]
    for (eta, d), group in frame[frame.lambda0 == 1.0].groupby(["eta", "d"]):
        i, j = list(grid.x_values).index(eta), list(grid.y_values).index(d)
        converged = group[group.status == "converged"]
        if len(converged):
            assert_allclose(panel.values[j, i], np.median(converged.eta * converged.sharpness_T), rtol=1e-12)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--value", "q_ratoi"], "error: --value: 'q_ratoi' is not a numeric column (did you mean 'q_ratio'"),
        (["--value", "eta * sharpnes_T"], "error: --value: unknown column 'sharpnes_T' (did you mean 'sharpness_T'"),
        (["--where", "lamda0 = 1"], "error: --where: unknown column 'lamda0' (did you mean 'lambda0'"),
        (["--where", "lambda0 = "], "error: --where: not a valid DuckDB expression: syntax error"),
        (["--where", "lambda0 = 1; select 1"], "error: --where: one expression, without ';'"),
        (["--where", "lambda0 = 77"], "error: --where: no trajectories of"),
        (["--value", "'text'"], "error: --value: \"'text'\" is of type VARCHAR; a value must be a number"),
        (["--kind", "line", "--y", "d"], "error: --y: not used with --kind line"),
        (["--hue", "d"], "error: --hue: only with --kind line"),
        (["--xscale", "log", "--x", "d", "--y", "eta", "--where", "d > 100"], "error: --where: no trajectories"),
    ],
)
def test_bad_expressions_exit_2_with_one_line(small_sweep: Path, tmp_path: Path, args: list[str], line: str) -> None:
    result = runner.invoke(app, ["plot", str(small_sweep), "-o", str(tmp_path / "x.png"), *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(line), result.output
    assert len(result.output.strip().splitlines()) == 1


def test_summarize_where_equals_summarize_of_the_subset(small_sweep: Path) -> None:
    from lin2net.analysis.summary import summarize

    whole = summarize(small_sweep)
    part = summarize(small_sweep, where="d = 8 and eta < 0.5")
    expected = whole[(whole.d == 8) & (whole.eta < 0.5)].reset_index(drop=True)
    assert len(part) == len(expected) > 0
    for column in ("frac_converged", "frac_stable", "steps_median", "q_ratio_median", "q_ratio_q25", "q_ratio_q75"):
        assert_allclose(part[column].to_numpy(float), expected[column].to_numpy(float), rtol=0, equal_nan=True)


def test_frac_stable_separates_passing_hits_from_stable_minima(small_sweep: Path) -> None:
    """frac_stable counts the converged trajectories with η·S(T) < 2; at η = 1.6 > 1/Φ none is stable."""
    from lin2net.analysis.summary import summarize

    frame = trajectories_frame(small_sweep)
    summary = summarize(small_sweep)
    for _, row in summary.iterrows():
        group = frame[frame.cell_id == row.cell_id]
        stable = (group.status == "converged") & (group.eta * group.sharpness_T < 2)
        assert row.frac_stable == pytest.approx(stable.mean())
        assert row.frac_stable <= row.frac_converged
    assert (summary[summary.eta == 1.6].frac_stable == 0).all()
    assert (summary[summary.eta <= 0.3].frac_stable == summary[summary.eta <= 0.3].frac_converged).all()


def test_line_plot_statistics_and_band_equal_the_quantiles(small_sweep: Path) -> None:
    from lin2net.analysis.plotting import line_data

    data = line_data(small_sweep, x="eta", value="sharpness_T", hue="lambda0", facet="d")
    frame = trajectories_frame(small_sweep)
    assert data.pooled == []
    for _, row in data.frame.iterrows():
        group = frame[(frame.eta == row.eta) & (frame.lambda0 == row.lambda0) & (frame.d == row.d)]
        values = group.loc[group.status == "converged", "sharpness_T"].to_numpy()
        if values.size:
            assert_allclose([row.value, row.low, row.high], np.quantile(values, [0.5, 0.25, 0.75]), rtol=1e-12)
    pooled = line_data(small_sweep, x="eta", value="q_ratio", hue="d")
    assert pooled.pooled == ["lambda0"] and "pooled over λ(0)" in pooled.title


def _tick_labels_overlap(figure: object) -> list[str]:
    """Pairs of visible tick labels whose bounding boxes overlap, on any axis of the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)  # type: ignore[arg-type]
    canvas.draw()
    renderer = canvas.get_renderer()
    problems = []
    for ax in figure.axes:  # type: ignore[attr-defined]
        if not ax.get_visible():
            continue
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]
            boxes = [t.get_window_extent(renderer) for t in labels]
            for k in range(len(boxes)):
                for m in range(k + 1, len(boxes)):
                    if boxes[k].overlaps(boxes[m]):
                        problems.append(f"{labels[k].get_text()} / {labels[m].get_text()}")
    return problems


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"value": "sharpness_T"},
        {"value": "q_ratio", "x": "eta", "y": "d"},
        {"value": "steps", "x": "lambda0", "y": "eta", "stat": "frac_stable"},
        {"value": "q_ratio", "yscale": "linear"},
    ],
)
def test_heatmap_tick_labels_do_not_overlap(small_sweep: Path, kwargs: dict[str, str]) -> None:
    from lin2net.analysis.plotting import DEFAULT_VALUES, draw_sweep_grid

    scales = {k: kwargs.pop(k) for k in ("xscale", "yscale") if k in kwargs}
    value = kwargs.pop("value", None)
    grid = sweep_grid(small_sweep, values=DEFAULT_VALUES if value is None else (value,), **kwargs)
    figure = draw_sweep_grid(grid, **scales)
    assert _tick_labels_overlap(figure) == []
    # one colour bar per value, not one per panel
    values = {p.value for p in grid.panels}
    assert len(figure.axes) == len(grid.panels) + len(values) + sum(1 for ax in figure.axes if not ax.get_visible())


@pytest.mark.parametrize("x", ["eta", "lambda0", "d"])
def test_line_plot_tick_labels_do_not_overlap(small_sweep: Path, x: str) -> None:
    from lin2net.analysis.plotting import draw_lines, line_data

    data = line_data(small_sweep, x=x, value="q_ratio")
    assert _tick_labels_overlap(draw_lines(data)) == []


def test_d_is_categorical_by_default_and_scales_can_be_chosen(small_sweep: Path, tmp_path: Path) -> None:
    from lin2net.analysis.plotting import default_scale

    assert default_scale("d", np.array([2.0, 8.0])) == "categorical"
    assert default_scale("eta", np.array([0.01, 0.1, 1.0])) == "log"
    assert default_scale("eta", np.linspace(0.1, 1.0, 10)) == "linear"
    path = tmp_path / "line.png"
    args = ["plot", str(small_sweep), "--kind", "line", "--x", "eta", "--xscale", "linear", "-o", str(path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and path.stat().st_size > 0, result.output
    result = runner.invoke(app, ["plot", str(small_sweep), "--x", "eta", "--xscale", "log", "--where", "eta > 0"])
    assert result.exit_code == 0, result.output


def test_line_plot_cli_writes_its_default_file(small_sweep: Path) -> None:
    result = runner.invoke(
        app, ["plot", str(small_sweep), "--kind", "line", "--value", "eta * sharpness_T", "--hue", "d"]
    )
    assert result.exit_code == 0, result.output
    assert (small_sweep / "line-eta___sharpness_T-median-eta.png").is_file()


@pytest.fixture(scope="module")
def noisy_sgd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Label-noise SGD (never converges) next to noiseless SGD (converges before the window)."""
    out = tmp_path_factory.mktemp("sgdplot") / "out"
    raw = {
        "name": "sgd",
        "algorithm": "sgd",
        "trajectories": 12,
        "grid": {"eta": [0.05, 0.2], "lambda0": [1.0, 4.0], "d": 3, "batch_size": 2, "label_noise": [0.0, 0.1]},
        "data": {"n": 10},
        "window": 100,
        "max_steps": 600,
    }
    run_sweep(parse_config(raw), out)
    return out


def test_sgd_window_values_use_every_trajectory_and_no_panel_is_blank(noisy_sgd: Path, tmp_path: Path) -> None:
    frame = trajectories_frame(noisy_sgd)
    assert (frame[frame.label_noise > 0].status != "converged").all()  # noisy SGD never converges
    grid = sweep_grid(noisy_sgd, values=("sharpness_window",))
    assert [p.facet for p in grid.panels] == [{"label_noise": 0.0}, {"label_noise": 0.1}]
    noisy = grid.panels[1]
    assert np.isfinite(noisy.values).all() and (noisy.frac_converged == 1).all()  # never hatched
    for (eta, lambda0), group in frame[frame.label_noise > 0].groupby(["eta", "lambda0"]):
        i, j = list(grid.x_values).index(eta), list(grid.y_values).index(lambda0)
        assert_allclose(noisy.values[j, i], np.nanmedian(group.sharpness_window), rtol=1e-12)
    from lin2net.analysis.plotting import draw_sweep_grid

    figure = draw_sweep_grid(grid)
    drawn = [ax for ax in figure.axes if ax.get_visible() and ax.get_xlabel() == "η"]
    assert len(drawn) == 1  # the noiseless facet has no window values: named in the title, not drawn blank
    assert "no data (not drawn): σ = 0" in figure.get_suptitle()
    result = runner.invoke(app, ["plot", str(noisy_sgd), "--value", "sharpness_window", "-o", str(tmp_path / "w.png")])
    assert result.exit_code == 0, result.output
