"""The Python API: run a sweep, open its output, summarize, label and plot it.

Stable names, re-exported by :mod:`lin2net` (docs/python.md)::

    import lin2net

    table = lin2net.run({"name": "demo", "trajectories": 50, "grid": {"eta": [0.1, 0.5], "lambda0": 1.0}})
    out = lin2net.open("runs/smoke")            # verified on open
    out.trajectories()                          # pyarrow.Table (.to_pandas(); out.to_polars())
    out.summary(by=["eta"], where="d = 10")     # pandas.DataFrame, as `lin2net summarize`
    da = out.to_xarray("q_ratio", "median")     # xarray.DataArray over the grid axes
    da.sel(d=10).plot()
    out.plot(kind="line", x="eta", value="sharpness_T", hue="d")   # a matplotlib Figure
    tr = lin2net.trace(eta=0.5, lambda0=3.0, d=10)                 # one trajectory, step by step

:class:`Output` wraps the opened output the CLI's commands use
(:class:`lin2net.store.opened.OpenedOutput`: the config read once, every
shard file verified before it counts), and every reduction goes through the
same code as the CLI (:mod:`lin2net.analysis.summary`), so the numbers equal
the CLI's.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lin2net.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from matplotlib.figure import Figure

    from lin2net.analysis.trace import Trace
    from lin2net.store.opened import OpenedOutput
    from lin2net.sweep.config import SweepConfig

__all__ = ["Output", "open", "run", "trace"]


def _config(config: SweepConfig | Mapping[str, Any] | str | Path) -> SweepConfig:
    """A SweepConfig from a SweepConfig, a dict (the YAML's keys) or a YAML file path."""
    from lin2net.sweep.config import SweepConfig, load_config, parse_config

    if isinstance(config, SweepConfig):
        return config
    if isinstance(config, Mapping):
        return parse_config(dict(config))
    if isinstance(config, str | Path):
        return load_config(Path(config))
    raise ConfigError("config", f"must be a dict, a YAML file path or a SweepConfig, got {type(config).__name__}")


def run(
    config: SweepConfig | Mapping[str, Any] | str | Path,
    out: str | Path | None = None,
    *,
    workers: int | None = 1,
    overwrite: bool = False,
    extend: bool = False,
) -> pa.Table | Output:
    """Run a sweep.

    With ``out`` None: in memory, as far as the caller sees; the shards go to a
    temporary directory that is removed afterwards, and the verified trajectory
    table (pyarrow) is returned. With ``out``: as ``lin2net sweep CONFIG -o OUT``
    (resuming a run of the same config, ``overwrite``/``extend`` as the CLI
    flags), returning the opened :class:`Output`. ``workers`` local processes
    (default 1: notebooks run in one process; None: all cores)."""
    from lin2net.store.outdir import read_trajectories
    from lin2net.sweep.runner import run_sweep

    parsed = _config(config)
    if out is None:
        with tempfile.TemporaryDirectory(prefix="lin2net-run-") as temp:
            path = Path(temp) / "out"
            run_sweep(parsed, path, workers=workers)
            table: pa.Table = read_trajectories(path)
            return table
    run_sweep(parsed, Path(out), workers=workers, overwrite=overwrite, extend=extend)
    return open(out)


def open(out: str | Path) -> Output:  # noqa: A001 - lin2net.open(OUT) is the documented name
    """The output directory of a sweep, opened: its config is read and its
    shard files are verified now (OutputError for a directory that is not a
    lin2net output, CorruptShard naming a file that fails verification)."""
    from lin2net.store.opened import open_output

    opened = open_output(Path(out))
    opened.shards  # noqa: B018 - verifies every shard file now, as documented
    return Output(opened)


@dataclass
class Output:
    """An opened, verified sweep output (see :func:`open`): ``opened`` is the
    :class:`~lin2net.store.opened.OpenedOutput` the CLI reads through."""

    opened: OpenedOutput = field(repr=False)

    @property
    def path(self) -> Path:
        return self.opened.path

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config, as plain data (as in ``OUT/config.yaml``)."""
        return self.opened.resolved

    @functools.cached_property
    def _table(self) -> pa.Table:
        return self.opened.trajectories()

    @property
    def axes(self) -> dict[str, list[Any]]:
        """The grid axes of the sweep and their values (those of the resolved config)."""
        grid = self.config.get("grid", {})
        return {k: list(v) if isinstance(v, list) else [v] for k, v in grid.items()}

    def trajectories(self, columns: Sequence[str] | None = None, where: str | None = None) -> pa.Table:
        """Every trajectory row (docs/columns.md) as a pyarrow Table; ``columns``
        selects columns, ``where`` is a DuckDB expression that keeps rows."""
        from lin2net.analysis import filters

        table = filters.apply(self._table, where)
        return table.select(list(columns)) if columns is not None else table

    def to_pandas(self, where: str | None = None) -> pd.DataFrame:
        """:meth:`trajectories` as a pandas DataFrame (dictionary columns as categoricals)."""
        frame: pd.DataFrame = self.trajectories(where=where).to_pandas()
        return frame

    def to_polars(self, where: str | None = None) -> Any:
        """:meth:`trajectories` as a polars DataFrame (needs polars installed)."""
        try:
            import polars as pl
        except ImportError:
            raise ImportError("to_polars needs polars: pip install polars") from None
        return pl.from_arrow(self.trajectories(where=where))

    def summary(self, by: Sequence[str] | str | None = None, where: str | None = None) -> pd.DataFrame:
        """The table of ``lin2net summarize`` (docs/columns.md): one row per grid point,
        or per combination of the ``by`` axes; ``where`` keeps trajectories."""
        from lin2net.analysis.summary import summarize

        axes = [by] if isinstance(by, str) else by
        return summarize(self.opened, by=list(axes) if axes else None, where=where)

    def to_xarray(self, value: str = "q_ratio", stat: str = "median", where: str | None = None) -> Any:
        """One statistic per grid point as an ``xarray.DataArray`` whose dimensions
        are the swept grid axes (axes with one value become scalar coordinates),
        e.g. ``out.to_xarray("q_ratio").sel(d=10).plot()``. ``value`` is a column
        or a DuckDB expression, ``stat`` one of ``lin2net plot --stat``; the
        statistics are ``lin2net plot``'s. The fraction converged and the
        trajectories per point come along as coordinates. Needs xarray
        (``pip install lin2net[xarray]``)."""
        try:
            import xarray as xr
        except ImportError:
            raise ImportError("to_xarray needs xarray: pip install 'lin2net[xarray]'") from None
        import pyarrow.compute as pc

        from lin2net.analysis import filters
        from lin2net.analysis.summary import statistics_table

        table = filters.apply(self._table, where, [value])
        if table.num_rows == 0:
            raise ConfigError("where", f"no trajectories of {self.path} satisfy it")
        # Dimensions: the grid axes that still take several values after ``where``.
        distinct = {k: pc.unique(table.column(k)).to_pylist() for k in self.axes if k in table.column_names}
        swept = [k for k, v in distinct.items() if len(v) > 1]
        fixed = {k: v[0] for k, v in distinct.items() if len(v) == 1}
        frame = statistics_table(table, swept, [value], stat)
        indexed = frame.set_index(swept) if swept else frame
        data = xr.Dataset.from_dataframe(indexed[[value, "frac_converged", "trajectories"]])
        array = data[value].rename(f"{stat} {value}")
        array = array.assign_coords(frac_converged=data["frac_converged"], trajectories=data["trajectories"])
        array = array.assign_coords(fixed)
        array.attrs.update({"value": value, "stat": stat, "sweep": str(self.config.get("name", self.path.name))})
        if where:
            array.attrs["where"] = where
        return array

    def plot(self, kind: str = "heatmap", path: str | Path | None = None, **options: Any) -> Figure:
        """The figure of ``lin2net plot OUT --kind KIND`` as a matplotlib Figure
        (shown inline in a notebook); written to ``path`` too when given.
        ``options`` are the CLI's: x, y, value, stat, where, xscale, yscale
        (heatmap), x, value, hue, facet, stat, where, xscale, yscale (line)."""
        from lin2net.analysis.plotting import (
            DEFAULT_VALUES,
            _save,
            check_figure_path,
            check_scale,
            draw_lines,
            draw_sweep_grid,
            line_data,
            sweep_grid,
        )

        if path is not None:
            check_figure_path(Path(path))
        if kind == "heatmap":
            value = options.pop("value", None)
            scales = {k: options.pop(k) for k in ("xscale", "yscale") if k in options}
            where = options.get("where")
            grid = sweep_grid(self.opened, values=DEFAULT_VALUES if value is None else (value,), **options)
            check_scale("xscale", scales.get("xscale"), grid.x_values)
            check_scale("yscale", scales.get("yscale"), grid.y_values)
            figure = draw_sweep_grid(grid, where=where, **scales)
        elif kind == "line":
            scales = {k: options.pop(k) for k in ("xscale", "yscale") if k in options}
            options.setdefault("x", "eta" if "eta" in self.axes else "eta_lambda0")
            figure = draw_lines(line_data(self.opened, **options), **scales)
        else:
            raise ConfigError("kind", f"unknown kind {kind!r}; choose heatmap or line")
        if path is not None:
            _save(figure, Path(path))
        return figure


def trace(
    eta: float,
    lambda0: float | None = None,
    *,
    phi: float = 1.0,
    d: int = 10,
    seed: int = 0,
    init: str = "sphere",
    trajectory: int = 0,
    a: Sequence[float] | None = None,
    b: Sequence[float] | None = None,
    max_steps: int = 100_000,
    loss_tol: float = 1e-10,
) -> Trace:
    """One GD trajectory step by step, as ``lin2net trace --eta ...``: trajectory
    ``trajectory`` of the sweep grid point (eta, lambda0, phi, d) with root seed
    ``seed``, or the explicit start ``a``, ``b``. Returns a
    :class:`lin2net.analysis.trace.Trace`: ``.table`` (pandas, the per-step
    columns of docs/columns.md), ``.status``, ``.steps``, ``.lambda_gf``; draw it
    with :func:`lin2net.analysis.plotting.draw_trace`."""
    from lin2net.analysis.trace import start_from_vectors, sweep_initialization, trace_trajectory
    from lin2net.dynamics.gd.reference import StopRule

    if (a is None) != (b is None):
        raise ConfigError("a/b", "give both a and b, or neither")
    if a is not None and b is not None:
        start = start_from_vectors(list(a), list(b), phi)
    else:
        if lambda0 is None:
            raise ConfigError("lambda0", "missing: give lambda0 (and d, seed, init), or a and b")
        start = sweep_initialization(
            eta=eta, lambda0=lambda0, phi=phi, d=d, seed=seed, init=init, trajectory=trajectory
        )
    return trace_trajectory(start, eta, StopRule(loss_tol, max_steps))
