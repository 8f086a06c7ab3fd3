"""Figures: heatmaps of a sweep over two axes (the seed paper's Figure 3) and traces.

:func:`plot_sweep` reads a sweep cell by cell (only the columns it needs),
reduces each grid point to one number per panel with a statistic, and draws
heatmaps over two axes (``x``, ``y``), one row of panels per combination of
the remaining axes that take several values (facets). By default it draws
Figure 3: median Q(T)/Q(0) and median convergence time over η and λ(0).

Statistics (:data:`STATS`): ``median``, ``mean``, ``min``, ``max``, ``q25``,
``q75`` of the value over the converged trajectories (where the limit was
reached) — except the quantiles of ``steps``, which count trajectories that
did not converge as never converging (T = ∞), as ``lin2net summarize`` does;
``frac_converged``, ``frac_diverged``, ``frac_max_steps`` ignore the value.
Grid points where fewer than half the trajectories converged are drawn
hatched grey (for all but the ``frac_*`` statistics). Axes are logarithmic
where their values are positive and geometric (or span a decade); colour
scales are logarithmic for non-negative values (fractions: linear, 0 to 1).

:func:`plot_trace` draws one traced trajectory (:mod:`lin2net.trace`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lin2net.errors import ConfigError
from lin2net.store import cell_files, iter_cell_tables, read_resolved_config
from lin2net.summary import FRACTION_STATS, STATS, cell_statistic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from lin2net.trace import Trace

PLOT_AXES = ("eta", "lambda0", "phi", "d", "eta_lambda0")
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
DEFAULT_VALUES = ("q_ratio", "steps")
LABELS = {
    "eta": "η",
    "lambda0": "λ(0)",
    "phi": "Φ",
    "d": "d",
    "eta_lambda0": "η·λ(0)",
    "q_ratio": "Q(T)/Q(0)",
    "steps": "convergence time T (steps)",
    "lambda_T": "λ(T)",
    "sharpness_T": "sharpness at T",
    "lambda_gf": "gradient-flow sharpness λ_GF",
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


@dataclass
class SweepGrid:
    """Everything :func:`plot_sweep` draws, computed from the sweep's files."""

    name: str
    x: str
    y: str
    x_values: np.ndarray
    y_values: np.ndarray
    panels: list[Panel] = field(default_factory=list)
    phi_values: tuple[float, ...] = ()


def _numeric_columns(out: Path) -> list[str]:
    files = cell_files(out)
    if not files:
        raise ConfigError("", f"{out} holds no finished cells yet")
    schema = pq.read_schema(files[0])
    return [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]


def sweep_grid(
    out: Path,
    *,
    x: str | None = None,
    y: str | None = None,
    values: Sequence[str] = DEFAULT_VALUES,
    stat: str = "median",
) -> SweepGrid:
    """Reduce a sweep to heatmap panels (see module doc); bad choices raise ConfigError."""
    config = read_resolved_config(out)
    grid_keys = [k for k in config.get("grid", {}) if k in PLOT_AXES]
    x = x or ("eta" if "eta" in grid_keys else "eta_lambda0")
    y = y or "lambda0"
    for option, axis in (("--x", x), ("--y", y)):
        if axis not in PLOT_AXES:
            raise ConfigError(option, f"unknown axis {axis!r}; choose from {', '.join(PLOT_AXES)}")
    if x == y:
        raise ConfigError("--y", f"x and y must differ, both are {x!r}")
    if stat not in STATS:
        raise ConfigError("--stat", f"unknown statistic {stat!r}; choose from {', '.join(STATS)}")
    numeric = _numeric_columns(out)
    for value in values:
        if value not in numeric:
            raise ConfigError("--value", f"{value!r} is not a numeric column; choose from {', '.join(numeric)}")

    covered = {x, y}
    stepsize = {"eta", "lambda0", "eta_lambda0"}
    if len(covered & stepsize) >= 2:  # any two of η, λ0, η·λ0 fix the third
        covered |= stepsize
    candidates = [k for k in grid_keys if k not in covered]
    columns = list(dict.fromkeys([x, y, *candidates, "phi", *values, "status"]))
    keys = [x, y, *candidates]

    groups: dict[tuple[Any, ...], list[pa.Table]] = defaultdict(list)
    for table in iter_cell_tables(out, columns):
        if table.num_rows:
            first = table.slice(0, 1).to_pylist()[0]
            groups[tuple(first[k] for k in keys)].append(table)
    if not groups:
        raise ConfigError("", f"{out} holds no finished cells yet")

    facet_axes = [k for i, k in enumerate(candidates) if len({key[2 + i] for key in groups}) > 1]
    x_values = np.array(sorted({key[0] for key in groups}), dtype=np.float64)
    y_values = np.array(sorted({key[1] for key in groups}), dtype=np.float64)
    facets = sorted({tuple(key[2 + candidates.index(k)] for k in facet_axes) for key in groups})
    phis = sorted(
        {float(v) for tables in groups.values() for t in tables for v in t.column("phi").unique().to_pylist()}
    )
    grid = SweepGrid(str(config.get("name", Path(out).name)), x, y, x_values, y_values, phi_values=tuple(phis))

    shape = (len(y_values), len(x_values))
    for facet in facets:
        cells = {
            key[:2]: pa.concat_tables(tables)
            for key, tables in groups.items()
            if tuple(key[2 + candidates.index(k)] for k in facet_axes) == facet
        }
        frac = np.full(shape, np.nan)
        reduced = {value: np.full(shape, np.nan) for value in values}
        for (xv, yv), table in cells.items():
            i, j = int(np.searchsorted(x_values, xv)), int(np.searchsorted(y_values, yv))
            status = np.asarray(table.column("status").to_numpy(zero_copy_only=False))
            frac[j, i] = float(np.mean(status == "converged"))
            for value in values:
                reduced[value][j, i] = cell_statistic(table.column(value).to_numpy(), status, value, stat)
        facet_map = dict(zip(facet_axes, facet, strict=True))
        for value in values:
            grid.panels.append(Panel(value, stat, facet_map, reduced[value], frac))
    return grid


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
    out: Path,
    path: Path,
    *,
    x: str | None = None,
    y: str | None = None,
    value: str | None = None,
    stat: str = "median",
) -> Path:
    """Draw the heatmaps of :func:`sweep_grid` to ``path`` (.png, .svg or .pdf)."""
    check_figure_path(path)
    grid = sweep_grid(out, x=x, y=y, values=DEFAULT_VALUES if value is None else (value,), stat=stat)
    figure = draw_sweep_grid(grid)
    _save(figure, path)
    return path


def draw_sweep_grid(grid: SweepGrid) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    n_values = len({p.value for p in grid.panels})
    ncols = n_values if n_values > 1 else min(3, len(grid.panels))
    nrows = math.ceil(len(grid.panels) / ncols)
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
        figure.colorbar(mesh, ax=ax, extend=extend, label=f"{panel.stat} {label(panel.value)}")
        if panel.stat not in FRACTION_STATS:
            rows, cols = np.nonzero(panel.frac_converged < 0.5)
            if rows.size:
                boxes = [
                    Rectangle((x_edges[i], y_edges[j]), x_edges[i + 1] - x_edges[i], y_edges[j + 1] - y_edges[j])
                    for j, i in zip(rows, cols, strict=True)
                ]
                ax.add_collection(
                    PatchCollection(boxes, facecolor="0.82", edgecolor="0.45", hatch="///", linewidth=0.0)
                )
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
        ax.set_title(f"{panel.stat} {label(panel.value)}" + (f"  ({_facet_title(panel.facet)})" if panel.facet else ""))
    for k in range(len(grid.panels), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    if handles:
        figure.legend(handles=list(handles.values()), loc="outside lower center", ncols=min(4, len(handles)))
    figure.suptitle(f"lin2net sweep {grid.name}")
    return figure


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


def _reference_curves(ax: Axes, grid: SweepGrid, panel: Panel) -> dict[str, Any]:
    """η·λ0 = 2, η = 2/√(λ0² + 4Φ²) and η = 1/Φ, where the axes are two of η, λ0, η·λ0."""
    axes = {grid.x, grid.y}
    if "lambda0" not in axes or not axes & {"eta", "eta_lambda0"}:
        return {}
    phi = panel.facet.get("phi", grid.phi_values[0] if len(grid.phi_values) == 1 else None)
    if phi is None:
        return {}
    lam_values = grid.x_values if grid.x == "lambda0" else grid.y_values
    step_axis = grid.y if grid.x == "lambda0" else grid.x
    lam = np.geomspace(lam_values.min() / 10, lam_values.max() * 10, 400) if lam_values.min() > 0 else lam_values
    curves = {"η·λ(0) = 2": 2.0 / lam, "η = 2/√(λ(0)² + 4Φ²)": 2.0 / np.hypot(lam, 2.0 * phi)}
    if phi > 0:
        curves["η = 1/Φ"] = np.full_like(lam, 1.0 / phi)
    styles = {"η·λ(0) = 2": ("black", "-"), "η = 2/√(λ(0)² + 4Φ²)": ("red", "--"), "η = 1/Φ": ("orange", ":")}
    lines = {}
    for text, eta in curves.items():
        coordinate = eta if step_axis == "eta" else eta * lam
        xs, ys = (lam, coordinate) if grid.x == "lambda0" else (coordinate, lam)
        color, style = styles[text]
        (line,) = ax.plot(xs, ys, color=color, linestyle=style, linewidth=1.6, label=text)
        lines[text] = line
    return lines


def _save(figure: Figure, path: Path) -> None:
    from lin2net.store import atomic_write

    suffix = Path(path).suffix.lower().lstrip(".")
    atomic_write(Path(path), lambda temp: figure.savefig(temp, format=suffix, dpi=120))


def plot_trace(trace: Trace, path: Path) -> Path:
    """Loss, sharpness against 2/η and Q(t)/Q(0) of a trace, with the gradient flow
    from the same start overlaid at GF time η·t."""
    check_figure_path(path)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from lin2net.closed_forms import sharpness

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
    _save(figure, path)
    return path
