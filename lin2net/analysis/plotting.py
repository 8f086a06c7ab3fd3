"""Figures: heatmaps of a sweep over two axes (the seed paper's Figure 3) and traces.

:func:`plot_sweep` reduces the sweep to one number per grid point and value
with one :func:`lin2net.analysis.summary.grouped_statistics` call, and draws heatmaps
over two axes (``x``, ``y``), one panel per combination of the remaining
axes that take several values (facets, laid out in a roughly square grid).
By default it draws Figure 3: median Q(T)/Q(0) and median convergence time
over η and λ(0).

Statistics (:data:`STATS`): ``median``, ``mean``, ``min``, ``max``, ``q25``,
``q75`` of the value over the converged trajectories (where the limit was
reached) — except the quantiles of ``steps``, which count trajectories that
did not converge as never converging (T = ∞), as ``lin2net summarize`` does;
``frac_converged``, ``frac_diverged``, ``frac_max_steps`` ignore the value
(one map per facet). The value ``one_minus_q_ratio`` is 1 − Q(T)/Q(0), drawn
on a log colour scale: where Q(T)/Q(0) is close to 1 it separates 10⁻² from
10⁻⁶. Its statistics are those of 1 − q_ratio (computed as 1 minus the
mirrored statistic of ``q_ratio``: q25 ↔ q75, min ↔ max). Grid points where fewer than half the trajectories
converged are drawn hatched grey (for all but the ``frac_*`` statistics).
Axes are logarithmic where their values are positive and geometric (or span
a decade); colour scales are logarithmic for non-negative values (fractions:
linear, 0 to 1).

An axis with a single value cannot be ``x`` or ``y``, and an axis that is not
on the sweep's grid (η·λ0 of an η grid) only where its values still fill the
plane: such requests are refused with a one-line error.

:func:`plot_trace` draws one traced trajectory (:mod:`lin2net.analysis.trace`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lin2net.analysis import filters
from lin2net.analysis.summary import (
    ALL_TRAJECTORY_VALUES,
    AXES,
    RATE_STATS,
    STATS,
    cell_statistic,
    grouped_statistics,
    statistics_table,
)
from lin2net.errors import ConfigError
from lin2net.store.opened import OpenedOutput, open_output

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colorbar import Colorbar
    from matplotlib.figure import Figure

    from lin2net.analysis.trace import Trace

__all__ = ["cell_statistic", "line_data", "plot_lines", "plot_sweep", "plot_trace", "sweep_grid"]

FRACTION_STATS = RATE_STATS  # statistics that count trajectories and ignore the value

PLOT_AXES = tuple(axis for axis in AXES if axis != "init")  # from the registry, as registered at import
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
DEFAULT_VALUES = ("q_ratio", "steps")
ONE_MINUS_Q = "one_minus_q_ratio"
MIRRORED = {"median": "median", "q25": "q75", "q75": "q25", "min": "max", "max": "min"}
LABELS = {
    "eta": "η",
    "lambda0": "λ(0)",
    "phi": "Φ",
    "d": "d",
    "eta_lambda0": "η·λ(0)",
    "q_ratio": "Q(T)/Q(0)",
    ONE_MINUS_Q: "1 − Q(T)/Q(0)",
    "steps": "convergence time T (steps)",
    "lambda_T": "λ(T)",
    "sharpness_T": "sharpness at T",
    "lambda_gf": "gradient-flow sharpness λ_GF",
    "frac_converged": "fraction converged",
    "frac_stable": "fraction at a stable minimum (η·S(T) < 2)",
    "sharpness_window": "sharpness, window mean",
    "lambda_window": "λ, window mean",
    "q_ratio_window": "Q/Q(0), window mean",
    "loss_window": "loss, window mean",
    "loss_T": "loss at T",
    "log_q_ratio": "log Q(T)/Q(0)",
    "batch_size": "B",
    "label_noise": "σ",
    "depth": "depth N",
    "inputs": "inputs m",
    "loss0": "loss at 0",
    "frac_diverged": "fraction diverged",
    "frac_max_steps": "fraction at max_steps",
}


def label(name: str) -> str:
    return LABELS.get(name, name)


def check_figure_path(path: Path) -> None:
    if Path(path).suffix.lower() not in FIGURE_SUFFIXES:
        raise ConfigError(
            "--output", f"unknown figure format {Path(path).suffix or '(none)'!r}; use {', '.join(FIGURE_SUFFIXES)}"
        )


@dataclass
class Panel:
    """One heatmap: ``values[j, i]`` at (x_values[i], y_values[j]); NaN where no data."""

    value: str
    stat: str
    facet: dict[str, Any]
    values: np.ndarray
    frac_converged: np.ndarray
    frac_diverged: np.ndarray | None = None

    @property
    def title(self) -> str:
        return label(self.stat) if self.stat in FRACTION_STATS else f"{self.stat} {label(self.value)}"


@dataclass
class SweepGrid:
    """Everything :func:`plot_sweep` draws, computed from the sweep's output."""

    name: str
    x: str
    y: str
    x_values: np.ndarray
    y_values: np.ndarray
    panels: list[Panel] = field(default_factory=list)
    phi_values: tuple[float, ...] = ()
    constants: dict[str, Any] = field(default_factory=dict)
    trajectories: tuple[int, int] = (0, 0)

    @property
    def stat_is_value(self) -> bool:
        """True where the panels show the value itself (not a fraction)."""
        return bool(self.panels) and self.panels[0].stat not in FRACTION_STATS

    @property
    def title(self) -> str:
        """The fixed parameters and the sample size, e.g. "Φ = 1, d = 10; 200 trajectories per cell"."""
        parts = [f"{label(k)} = {_number(v)}" for k, v in self.constants.items()]
        low, high = self.trajectories
        count = f"{low}" if low == high else f"{low}–{high}"
        fixed = ", ".join(parts)
        return f"{fixed}; {count} trajectories per cell" if fixed else f"{count} trajectories per cell"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def numeric_columns(algorithm: str = "gd") -> list[str]:
    """Numeric columns of the trajectory table of a sweep of dynamics ``algorithm``."""
    import pyarrow as pa

    from lin2net.dynamics.cells import trajectory_schema

    schema = trajectory_schema(algorithm)
    return [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]


def _axis_values(config: dict[str, Any], axis: str) -> list[Any] | None:
    """The values of a grid axis in the resolved config (None: not on the grid)."""
    grid = config.get("grid", {})
    if axis not in grid:
        return None
    values = grid[axis]
    return list(values) if isinstance(values, list) else [values]


def resolve_axes(config: dict[str, Any], x: str | None, y: str | None) -> tuple[str, str]:
    """``x`` and ``y`` with their defaults, checked against the sweep's grid."""
    grid = config.get("grid", {})
    x = x or ("eta" if "eta" in grid else "eta_lambda0")
    y = y or "lambda0"
    for option, axis in (("--x", x), ("--y", y)):
        if axis not in PLOT_AXES:
            raise ConfigError(option, f"unknown axis {axis!r}; choose from {', '.join(PLOT_AXES)}")
    if x == y:
        raise ConfigError("--y", f"x and y must differ, both are {x!r}")
    stepsize = {"eta", "lambda0", "eta_lambda0"}
    for option, axis in (("--x", x), ("--y", y)):
        values = _axis_values(config, axis)
        fixed = values is not None and len(values) == 1
        if values is None and axis in ("lambda0", "d"):  # explicit init: one point fixes them
            fixed = True
        if (
            values is None
            and axis in stepsize
            and not any(len(_axis_values(config, k) or [0]) > 1 for k in stepsize - {axis})
        ):
            fixed = True
        if fixed:
            shown = f" ({_number(values[0])})" if values else ""
            raise ConfigError(
                option,
                f"{axis} takes one value in this sweep{shown}; an axis with one value cannot be an x or y axis "
                f"(swept: {', '.join(k for k in grid if len(_axis_values(config, k) or []) > 1) or 'none'})",
            )
    return x, y


def sweep_grid(
    out: Path | OpenedOutput,
    *,
    x: str | None = None,
    y: str | None = None,
    values: Sequence[str] = DEFAULT_VALUES,
    stat: str = "median",
    where: str | None = None,
) -> SweepGrid:
    """Reduce a sweep to heatmap panels (see module doc); bad choices raise ConfigError.
    A value that is not a column is a DuckDB expression of the columns; ``where``
    keeps the trajectories for which its expression holds."""
    opened = open_output(out)
    config = opened.resolved
    x, y = resolve_axes(config, x, y)
    if stat not in STATS:
        raise ConfigError("--stat", f"unknown statistic {stat!r}; choose from {', '.join(STATS)}")
    check_values(values, opened.algorithm)
    if stat in FRACTION_STATS:
        values = [stat]  # the fraction ignores the value: one map, not one per value
        requested, request_stat = ["steps"], stat
    elif list(values) == [ONE_MINUS_Q]:
        requested, request_stat = ["q_ratio"], MIRRORED.get(stat, stat)
    else:
        if ONE_MINUS_Q in values:
            raise ConfigError("--value", f"{ONE_MINUS_Q} is drawn on its own")
        requested, request_stat = list(values), stat

    grid_keys = list(config.get("grid", {}))
    covered = {x, y}
    stepsize = {"eta", "lambda0", "eta_lambda0"}
    if len(covered & stepsize) >= 2:  # any two of η, λ0, η·λ0 fix the third
        covered |= stepsize
    candidates = [k for k in grid_keys if k not in covered]
    keys = [x, y, *candidates]
    if not opened.finished:
        raise ConfigError("", f"{opened.path} holds no finished cells yet")
    frame = grouped_statistics(opened, keys, requested, request_stat, where=[where] if where else [])
    if frame.empty:
        raise ConfigError("--where", f"no trajectories of {opened.path} satisfy it")

    facet_axes = [k for k in candidates if frame[k].nunique() > 1]
    x_values = np.sort(frame[x].unique().astype(np.float64))
    y_values = np.sort(frame[y].unique().astype(np.float64))
    facets = frame.groupby(facet_axes, sort=True) if facet_axes else [((), frame)]
    n_facets = frame[facet_axes].drop_duplicates().shape[0] if facet_axes else 1
    points = len(frame)
    plane = len(x_values) * len(y_values) * n_facets
    for option, axis in (("--x", x), ("--y", y)):
        if axis not in grid_keys and points < 0.5 * plane:
            raise ConfigError(
                option,
                f"{axis} is not an axis of this sweep's grid, and its values fill only {points} of the {plane} "
                f"points of the plane; plot the grid's own axes ({', '.join(grid_keys)}) or sweep grid.{axis}",
            )
    constants = {k: v[0] for k in grid_keys if (v := _axis_values(config, k)) is not None and len(v) == 1}
    constants = {k: v for k, v in constants.items() if k not in (x, y)}
    phis = tuple(sorted({float(v) for v in (_axis_values(config, "phi") or [1.0])}))
    counts = frame["trajectories"].to_numpy()
    grid = SweepGrid(
        str(config.get("name", opened.path.name)),
        x,
        y,
        x_values,
        y_values,
        phi_values=phis,
        constants=constants,
        trajectories=(int(counts.min()), int(counts.max())),
    )
    shape = (len(y_values), len(x_values))
    for facet, part in facets:
        facet_key = facet if isinstance(facet, tuple) else (facet,)
        i = np.searchsorted(x_values, part[x].to_numpy(dtype=np.float64))
        j = np.searchsorted(y_values, part[y].to_numpy(dtype=np.float64))
        frac = np.full(shape, np.nan)
        frac[j, i] = part["frac_converged"].to_numpy(dtype=np.float64)
        diverged = np.full(shape, np.nan)
        diverged[j, i] = part["frac_diverged"].to_numpy(dtype=np.float64)
        facet_map = {k: _plain(v) for k, v in zip(facet_axes, facet_key, strict=True)}
        for value, column in zip(values, requested, strict=True):
            data = part[column].to_numpy(dtype=np.float64)
            if value == ONE_MINUS_Q:
                data = 1.0 - data
            reduced = np.full(shape, np.nan)
            reduced[j, i] = data
            if _all_trajectories(value):  # reduced over every trajectory: never hatched
                grid.panels.append(Panel(value, stat, facet_map, reduced, np.ones(shape), np.zeros(shape)))
            else:
                grid.panels.append(Panel(value, stat, facet_map, reduced, frac, diverged))
    return grid


def check_values(values: Sequence[str], algorithm: str) -> None:
    """A bare name must be a numeric column of a sweep of dynamics ``algorithm``
    (did-you-mean otherwise); an expression is checked against the data by
    :func:`lin2net.analysis.filters.apply`."""
    numeric = numeric_columns(algorithm)
    for value in values:
        if value == ONE_MINUS_Q or not filters.is_column(value) or value in numeric:
            continue
        raise ConfigError(
            "--value",
            f"{value!r} is not a numeric column{filters.did_you_mean(value, [ONE_MINUS_Q, *numeric])}; choose from "
            f"{', '.join([ONE_MINUS_Q, *numeric])}, or give a DuckDB expression such as 'eta * sharpness_T'",
        )


def _all_trajectories(value: str) -> bool:
    """True for the SGD window columns (and expressions of them): reduced over every trajectory."""
    return bool(filters.referenced_columns(value, ALL_TRAJECTORY_VALUES))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def default_figure_name(x: str, y: str, value: str | None, stat: str, default_x: str) -> str:
    """``figure3.png`` for the default view, else ``plot-<value>-<stat>-<x>-<y>.png``."""
    if value is None and stat == "median" and (x, y) == (default_x, "lambda0"):
        return "figure3.png"
    if stat in FRACTION_STATS:
        return f"plot-{stat}-{x}-{y}.png"
    return f"plot-{value or 'figure3'}-{stat}-{x}-{y}.png"


def _is_log_axis(values: np.ndarray) -> bool:
    if values.size < 2 or np.any(values <= 0):
        return False
    if values.max() / values.min() >= 10:
        return True
    steps = np.diff(np.log(values))
    return values.size >= 3 and bool(np.allclose(steps, steps[0], rtol=1e-6))


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around sorted centres: midpoints (in log space on log axes)."""
    v = np.log(values) if log else values.astype(np.float64)
    if v.size == 1:
        half = 0.5 * abs(v[0]) if v[0] != 0 else 0.5
        return np.array([v[0] - half, v[0] + half])
    mid = 0.5 * (v[:-1] + v[1:])
    edges = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    return np.exp(edges) if log else edges


def _facet_title(facet: dict[str, Any]) -> str:
    return ", ".join(f"{label(k)} = {v:g}" for k, v in facet.items())


SCALES = ("linear", "log", "categorical")
SHARPNESS_VALUES = ("sharpness_T", "lambda_T", "lambda_gf", "sharpness_window", "lambda_window", "sharpness0")
"""Values measured in units of sharpness: their colour bars and axes mark S = 2Φ, the flattest minimum."""
CATEGORICAL_AXES = ("d", "batch_size", "depth", "inputs")
"""Integer axes drawn as categories (equal spacing, one labelled tick per value) when they take a few values."""


def default_scale(axis: str, values: np.ndarray) -> str:
    """``categorical`` for a few values (≤ 6) of an integer axis (d, B) that are
    not geometric; ``log`` for positive geometric values or a span of a decade;
    else ``linear`` (a linspace axis)."""
    if axis in CATEGORICAL_AXES and values.size <= 6 and not (values.size >= 3 and _is_log_axis(values)):
        return "categorical"
    if values.size >= 3 and np.allclose(np.diff(values), values[1] - values[0], rtol=1e-6):
        return "linear"  # a linspace axis
    return "log" if _is_log_axis(values) else "linear"


def check_scale(option: str, scale: str | None, values: np.ndarray) -> None:
    if scale is None:
        return
    if scale not in SCALES:
        raise ConfigError(option, f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    if scale == "log" and np.any(values <= 0):
        raise ConfigError(option, f"a log scale needs positive values; the smallest is {_number(float(values.min()))}")


def plot_sweep(
    out: Path | OpenedOutput,
    path: Path | None = None,
    *,
    x: str | None = None,
    y: str | None = None,
    value: str | None = None,
    stat: str = "median",
    where: str | None = None,
    xscale: str | None = None,
    yscale: str | None = None,
) -> Path:
    """Draw the heatmaps of :func:`sweep_grid` to ``path`` (.png, .svg or .pdf;
    default: ``OUT/`` + :func:`default_figure_name`) and return the path."""
    if path is not None:
        check_figure_path(path)
    opened = open_output(out)
    grid = sweep_grid(opened, x=x, y=y, values=DEFAULT_VALUES if value is None else (value,), stat=stat, where=where)
    check_scale("--xscale", xscale, grid.x_values)
    check_scale("--yscale", yscale, grid.y_values)
    if path is None:
        default_x = "eta" if "eta" in opened.resolved.get("grid", {}) else "eta_lambda0"
        path = opened.path / default_figure_name(grid.x, grid.y, value, stat, default_x)
    figure = draw_sweep_grid(grid, xscale=xscale, yscale=yscale, where=where)
    _save(figure, path)
    return path


def layout(panels_per_facet: int, facets: int) -> tuple[int, int]:
    """(rows, columns) of panels: facets in a roughly square grid, the values of
    one facet side by side."""
    facet_columns = max(1, math.ceil(math.sqrt(facets / panels_per_facet)))
    facet_columns = min(facet_columns, facets)
    return math.ceil(facets / facet_columns), facet_columns * panels_per_facet


HATCHES = {  # (hatch, label) of a grid point where fewer than half the trajectories converged
    "max_steps": ("///", "most did not converge within max_steps"),
    "diverged": ("xxx", "most diverged"),
}


def _positions(values: np.ndarray, scale: str) -> tuple[np.ndarray, np.ndarray]:
    """(centres, edges) of the cells along an axis: the values themselves, or
    0, 1, 2, ... for a categorical axis."""
    if scale == "categorical":
        centres = np.arange(values.size, dtype=np.float64)
        return centres, np.arange(values.size + 1, dtype=np.float64) - 0.5
    return values.astype(np.float64), _edges(values, scale == "log")


def _apply_scale(axis: Any, scale: str, values: np.ndarray) -> None:
    """Set a matplotlib axis (``ax.xaxis``/``ax.yaxis``) to the scale, with ticks
    that do not crowd: categories labelled by value, log axes by decades (or 1-2-5
    inside one decade), linear axes by at most six ticks."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    if scale == "categorical":
        axis._set_axes_scale("linear")
        axis.set_major_locator(FixedLocator(list(range(values.size))))
        axis.set_major_formatter(
            FuncFormatter(lambda v, _: _number(_plain(values[int(round(v))])) if 0 <= round(v) < values.size else "")
        )
        axis.set_minor_locator(FixedLocator([]))
        return
    axis._set_axes_scale(scale)
    if scale == "log":
        positive = values[values > 0]
        if positive.size and positive.max() / positive.min() < 30:
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        else:
            axis.set_major_locator(LogLocator(numticks=7))
        axis.set_minor_formatter(NullFormatter())
    else:
        axis.set_major_locator(MaxNLocator(6))


def draw_sweep_grid(
    grid: SweepGrid, *, xscale: str | None = None, yscale: str | None = None, where: str | None = None
) -> Figure:
    import matplotlib
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    per_facet = len(dict.fromkeys(p.value for p in grid.panels))
    grid, empty = _without_empty_facets(grid, per_facet)
    nrows, ncols = layout(per_facet, len(grid.panels) // per_facet)
    figure = Figure(figsize=(5.0 * ncols + 1.2, 4.2 * nrows + 0.8), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False)
    xscale = xscale or default_scale(grid.x, grid.x_values)
    yscale = yscale or default_scale(grid.y, grid.y_values)
    x_centres, x_edges = _positions(grid.x_values, xscale)
    y_centres, y_edges = _positions(grid.y_values, yscale)
    handles: dict[str, Any] = {}
    # One colour scale and one colour bar per value, shared by its facets so that they compare at a glance.
    values = list(dict.fromkeys(p.value for p in grid.panels))
    scales = {value: _colour_scale([p for p in grid.panels if p.value == value]) for value in values}
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white", under="black", over="white")
    meshes: dict[str, Any] = {}
    panel_axes: dict[str, list[Any]] = {value: [] for value in values}
    below: dict[str, bool] = dict.fromkeys(values, False)
    for k, panel in enumerate(grid.panels):
        ax = axes[k // ncols][k % ncols]
        panel_axes[panel.value].append(ax)
        data = np.where(np.isfinite(panel.values), panel.values, np.nan)
        vmin, vmax, use_log = scales[panel.value]
        if use_log:
            visible = data[(panel.frac_converged >= 0.5) & np.isfinite(data)]
            if np.any(visible < vmin):  # e.g. Q(T)/Q(0) underflowed to 0: drawn in the 'under' colour
                below[panel.value] = True
            data = np.where(data < vmin, vmin / 2, data)
            norm: Normalize = LogNorm(vmin=vmin, vmax=vmax)
        else:
            norm = Normalize(vmin=vmin, vmax=vmax)
        meshes[panel.value] = ax.pcolormesh(
            x_edges, y_edges, np.ma.masked_invalid(data), cmap=cmap, norm=norm, shading="flat"
        )
        if panel.stat not in FRACTION_STATS:
            failed = panel.frac_converged < 0.5
            diverged = panel.frac_diverged if panel.frac_diverged is not None else np.zeros_like(failed, float)
            most_diverged = diverged >= 0.5 * (1.0 - np.nan_to_num(panel.frac_converged))
            for kind, chosen in (("diverged", failed & most_diverged), ("max_steps", failed & ~most_diverged)):
                rows, cols = np.nonzero(chosen)
                if not rows.size:
                    continue
                hatch_style, text = HATCHES[kind]
                boxes = [
                    Rectangle((x_edges[i], y_edges[j]), x_edges[i + 1] - x_edges[i], y_edges[j + 1] - y_edges[j])
                    for j, i in zip(rows, cols, strict=True)
                ]
                hatch = PatchCollection(boxes, facecolor="0.82", edgecolor="0.45", hatch=hatch_style, linewidth=0.0)
                hatch.set_zorder(2)
                ax.add_collection(hatch)
                handles[text] = Patch(facecolor="0.82", edgecolor="0.45", hatch=hatch_style, label=text)
        if xscale != "categorical" and yscale != "categorical":
            for text, line in _reference_curves(ax, grid, panel).items():
                handles[text] = line
        _apply_scale(ax.xaxis, xscale, grid.x_values)
        _apply_scale(ax.yaxis, yscale, grid.y_values)
        ax.set_xlim(x_edges[0], x_edges[-1])
        ax.set_ylim(y_edges[0], y_edges[-1])
        ax.set_xlabel(label(grid.x))
        ax.set_ylabel(label(grid.y))
        title = _facet_title(panel.facet) if panel.facet else panel.title
        ax.set_title(
            title if per_facet == 1 or not panel.facet else f"{panel.title}\n{_facet_title(panel.facet)}",
            fontsize="medium",
        )
    for k in range(len(grid.panels), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    for value in values:
        vmin, vmax, use_log = scales[value]
        extend = "min" if below[value] else "neither"
        shared = figure.colorbar(
            meshes[value],
            ax=panel_axes[value],
            extend=extend,
            shrink=0.9,
            label=next(p.title for p in grid.panels if p.value == value),
        )
        _few_ticks(shared, use_log, vmin, vmax)
        if value in SHARPNESS_VALUES and grid.stat_is_value:
            _mark_two_phi(shared, grid.phi_values, vmin, vmax)
        if below[value]:
            below_text = "0 (underflow)" if value == "q_ratio" else f"< {vmin:.3g}"
            shared.ax.text(
                0.5, -0.06, below_text, transform=shared.ax.transAxes, ha="center", va="top", fontsize="small"
            )
    if handles:
        columns = max(1, min(len(handles), 3 if ncols < 2 else 2 * ncols))
        figure.legend(handles=list(handles.values()), loc="outside lower center", ncols=columns, fontsize="small")
    title = grid.title
    if where:
        title += f"; where {where}"
    if empty:
        title += "\nno data (not drawn): " + "; ".join(empty)
    if per_facet == 1 and grid.panels and grid.panels[0].facet:
        title = f"{grid.panels[0].title}\n{title}"
    figure.suptitle(title)
    return figure


def _without_empty_facets(grid: SweepGrid, per_facet: int) -> tuple[SweepGrid, list[str]]:
    """``grid`` without the facets whose panels hold no finite value (e.g. the window
    means of noiseless SGD, which converges before the window), and their titles."""
    from dataclasses import replace

    kept, empty = [], []
    for start in range(0, len(grid.panels), per_facet):
        facet = grid.panels[start : start + per_facet]
        if any(np.isfinite(p.values).any() for p in facet):
            kept.extend(facet)
        else:
            empty.append(_facet_title(facet[0].facet))
    if not kept:
        raise ConfigError("--value", "no grid point has a value to draw (every statistic is NaN)")
    return replace(grid, panels=kept), empty


def _mark_two_phi(colorbar: Colorbar, phis: tuple[float, ...], vmin: float, vmax: float) -> None:
    """A labelled tick at S = 2Φ (the flattest minimum's sharpness) on a sharpness colour bar."""
    if len(phis) != 1:
        return
    two_phi = 2.0 * phis[0]
    if not vmin <= two_phi <= vmax:
        return
    colorbar.ax.axhline(two_phi, color="white", linewidth=1.5)
    colorbar.ax.axhline(two_phi, color="black", linewidth=0.8, linestyle="--")
    colorbar.ax.text(
        -0.15, two_phi, "2Φ", transform=colorbar.ax.get_yaxis_transform(), ha="right", va="center", fontsize="small"
    )


def _few_ticks(colorbar: Colorbar, log: bool, vmin: float, vmax: float) -> None:
    """At most about five labelled ticks on a colour bar."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    axis = colorbar.ax.yaxis
    if log:
        decades = math.log10(vmax / vmin) if vmin > 0 else 10.0
        if decades >= 2:
            axis.set_major_locator(LogLocator(numticks=6))
        else:  # less than two decades: 1, 2, 5 times powers of ten, written out
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())
    else:
        axis.set_major_locator(MaxNLocator(5))


def _colour_scale(panels: list[Panel]) -> tuple[float, float, bool]:
    """(vmin, vmax, log) over the panels' visible cells (hatched ones excluded).

    Logarithmic for non-negative values with some positive entry (fractions:
    linear 0 to 1); vmin is then the smallest positive value, zeros fall below it.
    """
    stat = panels[0].stat
    if stat in FRACTION_STATS:
        return 0.0, 1.0, False
    linear = panels[0].value in SHARPNESS_VALUES  # sharpness is read against 2Φ and 2/η: linear
    visible = [p.values[(p.frac_converged >= 0.5) & np.isfinite(p.values)] for p in panels]
    finite = np.concatenate(visible) if visible else np.array([])
    if finite.size == 0:  # nothing visible: any finite value, else a dummy range
        finite = np.concatenate([p.values[np.isfinite(p.values)] for p in panels])
    if finite.size == 0:
        return 0.0, 1.0, False
    positive = finite[finite > 0]
    if positive.size and not np.any(finite < 0) and not linear:
        low, high = float(positive.min()), float(positive.max())
        return low, high if high > low else low * 10, True
    low, high = float(finite.min()), float(finite.max())
    return low, high if high > low else low + 1.0, False


REFERENCE_STYLES = {  # label: (colour, line style); each line is labelled by what it is
    "η·λ(0) = 2": ("black", "-"),
    "η = 2/√(λ(0)² + 4Φ²)": ("red", "--"),
    "η = 1/(λ(0) + 2Φ)": ("magenta", "-."),
    "η = 1/Φ": ("orange", ":"),
}


def _reference_curves(ax: Axes, grid: SweepGrid, panel: Panel) -> dict[str, Any]:
    """The step-size lines where the axes are two of η, λ0, η·λ0, drawn above the
    hatching: η·λ0 = 2 (GD starts at the edge of stability), η = 2/√(λ0² + 4Φ²)
    and η = 1/(λ0 + 2Φ) (Theorem 1 needs η below both: the second is
    η < 1/(2|ε0|) for the largest |ε0| = λ0/2 + Φ of a sphere start) and η = 1/Φ
    (no minimum is stable beyond it)."""
    from matplotlib import patheffects

    axes = {grid.x, grid.y}
    if "lambda0" not in axes or not axes & {"eta", "eta_lambda0"}:
        return {}
    phi = panel.facet.get("phi", grid.phi_values[0] if len(grid.phi_values) == 1 else None)
    if phi is None:
        return {}
    lam_values = grid.x_values if grid.x == "lambda0" else grid.y_values
    step_axis = grid.y if grid.x == "lambda0" else grid.x
    lam = np.geomspace(lam_values.min() / 10, lam_values.max() * 10, 400) if lam_values.min() > 0 else lam_values
    curves = {
        "η·λ(0) = 2": 2.0 / lam,
        "η = 2/√(λ(0)² + 4Φ²)": 2.0 / np.hypot(lam, 2.0 * phi),
        "η = 1/(λ(0) + 2Φ)": 1.0 / (lam + 2.0 * phi),
    }
    if phi > 0:
        curves["η = 1/Φ"] = np.full_like(lam, 1.0 / phi)
    lines = {}
    outline: list[patheffects.AbstractPathEffect] = [patheffects.withStroke(linewidth=3.4, foreground="white")]
    for text, eta in curves.items():
        coordinate = eta if step_axis == "eta" else eta * lam
        xs, ys = (lam, coordinate) if grid.x == "lambda0" else (coordinate, lam)
        color, style = REFERENCE_STYLES[text]
        (line,) = ax.plot(xs, ys, color=color, linestyle=style, linewidth=1.8, label=text, zorder=3)
        line.set_path_effects(outline)
        lines[text] = line
    return lines


@dataclass
class LineData:
    """A statistic of a value against ``x``: one line per value of ``hue``, one
    panel per value of ``facet``; ``frame`` has the columns facet, hue, x,
    ``value`` (the statistic), ``low``/``high`` (q25/q75: the band; NaN for
    fractions), ``trajectories`` and ``frac_converged``."""

    name: str
    x: str
    value: str
    stat: str
    hue: str | None
    facet: str | None
    frame: Any
    constants: dict[str, Any] = field(default_factory=dict)
    pooled: list[str] = field(default_factory=list)
    phi_values: tuple[float, ...] = ()
    where: str | None = None

    @property
    def title(self) -> str:
        what = label(self.stat) if self.stat in FRACTION_STATS else f"{self.stat} {label(self.value)}"
        band = " (band: q25–q75)" if self.stat in ("median", "mean") else ""
        parts = [f"{label(k)} = {_number(v)}" for k, v in self.constants.items()]
        low, high = int(self.frame["trajectories"].min()), int(self.frame["trajectories"].max())
        count = f"{low}" if low == high else f"{low}–{high}"
        parts.append(f"{count} trajectories per point")
        if self.pooled:
            parts.append("pooled over " + ", ".join(label(k) for k in self.pooled))
        if self.where:
            parts.append(f"where {self.where}")
        return f"{what}{band} against {label(self.x)}\n" + "; ".join(parts)


def line_data(
    out: Path | OpenedOutput,
    *,
    x: str,
    value: str = "q_ratio",
    hue: str | None = None,
    facet: str | None = None,
    stat: str = "median",
    where: str | None = None,
) -> LineData:
    """Reduce a sweep to lines (see :class:`LineData`). ``hue`` defaults to the
    swept axis with the fewest values (of those other than ``x``), ``facet`` to
    none; the other swept axes are pooled and named in the title."""
    import pyarrow.compute as pc

    opened = open_output(out)
    config = opened.resolved
    grid_axes = list(config.get("grid", {}))
    if stat not in STATS:
        raise ConfigError("--stat", f"unknown statistic {stat!r}; choose from {', '.join(STATS)}")
    check_values([value], opened.algorithm)
    if value == ONE_MINUS_Q:
        raise ConfigError("--value", f"{ONE_MINUS_Q} is for heatmaps; give the expression '1 - q_ratio'")
    axes = [a for a in PLOT_AXES if a in AXES]
    for option, axis in (("--x", x), ("--hue", hue), ("--facet", facet)):
        if axis is not None and axis not in axes:
            raise ConfigError(
                option, f"unknown axis {axis!r}{filters.did_you_mean(axis, axes)}; choose from {', '.join(axes)}"
            )
    chosen = [a for a in (x, hue, facet) if a is not None]
    if len(set(chosen)) < len(chosen):
        raise ConfigError("--hue" if hue in (x,) else "--facet", "x, hue and facet must be different axes")
    swept = [k for k in grid_axes if len(_axis_values(config, k) or []) > 1]
    stepsize = {"eta", "lambda0", "eta_lambda0"}
    covered = set(chosen)
    if len(covered & stepsize) >= 2:
        covered |= stepsize
    if hue is None:
        others = [k for k in swept if k not in covered]
        if others:
            hue = min(others, key=lambda k: len(_axis_values(config, k) or []))
            covered.add(hue)
            if len(covered & stepsize) >= 2:
                covered |= stepsize
    pooled = [k for k in swept if k not in covered]
    keys = [a for a in (facet, hue, x) if a is not None]
    request = value if stat not in FRACTION_STATS else "steps"
    table = filters.apply(opened.trajectories(), where, [request])
    if table.num_rows == 0:
        raise ConfigError("--where", f"no trajectories of {out} satisfy it")
    if stat in ("median", "mean") and stat not in FRACTION_STATS:
        frame = statistics_table(table, keys, [request], stat).rename(columns={request: "value"})
        for band, q in (("low", "q25"), ("high", "q75")):
            frame[band] = statistics_table(table, keys, [request], q)[request].to_numpy()
    else:
        frame = statistics_table(table, keys, [request], stat).rename(columns={request: "value"})
        frame["low"] = frame["high"] = np.nan
    # Pooled: axes the selected trajectories still vary along but the figure does not show.
    pooled = [k for k in pooled if k in table.column_names and pc.count_distinct(table.column(k)).as_py() > 1]
    if frame[x].nunique() < 2:
        raise ConfigError("--x", f"{x} takes one value in the selected trajectories; a line needs two or more")
    constants = {k: v[0] for k in grid_axes if (v := _axis_values(config, k)) is not None and len(v) == 1}
    phis = tuple(sorted({float(v) for v in (_axis_values(config, "phi") or [1.0])}))
    return LineData(
        str(config.get("name", opened.path.name)),
        x,
        value,
        stat,
        hue,
        facet,
        frame,
        constants=constants,
        pooled=pooled,
        phi_values=phis,
        where=where,
    )


def draw_lines(data: LineData, *, xscale: str | None = None, yscale: str | None = None) -> Figure:
    """One panel per facet value: the statistic against x, a line per hue value
    (coloured along viridis, labelled in one legend), the q25–q75 band shaded.
    Points where fewer than half the trajectories converged are drawn hollow
    (their statistic covers the converged minority only)."""
    import matplotlib
    from matplotlib.figure import Figure

    frame = data.frame
    facets = sorted(frame[data.facet].unique()) if data.facet else [None]
    ncols = min(len(facets), 3)
    nrows = math.ceil(len(facets) / ncols)
    figure = Figure(
        figsize=(max(4.6 * ncols + 0.6, 6.4), 3.8 * nrows + 1.0 + (0.8 if ncols == 1 else 0)), layout="constrained"
    )
    axes = figure.subplots(nrows, ncols, squeeze=False, sharey=True)
    x_values = np.sort(frame[data.x].unique().astype(np.float64))
    xscale = xscale or default_scale(data.x, x_values)
    finite = frame["value"].to_numpy(dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if yscale is None:
        spans = finite.size and finite.min() > 0 and finite.max() / finite.min() > 100
        yscale = "log" if spans and data.stat not in FRACTION_STATS else "linear"
    check_scale("--yscale", yscale if yscale != "categorical" else None, finite if finite.size else np.ones(1))
    hues = sorted(frame[data.hue].unique()) if data.hue else [None]
    cmap = matplotlib.colormaps["viridis"]
    colours = [cmap(0.85 * k / max(1, len(hues) - 1)) for k in range(len(hues))]
    handles: dict[str, Any] = {}
    for k, facet in enumerate(facets):
        ax = axes[k // ncols][k % ncols]
        part = frame if facet is None else frame[frame[data.facet] == facet]
        for colour, hue in zip(colours, hues, strict=True):
            line = part if hue is None else part[part[data.hue] == hue]
            line = line.sort_values(data.x)
            xs = line[data.x].to_numpy(dtype=np.float64)
            if xscale == "categorical":
                xs = np.searchsorted(x_values, xs).astype(np.float64)
            ys = line["value"].to_numpy(dtype=np.float64)
            text = f"{label(data.hue)} = {_number(_plain(hue))}" if data.hue else label(data.value)
            (drawn,) = ax.plot(xs, ys, color=colour, linewidth=1.6, label=text, zorder=3)
            converged = line["frac_converged"].to_numpy(dtype=np.float64) >= 0.5
            if data.stat in FRACTION_STATS or _all_trajectories(data.value):
                converged[:] = True
            ax.plot(xs[converged], ys[converged], "o", color=colour, markersize=4, zorder=4)
            ax.plot(
                xs[~converged],
                ys[~converged],
                "o",
                markerfacecolor="white",
                markeredgecolor=colour,
                markersize=4,
                zorder=4,
            )
            low, high = line["low"].to_numpy(dtype=np.float64), line["high"].to_numpy(dtype=np.float64)
            if np.any(np.isfinite(low)):
                ax.fill_between(xs, low, high, color=colour, alpha=0.2, linewidth=0, zorder=2)
            handles[text] = drawn
        if data.value in SHARPNESS_VALUES and data.stat not in FRACTION_STATS and len(data.phi_values) == 1:
            two_phi = 2.0 * data.phi_values[0]
            handles["S = 2Φ (flattest minimum)"] = ax.axhline(
                two_phi, color="0.3", linestyle=":", linewidth=1.0, zorder=1, label="S = 2Φ (flattest minimum)"
            )
        _apply_scale(ax.xaxis, xscale, x_values)
        if yscale == "log":
            _apply_scale(ax.yaxis, "log", finite[finite > 0] if finite.size else np.ones(1))
        else:
            from matplotlib.ticker import MaxNLocator

            ax.yaxis.set_major_locator(MaxNLocator(6))
        ax.set_xlabel(label(data.x))
        if k % ncols == 0:
            ax.set_ylabel(label(data.stat) if data.stat in FRACTION_STATS else f"{data.stat} {label(data.value)}")
        if facet is not None:
            ax.set_title(f"{label(data.facet or '')} = {_number(_plain(facet))}", fontsize="medium")
        ax.grid(alpha=0.3, which="major")
    for k in range(len(facets), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    hollow = "hollow markers: fewer than half converged" if data.stat not in FRACTION_STATS else None
    if hollow and not _all_trajectories(data.value) and (frame["frac_converged"] < 0.5).any():
        from matplotlib.lines import Line2D

        handles[hollow] = Line2D(
            [], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="0.3", label=hollow
        )
    if ncols > 1:
        figure.legend(handles=list(handles.values()), loc="outside right center", fontsize="small")
    else:  # one panel: the legend below keeps the panel wide
        figure.legend(handles=list(handles.values()), loc="outside lower center", ncols=2, fontsize="small")
    figure.suptitle(data.title, fontsize="medium")
    return figure


def plot_lines(
    out: Path | OpenedOutput,
    path: Path | None = None,
    *,
    x: str | None = None,
    value: str | None = None,
    hue: str | None = None,
    facet: str | None = None,
    stat: str = "median",
    where: str | None = None,
    xscale: str | None = None,
    yscale: str | None = None,
) -> Path:
    """Draw :func:`draw_lines` of :func:`line_data` to ``path`` (default:
    ``OUT/line-<value>-<stat>-<x>.png``) and return the path."""
    if path is not None:
        check_figure_path(path)
    opened = open_output(out)
    x = x or ("eta" if "eta" in opened.resolved.get("grid", {}) else "eta_lambda0")
    data = line_data(opened, x=x, value=value or "q_ratio", hue=hue, facet=facet, stat=stat, where=where)
    check_scale("--xscale", xscale, np.sort(data.frame[x].unique().astype(np.float64)))
    if path is None:
        safe = "".join(c if c.isalnum() or c in "_-." else "_" for c in (value or "q_ratio"))
        path = opened.path / f"line-{safe}-{stat}-{x}.png"
    _save(draw_lines(data, xscale=xscale, yscale=yscale), path)
    return path


def _save(figure: Figure, path: Path) -> None:
    from lin2net.store.outdir import atomic_write

    suffix = Path(path).suffix.lower().lstrip(".")
    atomic_write(Path(path), lambda temp: figure.savefig(temp, format=suffix, dpi=120))


def _spans_decades(values: np.ndarray, decades: float = 2.0) -> bool:
    """True when the finite values are positive and span more than ``decades`` powers of ten
    (a diverging trace: drawn linearly it is a flat line under one huge point)."""
    finite = values[np.isfinite(values)]
    return bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 10**decades)


TraceRuns = Sequence[tuple[int, "Trace"]]


def _runs(traces: Trace | TraceRuns) -> list[tuple[int, Trace]]:
    from lin2net.analysis.trace import Trace

    return [(0, traces)] if isinstance(traces, Trace) else list(traces)


def plot_trace(traces: Trace | TraceRuns, path: Path, parameters: dict[str, Any] | None = None) -> Path:
    """Draw :func:`draw_trace` to ``path`` (.png, .svg or .pdf)."""
    check_figure_path(path)
    _save(draw_trace(traces, parameters), path)
    return path


def trace_title(runs: list[tuple[int, Trace]], parameters: dict[str, Any] | None) -> str:
    """Every parameter of the traced run(s), the trajectory indices and how each ended."""
    parameters = dict(parameters or {})
    first = runs[0][1]
    sgd = "g" in first.table.columns
    algorithm = parameters.pop("algorithm", "SGD" if sgd else "GD")
    cell = parameters.pop("cell", None)
    parameters.setdefault("η", first.eta)
    parameters.setdefault("Φ", first.phi)
    values = ", ".join(f"{k} = {_number(v)}" if k != "seed" else f"seed {v}" for k, v in parameters.items())
    which = "trajectory" if len(runs) == 1 else "trajectories"
    head = (
        f"{algorithm} trace" + (f" of cell {cell}" if cell else "") + f", {which} " + ", ".join(str(i) for i, _ in runs)
    )
    ends = "; ".join((f"{i}: " if len(runs) > 1 else "") + f"{t.status.label} at T = {t.steps}" for i, t in runs)
    return f"{head}\n{values}\n{ends}"


def draw_trace(traces: Trace | TraceRuns, parameters: dict[str, Any] | None = None) -> Figure:
    """Loss, sharpness against 2/η and Q(t)/Q(0) of one or several traces, each with
    the gradient flow from the same start overlaid at GF time η·t (dashed, same colour).

    The axes are set by the traced runs alone: the flow is clipped to them (its loss
    falls to 10⁻³⁰⁰ long before GD's stops at loss_tol), and the 2/η line is drawn
    only where it does not squash S(t) (otherwise its value is written in the legend).
    The loss is on a log axis; the sharpness and Q(t)/Q(0) are too where they span
    more than two decades."""

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from lin2net.theory.closed_forms import sharpness

    runs = _runs(traces)
    sgd = "g" in runs[0][1].table.columns
    name = "SGD" if sgd else "GD"
    figure = Figure(figsize=(7.5, 9.0), layout="constrained")
    ax_loss, ax_sharp, ax_q = figure.subplots(3, 1, sharex=True)
    ranges: dict[str, list[float]] = {"loss": [], "sharpness": [], "q_ratio": []}
    eta = runs[0][1].eta
    for k, (index, trace) in enumerate(runs):
        colour = f"C{k % 10}"
        table = trace.table
        t = table["t"].to_numpy()
        fine = np.linspace(0.0, float(max(t[-1], 1)), 1000)  # the flow between steps, not only at η·t
        gf_eps, gf_lam = trace.flow.at(trace.eta * fine)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            gf_loss, gf_sharpness = 0.5 * gf_eps * gf_eps, sharpness(gf_eps, gf_lam, trace.phi)
            text = f"{name}, trajectory {index}" if len(runs) > 1 else name
            marker = "." if t.size <= 200 else None
            for ax, column, gf in ((ax_loss, "loss", gf_loss), (ax_sharp, "sharpness", gf_sharpness)):
                run = table[column].to_numpy(dtype=np.float64)
                if column == "loss":
                    run, gf = np.where(run > 0, run, np.nan), np.where(gf > 0, gf, np.nan)
                ax.plot(t, run, color=colour, linewidth=1.2, marker=marker, label=text)
                ax.plot(fine, gf, color=colour, linewidth=1.0, linestyle="--", alpha=0.8)
                ranges[column].extend(run[np.isfinite(run)].tolist())
            q = table["q_ratio"].to_numpy(dtype=np.float64)
            ax_q.plot(t, q, color=colour, linewidth=1.2, marker=marker, label=text)
            ranges["q_ratio"].extend(q[np.isfinite(q)].tolist())
            ax_sharp.axhline(trace.lambda_gf, color=colour, linestyle=":", linewidth=0.8)
            ranges["sharpness"].append(trace.lambda_gf)
    flow = Line2D([], [], color="0.3", linestyle="--", label="gradient flow, same start (time η·t)")
    gf_limit = Line2D([], [], color="0.3", linestyle=":", linewidth=0.8, label="λ_GF (gradient-flow limit)")
    ax_q.axhline(1.0, color="0.3", linestyle="--", linewidth=1.0)
    # Loss: a log axis over the runs' own values; the flow is clipped to it.
    losses = np.array([v for v in ranges["loss"] if v > 0])
    ax_loss.set_yscale("log")
    if losses.size:
        ax_loss.set_ylim(losses.min() / 3.0, losses.max() * 3.0)
    # Sharpness: limits from S(t) and λ_GF; 2/η only where it does not flatten S(t).
    sharp = np.array(ranges["sharpness"])
    sharp = sharp[np.isfinite(sharp)]
    two_over_eta = 2.0 / eta
    handles_sharp = [flow, gf_limit]
    if sharp.size:
        if _spans_decades(sharp):
            ax_sharp.set_yscale("log")
            low, high = sharp.min() / 1.5, sharp.max() * 1.5
        else:
            pad = 0.08 * max(sharp.max() - sharp.min(), 1e-3 * abs(sharp.max()) or 1.0)
            low, high = sharp.min() - pad, sharp.max() + pad
        log = ax_sharp.get_yscale() == "log"
        lo, hi = (np.log10(low), np.log10(high)) if log else (low, high)
        target = np.log10(two_over_eta) if log else two_over_eta
        span = hi - lo
        if lo - 0.5 * span <= target <= hi + 0.5 * span:  # near the data: show it and keep it in view
            lo, hi = min(lo, target - 0.05 * span), max(hi, target + 0.05 * span)
            low, high = (10.0**lo, 10.0**hi) if log else (lo, hi)
            handles_sharp.append(ax_sharp.axhline(two_over_eta, color="red", linestyle=":", label="2/η"))
        else:
            handles_sharp.append(Line2D([], [], color="none", label=f"2/η = {two_over_eta:.4g} (off scale)"))
        ax_sharp.set_ylim(low, high)
    if sgd or _spans_decades(np.array(ranges["q_ratio"])):
        if _spans_decades(np.array(ranges["q_ratio"])):
            ax_q.set_yscale("log")
    ax_loss.set_ylabel("loss ε²/2" + (" (full batch)" if sgd else ""))
    ax_sharp.set_ylabel("sharpness S(t)" + (" (full batch)" if sgd else ""))
    ax_q.set_ylabel("Q(t)/Q(0)")
    ax_q.set_xlabel("step t (gradient-flow time / η)")
    for ax, extra in (
        (ax_loss, [flow]),
        (ax_sharp, handles_sharp),
        (ax_q, [Line2D([], [], color="0.3", linestyle="--", label="gradient flow (Q conserved)")]),
    ):
        handles, _ = ax.get_legend_handles_labels()
        runs_handles = [h for h in handles if h.get_label() not in {e.get_label() for e in extra}]
        ax.legend(handles=[*runs_handles, *extra], loc="best", fontsize="small")
        ax.grid(alpha=0.3)
    figure.suptitle(trace_title(runs, parameters), fontsize="medium")
    return figure


def plot_family_trace(runs: list[tuple[int, Any]], path: Path, parameters: dict[str, Any] | None = None) -> Path:
    """A model family's trace(s) (:class:`lin2net.analysis.trace.FamilyTrace`) to ``path``:
    the loss, the sharpness S(t) against 2/η with the GF-solution sharpness λ_GF(θ_t)
    per step (dashed; Kreisler et al.: it falls monotonically in scalar deep networks),
    and Q(t)/Q(0)."""
    from matplotlib.figure import Figure

    check_figure_path(path)
    figure = Figure(figsize=(7.5, 9.0), layout="constrained")
    ax_loss, ax_sharp, ax_q = figure.subplots(3, 1, sharex=True)
    eta = runs[0][1].eta
    for k, (index, trace) in enumerate(runs):
        colour = f"C{k % 10}"
        table = trace.table
        t = table["t"].to_numpy()
        label = f"trajectory {index}"
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = table["loss"].to_numpy(dtype=np.float64)
            ax_loss.plot(t, np.where(loss > 0, loss, np.nan), color=colour, label=label)
            ax_sharp.plot(t, table["sharpness"].to_numpy(dtype=np.float64), color=colour, label=f"S(t), {label}")
            if "lambda_gf" in table:
                gf = table["lambda_gf"].to_numpy(dtype=np.float64)
                ax_sharp.plot(t, gf, color=colour, linestyle="--", label=f"λ_GF(θ_t), {label}")
            ax_q.plot(t, table["q_ratio"].to_numpy(dtype=np.float64), color=colour, label=label)
    ax_sharp.axhline(2.0 / eta, color="red", linestyle=":", label="2/η")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    ax_sharp.set_ylabel("sharpness")
    ax_q.set_ylabel("Q(t)/Q(0)")
    ax_q.set_xlabel("step t")
    for ax in (ax_loss, ax_sharp, ax_q):
        ax.legend(loc="best", fontsize="small")
        ax.grid(alpha=0.3)
    values = ", ".join(f"{key} = {_number(value)}" for key, value in (parameters or {}).items())
    ends = "; ".join(f"{i}: {trace.status.label} at T = {trace.steps}" for i, trace in runs)
    import textwrap

    figure.suptitle(f"trace\n{textwrap.fill(values, 90)}\n{ends}", fontsize="medium")
    _save(figure, path)
    return path
