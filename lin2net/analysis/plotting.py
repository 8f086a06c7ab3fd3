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

from lin2net.analysis.summary import AXES, FRACTION_STATS, STATS, cell_statistic, grouped_statistics
from lin2net.errors import ConfigError
from lin2net.store.opened import OpenedOutput, open_output

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colorbar import Colorbar
    from matplotlib.figure import Figure

    from lin2net.analysis.trace import Trace

__all__ = ["cell_statistic", "plot_sweep", "plot_trace", "sweep_grid"]

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
) -> SweepGrid:
    """Reduce a sweep to heatmap panels (see module doc); bad choices raise ConfigError."""
    opened = open_output(out)
    config = opened.resolved
    x, y = resolve_axes(config, x, y)
    if stat not in STATS:
        raise ConfigError("--stat", f"unknown statistic {stat!r}; choose from {', '.join(STATS)}")
    numeric = numeric_columns(config.get("algorithm", "gd"))
    for value in values:
        if value not in numeric and value != ONE_MINUS_Q:
            choices = ", ".join([ONE_MINUS_Q, *numeric])
            raise ConfigError("--value", f"{value!r} is not a numeric column; choose from {choices}")
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
    frame = grouped_statistics(opened, keys, requested, request_stat)

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
        facet_map = {k: _plain(v) for k, v in zip(facet_axes, facet_key, strict=True)}
        for value, column in zip(values, requested, strict=True):
            data = part[column].to_numpy(dtype=np.float64)
            if value == ONE_MINUS_Q:
                data = 1.0 - data
            reduced = np.full(shape, np.nan)
            reduced[j, i] = data
            grid.panels.append(Panel(value, stat, facet_map, reduced, frac))
    return grid


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


def plot_sweep(
    out: Path | OpenedOutput,
    path: Path | None = None,
    *,
    x: str | None = None,
    y: str | None = None,
    value: str | None = None,
    stat: str = "median",
) -> Path:
    """Draw the heatmaps of :func:`sweep_grid` to ``path`` (.png, .svg or .pdf;
    default: ``OUT/`` + :func:`default_figure_name`) and return the path."""
    if path is not None:
        check_figure_path(path)
    opened = open_output(out)
    grid = sweep_grid(opened, x=x, y=y, values=DEFAULT_VALUES if value is None else (value,), stat=stat)
    if path is None:
        default_x = "eta" if "eta" in opened.resolved.get("grid", {}) else "eta_lambda0"
        path = opened.path / default_figure_name(grid.x, grid.y, value, stat, default_x)
    figure = draw_sweep_grid(grid)
    _save(figure, path)
    return path


def layout(panels_per_facet: int, facets: int) -> tuple[int, int]:
    """(rows, columns) of panels: facets in a roughly square grid, the values of
    one facet side by side."""
    facet_columns = max(1, math.ceil(math.sqrt(facets / panels_per_facet)))
    facet_columns = min(facet_columns, facets)
    return math.ceil(facets / facet_columns), facet_columns * panels_per_facet


def draw_sweep_grid(grid: SweepGrid) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    per_facet = len(dict.fromkeys(p.value for p in grid.panels))
    nrows, ncols = layout(per_facet, len(grid.panels) // per_facet)
    figure = Figure(figsize=(5.6 * ncols, 4.4 * nrows), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False)
    x_log, y_log = _is_log_axis(grid.x_values), _is_log_axis(grid.y_values)
    x_edges, y_edges = _edges(grid.x_values, x_log), _edges(grid.y_values, y_log)
    handles: dict[str, Any] = {}
    # One colour scale per value, shared by its facets so that they compare at a glance.
    values = {p.value for p in grid.panels}
    scales = {value: _colour_scale([p for p in grid.panels if p.value == value]) for value in values}
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white", under="black")
    for k, panel in enumerate(grid.panels):
        ax = axes[k // ncols][k % ncols]
        data = np.where(np.isfinite(panel.values), panel.values, np.nan)
        vmin, vmax, use_log = scales[panel.value]
        extend = "neither"
        if use_log:
            if np.any(data < vmin):  # e.g. Q(T)/Q(0) underflowed to 0: drawn in the 'under' colour
                data = np.where(data < vmin, vmin / 2, data)
                extend = "min"
            norm: Normalize = LogNorm(vmin=vmin, vmax=vmax)
        else:
            norm = Normalize(vmin=vmin, vmax=vmax)
        mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(data), cmap=cmap, norm=norm, shading="flat")
        colorbar = figure.colorbar(mesh, ax=ax, extend=extend, label=panel.title)
        _few_ticks(colorbar, use_log, vmin, vmax)
        if panel.stat not in FRACTION_STATS:
            rows, cols = np.nonzero(panel.frac_converged < 0.5)
            if rows.size:
                boxes = [
                    Rectangle((x_edges[i], y_edges[j]), x_edges[i + 1] - x_edges[i], y_edges[j + 1] - y_edges[j])
                    for j, i in zip(rows, cols, strict=True)
                ]
                hatch = PatchCollection(boxes, facecolor="0.82", edgecolor="0.45", hatch="///", linewidth=0.0)
                hatch.set_zorder(2)
                ax.add_collection(hatch)
                handles["most trajectories did not converge"] = Patch(
                    facecolor="0.82", edgecolor="0.45", hatch="///", label="most trajectories did not converge"
                )
        for text, line in _reference_curves(ax, grid, panel).items():
            handles[text] = line
        ax.set_xscale("log" if x_log else "linear")
        ax.set_yscale("log" if y_log else "linear")
        ax.set_xlim(x_edges[0], x_edges[-1])
        ax.set_ylim(y_edges[0], y_edges[-1])
        ax.set_xlabel(label(grid.x))
        ax.set_ylabel(label(grid.y))
        ax.set_title(panel.title + (f"  ({_facet_title(panel.facet)})" if panel.facet else ""))
    for k in range(len(grid.panels), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    if handles:
        # Two columns per panel across fit the figure's width (one panel: two columns).
        columns = max(1, min(len(handles), 2 * ncols))
        figure.legend(handles=list(handles.values()), loc="outside lower center", ncols=columns, fontsize="small")
    figure.suptitle(grid.title)
    return figure


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
    visible = [p.values[(p.frac_converged >= 0.5) & np.isfinite(p.values)] for p in panels]
    finite = np.concatenate(visible) if visible else np.array([])
    if finite.size == 0:  # nothing visible: any finite value, else a dummy range
        finite = np.concatenate([p.values[np.isfinite(p.values)] for p in panels])
    if finite.size == 0:
        return 0.0, 1.0, False
    positive = finite[finite > 0]
    if positive.size and not np.any(finite < 0):
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


def _save(figure: Figure, path: Path) -> None:
    from lin2net.store.outdir import atomic_write

    suffix = Path(path).suffix.lower().lstrip(".")
    atomic_write(Path(path), lambda temp: figure.savefig(temp, format=suffix, dpi=120))


def _spans_decades(values: np.ndarray, decades: float = 2.0) -> bool:
    """True when the finite values are positive and span more than ``decades`` powers of ten
    (a diverging trace: drawn linearly it is a flat line under one huge point)."""
    finite = values[np.isfinite(values)]
    return bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 10**decades)


def plot_trace(trace: Trace, path: Path) -> Path:
    """Draw :func:`draw_trace` to ``path`` (.png, .svg or .pdf)."""
    check_figure_path(path)
    _save(draw_trace(trace), path)
    return path


def draw_trace(trace: Trace) -> Figure:
    """Loss, sharpness against 2/η and Q(t)/Q(0) of a trace, with the gradient flow
    from the same start overlaid at GF time η·t. The loss is on a log axis; the
    sharpness and Q(t)/Q(0) are too where they span more than two decades."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from lin2net.theory.closed_forms import sharpness

    table = trace.table
    t = table["t"].to_numpy()
    fine = np.linspace(0.0, float(max(t[-1], 1)), 1000)  # the flow between steps, not only at η·t
    gf_eps, gf_lam = trace.flow.at(trace.eta * fine)
    gf_loss, gf_sharpness = 0.5 * gf_eps * gf_eps, sharpness(gf_eps, gf_lam, trace.phi)
    figure = Figure(figsize=(7.5, 9.0), layout="constrained")
    ax_loss, ax_sharp, ax_q = figure.subplots(3, 1, sharex=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        for ax, column, gf, name in (
            (ax_loss, "loss", gf_loss, "loss ε²/2"),
            (ax_sharp, "sharpness", gf_sharpness, "sharpness S(t)"),
        ):
            gd = table[column].to_numpy()
            if column == "loss":
                gd, gf = np.where(gd > 0, gd, np.nan), np.where(gf > 0, gf, np.nan)
            ax.plot(t, gd, color="C0", linewidth=1.2, marker="." if t.size <= 200 else None, label="gradient descent")
            ax.plot(fine, gf, color="C1", linewidth=1.2, linestyle="--", label="gradient flow (time η·t)")
            ax.set_ylabel(name)
    ax_loss.set_yscale("log")
    for ax, column in ((ax_sharp, "sharpness"), (ax_q, "q_ratio")):
        if _spans_decades(table[column].to_numpy()):
            ax.set_yscale("log")
    ax_sharp.axhline(2.0 / trace.eta, color="red", linestyle=":", label="2/η")
    ax_sharp.axhline(trace.lambda_gf, color="C1", linestyle=":", linewidth=0.8, label="λ_GF (gradient-flow limit)")
    ax_q.plot(t, table["q_ratio"].to_numpy(), color="C0", linewidth=1.2, label="gradient descent")
    ax_q.axhline(1.0, color="C1", linestyle="--", label="gradient flow (Q conserved)")
    ax_q.set_ylabel("Q(t)/Q(0)")
    ax_q.set_xlabel("step t (gradient-flow time / η)")
    for ax in (ax_loss, ax_sharp, ax_q):
        ax.legend(loc="best", fontsize="small")
        ax.grid(alpha=0.3)
    figure.suptitle(f"trace: η = {trace.eta:g}, Φ = {trace.phi:g}; {trace.status.label} at T = {trace.steps}")
    return figure
