"""Per-cell (or per-group) statistics of a sweep, computed by DuckDB.

Statistics, per group of trajectories:

* ``trajectories`` and the fractions ``frac_converged``, ``frac_diverged``,
  ``frac_max_steps``;
* ``steps_median``, ``steps_iqr``: quantiles of the convergence time, with
  trajectories that did not converge counted as never converging (T = ∞), so
  the median is exact whenever at least half converged and ``inf`` otherwise;
* ``q_ratio_*``, ``sharpness_T_*``: median and interquartile range over the
  converged trajectories (where the limit was reached; NaN if none);
* ``lambda_gf_median``: median gradient-flow limit sharpness, all trajectories.

The shard files are read once, verified (:func:`lin2net.store.read_trajectories`),
and the group-by runs in DuckDB over the Arrow table in memory: one query,
no Python per cell. Quantiles follow NumPy exactly (``np.quantile``'s
``linear`` method, and ``inverted_cdf`` for the censored step counts), so the
numbers equal :func:`cell_statistic`, the NumPy reference, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from lin2net.errors import ConfigError
from lin2net.store import read_trajectories

AXES = ("eta", "lambda0", "phi", "d", "eta_lambda0", "init")
VALUE_COLUMNS = ("status", "steps", "q_ratio", "sharpness_T", "lambda_gf")
STATS = ("median", "mean", "min", "max", "q25", "q75", "frac_converged", "frac_diverged", "frac_max_steps")
FRACTION_STATS = {"frac_converged": "converged", "frac_diverged": "diverged", "frac_max_steps": "max_steps"}
QUANTILES = {"q25": 0.25, "median": 0.5, "q75": 0.75}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _linear_quantile(values: str, q: float) -> str:
    """SQL for np.quantile(x, q) (method 'linear') of the sorted DuckDB list
    ``values``; NaN for an empty list. NumPy's lerp: a + (b − a)·t below
    t = 0.5, b − (b − a)·(1 − t) from there on."""
    h = f"((len({values}) - 1) * {q!r})"
    lo = f"floor({h})"
    t = f"({h} - {lo})"
    a = f"{values}[{lo}::BIGINT + 1]"
    b = f"{values}[least({lo}::BIGINT + 2, len({values}))]"
    return (
        f"CASE WHEN len({values}) = 0 THEN 'nan'::DOUBLE "
        f"WHEN {t} >= 0.5 THEN {b} - ({b} - {a}) * (1 - {t}) "
        f"ELSE {a} + ({b} - {a}) * {t} END"
    )


def _inverted_cdf(values: str, q: float) -> str:
    """SQL for np.quantile(x, q, method='inverted_cdf') of a sorted list: the
    element at ceil(n·q) − 1 (clipped at 0); NaN for an empty list."""
    index = f"greatest(ceil(len({values}) * {q!r})::BIGINT, 1)"
    return f"CASE WHEN len({values}) = 0 THEN 'nan'::DOUBLE ELSE {values}[{index}] END"


def _converged_sorted(value: str) -> str:
    column = _quote(value)
    return (
        f"list_sort(coalesce(list({column}::DOUBLE) FILTER "
        f"(WHERE status = 'converged' AND NOT isnan({column}::DOUBLE)), []))"
    )


def _censored_steps_sorted() -> str:
    return "list_sort(list(CASE WHEN status = 'converged' THEN steps::DOUBLE ELSE 'inf'::DOUBLE END))"


def statistic_sql(value: str, stat: str) -> str:
    """A DuckDB aggregate equal to :func:`cell_statistic` for one group."""
    if stat in FRACTION_STATS:
        return f"avg(CASE WHEN status = '{FRACTION_STATS[stat]}' THEN 1.0 ELSE 0.0 END)"
    if value == "steps" and stat in QUANTILES:
        return _inverted_cdf(_censored_steps_sorted(), QUANTILES[stat])
    values = _converged_sorted(value)
    if stat in QUANTILES:
        return _linear_quantile(values, QUANTILES[stat])
    if stat == "mean":
        return f"CASE WHEN len({values}) = 0 THEN 'nan'::DOUBLE ELSE list_avg({values}) END"
    if stat == "min":
        return f"CASE WHEN len({values}) = 0 THEN 'nan'::DOUBLE ELSE {values}[1] END"
    if stat == "max":
        return f"CASE WHEN len({values}) = 0 THEN 'nan'::DOUBLE ELSE {values}[len({values})] END"
    raise ConfigError("--stat", f"unknown statistic {stat!r}; choose from {', '.join(STATS)}")


def _query(table: pa.Table, keys: Sequence[str], aggregates: dict[str, str]) -> pd.DataFrame:
    import duckdb

    select = ", ".join([*map(_quote, keys), *(f"{sql} AS {_quote(name)}" for name, sql in aggregates.items())])
    group = f" GROUP BY {', '.join(map(_quote, keys))}" if keys else ""
    connection = duckdb.connect()
    try:
        connection.register("trajectories", table)
        frame: pd.DataFrame = connection.sql(f"SELECT {select} FROM trajectories{group}").df()
    finally:
        connection.close()
    for key in keys:
        if isinstance(frame[key].dtype, pd.CategoricalDtype):
            frame[key] = frame[key].astype(str)
    return frame


def summary_aggregates() -> dict[str, str]:
    """Column name -> DuckDB aggregate, for the summary columns of the module doc."""
    aggregates = {"trajectories": "count(*)"}
    for name in FRACTION_STATS:
        aggregates[name] = statistic_sql("status", name)
    for value in ("steps", "q_ratio", "sharpness_T"):
        q25, q50, q75 = (statistic_sql(value, stat) for stat in ("q25", "median", "q75"))
        aggregates[f"{value}_median"] = q50
        # inf (censored) stays inf; NaN (no data) stays NaN
        aggregates[f"{value}_iqr"] = f"CASE WHEN isinf({q75}) THEN {q75} ELSE {q75} - {q25} END"
    gf = "list_sort(list(lambda_gf))"
    aggregates["lambda_gf_median"] = (
        f"CASE WHEN count_if(isnan(lambda_gf)) > 0 THEN 'nan'::DOUBLE ELSE {_linear_quantile(gf, 0.5)} END"
    )
    return aggregates


def summarize(out: Path, by: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per cell, or per combination of the ``by`` axes, sorted by axes."""
    if by:
        unknown = [axis for axis in by if axis not in AXES]
        if unknown:
            raise ConfigError("--by", f"unknown axis {unknown[0]!r}; choose from {', '.join(AXES)}")
    keys = list(dict.fromkeys(by)) if by else ["cell_id", *AXES]
    table = read_trajectories(Path(out), list(dict.fromkeys([*keys, *VALUE_COLUMNS])))
    frame = _query(table, keys, summary_aggregates())
    if frame.empty:
        return frame
    frame["trajectories"] = frame["trajectories"].astype(np.int64)
    sort = [a for a in (by or AXES) if a in frame.columns]
    return frame.sort_values(sort, kind="stable").reset_index(drop=True)


def grouped_statistics(out: Path, keys: Sequence[str], values: Sequence[str], stat: str) -> pd.DataFrame:
    """One row per combination of ``keys`` (trajectory columns): the keys,
    ``trajectories``, ``frac_converged`` and, per value, ``stat`` of it
    (:func:`cell_statistic`'s semantics), in a column named as the value."""
    if stat not in STATS:
        raise ConfigError("--stat", f"unknown statistic {stat!r}; choose from {', '.join(STATS)}")
    keys = list(dict.fromkeys(keys))
    columns = list(dict.fromkeys([*keys, "status", *(v for v in values if v != "status")]))
    table = read_trajectories(Path(out), columns)
    aggregates = {"trajectories": "count(*)", "frac_converged": statistic_sql("status", "frac_converged")}
    for value in values:
        aggregates[value] = statistic_sql(value, stat)
    frame = _query(table, keys, aggregates)
    frame["trajectories"] = frame["trajectories"].astype(np.int64)
    return frame.sort_values(keys, kind="stable").reset_index(drop=True) if keys else frame


def statistics(table: pa.Table) -> dict[str, float | int]:
    """The statistics of the module doc for one group, in NumPy: the reference
    the DuckDB query is tested against."""
    status = np.asarray(table.column("status").cast(pa.string()).to_numpy(zero_copy_only=False))
    stats: dict[str, float | int] = {"trajectories": len(status)}
    for name in FRACTION_STATS:
        stats[name] = cell_statistic(status, status, "status", name)
    for name in ("steps", "q_ratio", "sharpness_T"):
        values = table.column(name).to_numpy()
        q25, q50, q75 = (cell_statistic(values, status, name, stat) for stat in QUANTILES)
        stats[f"{name}_median"] = q50
        stats[f"{name}_iqr"] = q75 - q25 if np.isfinite(q75) else q75  # inf (censored) or NaN (no data)
    lambda_gf = table.column("lambda_gf").to_numpy()
    stats["lambda_gf_median"] = float(np.median(lambda_gf)) if len(status) else math.nan
    return stats


def cell_statistic(values: Any, status: Any, value: str, stat: str) -> float:
    """One statistic (:data:`STATS`) of ``values`` for a group of trajectories, in NumPy.

    ``frac_*`` count statuses; the others reduce the converged trajectories'
    values (NaN when there are none) — except the quantiles of ``steps``, which
    count trajectories that did not converge as never converging (T = ∞).
    """
    status = np.asarray(status)
    if stat in FRACTION_STATS:
        return float(np.mean(status == FRACTION_STATS[stat])) if status.size else math.nan
    converged = status == "converged"
    data = np.asarray(values, dtype=np.float64)
    if value == "steps" and stat in QUANTILES:
        if data.size == 0:
            return math.nan
        # 'inverted_cdf' returns observed step counts, so a censored (infinite)
        # quantile stays inf instead of turning into NaN through interpolation.
        censored = np.where(converged, data, np.inf)
        return float(np.quantile(censored, QUANTILES[stat], method="inverted_cdf"))
    data = data[converged]
    data = data[~np.isnan(data)]
    if data.size == 0:
        return math.nan
    if stat == "mean":
        return float(np.mean(data))
    if stat == "min":
        return float(np.min(data))
    if stat == "max":
        return float(np.max(data))
    return float(np.quantile(data, QUANTILES[stat]))
