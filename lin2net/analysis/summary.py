"""Per-cell (or per-group) statistics of a sweep, computed by DuckDB.

Statistics, per group of trajectories:

* ``trajectories`` and the fractions ``frac_converged``, ``frac_stable``
  (converged at a stable minimum: η·S(T) < 2, see below), ``frac_diverged``,
  ``frac_max_steps``;
* ``steps_median``, ``steps_iqr``: quantiles of the convergence time, with
  trajectories that did not converge counted as never converging (T = ∞), so
  the median is exact whenever at least half converged and ``inf`` otherwise;
* ``steps_q25``, ``steps_q75`` beside them;
* ``q_ratio_*``, ``sharpness_T_*``: median, ``q25``, ``q75`` and interquartile
  range over the converged trajectories (where the limit was reached; NaN if
  none); ``log_q_ratio_median``, the median of log Q(T)/Q(0), which stays
  finite where Q(T)/Q(0) underflows to 0;
* ``lambda_gf_median``: median gradient-flow limit sharpness, all trajectories;
* SGD sweeps only: ``loss_T_median``, ``q_ratio_window_median``,
  ``loss_window_median``, ``sharpness_window_median``, ``lambda_window_median``,
  medians over every trajectory (NaN excluded).

A trajectory *converged* when its loss reached ``loss_tol``; at η·S(T) ≥ 2 that
minimum is unstable and GD was only passing through it (Theorem 2's
"passing" outcome in ``lin2net check``). ``frac_stable`` counts the converged
ones with η·S(T) < 2. The SGD window columns and ``loss_T`` (:data:`ALL_TRAJECTORY_VALUES`)
are reduced over every trajectory, since noisy SGD never converges.

``where`` (a DuckDB expression, :mod:`lin2net.analysis.filters`) keeps only
the trajectories it holds for; a value that is not a column is a DuckDB
expression computed per trajectory.

The shard files are read once, verified (:func:`lin2net.store.outdir.read_trajectories`),
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

from lin2net.analysis import filters
from lin2net.errors import ConfigError
from lin2net.store.outdir import read_config, read_trajectories

AXES = ("eta", "lambda0", "phi", "d", "eta_lambda0", "init", "batch_size", "label_noise")
SGD_AXES = ("batch_size", "label_noise")  # only in SGD sweeps' tables
VALUE_COLUMNS = ("status", "steps", "q_ratio", "sharpness_T", "lambda_gf")
STATS = (
    "median",
    "mean",
    "min",
    "max",
    "q25",
    "q75",
    "frac_converged",
    "frac_stable",
    "frac_diverged",
    "frac_max_steps",
)
FRACTION_STATS = {"frac_converged": "converged", "frac_diverged": "diverged", "frac_max_steps": "max_steps"}
RATE_STATS = ("frac_converged", "frac_stable", "frac_diverged", "frac_max_steps")
"""Statistics that count trajectories and ignore the value."""
STABLE_SQL = "avg(CASE WHEN status = 'converged' AND eta * sharpness_T < 2 THEN 1.0 ELSE 0.0 END)"
ALL_TRAJECTORY_VALUES = frozenset(
    ("loss_T", "q_ratio_window", "log_q_ratio_window", "sharpness_window", "loss_window", "lambda_window")
)
"""SGD columns reduced over every trajectory (not only the converged ones)."""
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


class _Query:
    """A two-level DuckDB query: per group, counts and each sorted list once
    (inner level), then the statistics read off the lists (outer level)."""

    def __init__(self, all_trajectories: frozenset[str] = ALL_TRAJECTORY_VALUES) -> None:
        self.inner: dict[str, str] = {}
        self.outer: dict[str, str] = {}
        self.all_trajectories = all_trajectories  # values reduced over every trajectory

    def aggregate(self, sql: str) -> str:
        """Name of the inner-level column computing ``sql`` (added once)."""
        for name, expression in self.inner.items():
            if expression == sql:
                return name
        name = f"_{len(self.inner)}"
        self.inner[name] = sql
        return name

    def converged_sorted(self, value: str) -> str:
        """The sorted values over the converged trajectories (over every
        trajectory for :attr:`all_trajectories`), NaN excluded."""
        column = _quote(value)
        converged = "" if value in self.all_trajectories else "status = 'converged' AND "
        return self.aggregate(
            f"list_sort(coalesce(list({column}::DOUBLE) FILTER (WHERE {converged}NOT isnan({column}::DOUBLE)), []))"
        )

    def statistic(self, value: str, stat: str) -> str:
        """Outer-level SQL equal to :func:`cell_statistic` of one group."""
        if stat in FRACTION_STATS:
            return self.aggregate(f"avg(CASE WHEN status = '{FRACTION_STATS[stat]}' THEN 1.0 ELSE 0.0 END)")
        if stat == "frac_stable":
            return self.aggregate(STABLE_SQL)
        if value == "steps" and stat in QUANTILES:
            censored = self.aggregate(
                "list_sort(list(CASE WHEN status = 'converged' THEN steps::DOUBLE ELSE 'inf'::DOUBLE END))"
            )
            return _inverted_cdf(censored, QUANTILES[stat])
        values = self.converged_sorted(value)
        if stat in QUANTILES:
            return _linear_quantile(values, QUANTILES[stat])
        if stat == "mean":
            return f"CASE WHEN len({values}) = 0 THEN 'nan'::DOUBLE ELSE list_avg({values}) END"
        if stat == "min":
            return f"CASE WHEN len({values}) = 0 THEN 'nan'::DOUBLE ELSE {values}[1] END"
        if stat == "max":
            return f"CASE WHEN len({values}) = 0 THEN 'nan'::DOUBLE ELSE {values}[len({values})] END"
        raise ConfigError("--stat", f"unknown statistic {stat!r}; choose from {', '.join(STATS)}")

    def run(self, table: pa.Table, keys: Sequence[str]) -> pd.DataFrame:
        import duckdb

        quoted = [_quote(k) for k in keys]
        inner = ", ".join([*quoted, *(f"{sql} AS {name}" for name, sql in self.inner.items())])
        outer = ", ".join([*quoted, *(f"{sql} AS {_quote(name)}" for name, sql in self.outer.items())])
        group = f" GROUP BY {', '.join(quoted)}" if keys else ""
        sql = f"WITH g AS (SELECT {inner} FROM trajectories{group}) SELECT {outer} FROM g"
        connection = duckdb.connect()
        try:
            connection.register("trajectories", table)
            frame: pd.DataFrame = connection.sql(sql).df()
        finally:
            connection.close()
        for key in keys:
            if isinstance(frame[key].dtype, pd.CategoricalDtype):
                frame[key] = frame[key].astype(str)
        if "trajectories" in frame:
            frame["trajectories"] = frame["trajectories"].astype(np.int64)
        return frame


SGD_SUMMARY_VALUES = ("loss_T", "q_ratio_window", "loss_window", "sharpness_window", "lambda_window")
"""SGD sweeps add the median of these over every trajectory that has them (noisy
SGD never converges: its window averages are what it settles to)."""


def summary_query(sgd: bool = False) -> _Query:
    """The summary columns of the module doc, as one query (with ``sgd``, also
    ``<value>_median`` of :data:`SGD_SUMMARY_VALUES` over all trajectories)."""
    query = _Query()
    query.outer["trajectories"] = query.aggregate("count(*)")
    for name in RATE_STATS:
        query.outer[name] = query.statistic("status", name)
    for value in ("steps", "q_ratio", "sharpness_T"):
        q25, q50, q75 = (query.statistic(value, stat) for stat in ("q25", "median", "q75"))
        query.outer[f"{value}_median"] = q50
        # inf (censored) stays inf; NaN (no data) stays NaN
        query.outer[f"{value}_iqr"] = f"CASE WHEN isinf({q75}) THEN {q75} ELSE {q75} - {q25} END"
        query.outer[f"{value}_q25"] = q25
        query.outer[f"{value}_q75"] = q75
    query.outer["log_q_ratio_median"] = query.statistic("log_q_ratio", "median")
    gf = query.aggregate("list_sort(list(lambda_gf))")
    has_nan = query.aggregate("count_if(isnan(lambda_gf))")
    median = _linear_quantile(gf, 0.5)
    query.outer["lambda_gf_median"] = f"CASE WHEN {has_nan} > 0 THEN 'nan'::DOUBLE ELSE {median} END"
    if sgd:
        for value in SGD_SUMMARY_VALUES:
            column = _quote(value)
            values = query.aggregate(
                f"list_sort(coalesce(list({column}::DOUBLE) FILTER (WHERE NOT isnan({column}::DOUBLE)), []))"
            )
            query.outer[f"{value}_median"] = _linear_quantile(values, 0.5)
    return query


def summarize(out: Path, by: Sequence[str] | None = None, where: str | None = None) -> pd.DataFrame:
    """One row per cell, or per combination of the ``by`` axes, sorted by axes;
    with ``where``, of the trajectories for which that DuckDB expression holds."""
    if by:
        unknown = [axis for axis in by if axis not in AXES]
        if unknown:
            raise ConfigError("--by", f"unknown axis {unknown[0]!r}; choose from {', '.join(AXES)}")
    sgd = read_config(Path(out)).algorithm == "sgd"
    present = [axis for axis in AXES if sgd or axis not in SGD_AXES]
    if by:
        absent = [axis for axis in by if axis not in present]
        if absent:
            raise ConfigError("--by", f"{absent[0]} is an axis of SGD sweeps only; this is a GD sweep")
    keys = list(dict.fromkeys(by)) if by else ["cell_id", *present]
    values = [*VALUE_COLUMNS, "eta", "log_q_ratio", *(SGD_SUMMARY_VALUES if sgd else ())]
    table = read_trajectories(Path(out), None if where else list(dict.fromkeys([*keys, *values])))
    table = filters.apply(table, where)
    frame = summary_query(sgd).run(table, keys)
    if frame.empty:
        return frame
    sort = [a for a in (by or present) if a in frame.columns]
    return frame.sort_values(sort, kind="stable").reset_index(drop=True)


def grouped_statistics(
    out: Path, keys: Sequence[str], values: Sequence[str], stat: str, where: str | None = None
) -> pd.DataFrame:
    """One row per combination of ``keys`` (trajectory columns): the keys,
    ``trajectories``, ``frac_converged`` and, per value, ``stat`` of it
    (:func:`cell_statistic`'s semantics), in a column named as the value.
    A value that is not a column is a DuckDB expression over the columns, and
    ``where`` keeps the trajectories for which its expression holds
    (:mod:`lin2net.analysis.filters`)."""
    if stat not in STATS:
        raise ConfigError("--stat", f"unknown statistic {stat!r}; choose from {', '.join(STATS)}")
    keys = list(dict.fromkeys(keys))
    plain = where is None and all(filters.is_column(v) for v in values)
    columns = list(dict.fromkeys([*keys, "status", "eta", "sharpness_T", *(v for v in values if v != "status")]))
    table = read_trajectories(Path(out), columns if plain else None)
    table = filters.apply(table, where, values)
    return statistics_table(table, keys, values, stat)


def statistics_table(table: pa.Table, keys: Sequence[str], values: Sequence[str], stat: str) -> pd.DataFrame:
    """:func:`grouped_statistics` of a table in memory. A value is reduced over
    every trajectory when it is, or is an expression of, a column of
    :data:`ALL_TRAJECTORY_VALUES`."""
    names = list(table.column_names)
    everywhere = {v for v in values if filters.referenced_columns(v, names) & ALL_TRAJECTORY_VALUES}
    query = _Query(ALL_TRAJECTORY_VALUES | everywhere)
    query.outer["trajectories"] = query.aggregate("count(*)")
    query.outer["frac_converged"] = query.statistic("status", "frac_converged")
    query.outer["frac_diverged"] = query.statistic("status", "frac_diverged")
    for value in values:
        query.outer[value] = query.statistic(value, stat)
    frame = query.run(table, keys)
    return frame.sort_values(list(keys), kind="stable").reset_index(drop=True) if keys else frame


def statistics(table: pa.Table) -> dict[str, float | int]:
    """The statistics of the module doc for one group, in NumPy: the reference
    the DuckDB query is tested against."""
    status = np.asarray(table.column("status").cast(pa.string()).to_numpy(zero_copy_only=False))
    stats: dict[str, float | int] = {"trajectories": len(status)}
    eta_s = table.column("eta").to_numpy() * table.column("sharpness_T").to_numpy()
    for name in RATE_STATS:
        stats[name] = cell_statistic(status, status, "status", name, eta_sharpness=eta_s)
    for name in ("steps", "q_ratio", "sharpness_T"):
        values = table.column(name).to_numpy()
        q25, q50, q75 = (cell_statistic(values, status, name, stat) for stat in QUANTILES)
        stats[f"{name}_median"] = q50
        stats[f"{name}_iqr"] = q75 - q25 if np.isfinite(q75) else q75  # inf (censored) or NaN (no data)
        stats[f"{name}_q25"], stats[f"{name}_q75"] = q25, q75
    stats["log_q_ratio_median"] = cell_statistic(
        table.column("log_q_ratio").to_numpy(), status, "log_q_ratio", "median"
    )
    lambda_gf = table.column("lambda_gf").to_numpy()
    stats["lambda_gf_median"] = float(np.median(lambda_gf)) if len(status) else math.nan
    return stats


def cell_statistic(values: Any, status: Any, value: str, stat: str, eta_sharpness: Any = None) -> float:
    """One statistic (:data:`STATS`) of ``values`` for a group of trajectories, in NumPy.

    ``frac_*`` count statuses (``frac_stable``: converged with ``eta_sharpness``,
    η·S(T), below 2); the others reduce the converged trajectories' values (every
    trajectory's for :data:`ALL_TRAJECTORY_VALUES`; NaN when there are none) —
    except the quantiles of ``steps``, which count trajectories that did not
    converge as never converging (T = ∞).
    """
    status = np.asarray(status)
    if stat in FRACTION_STATS:
        return float(np.mean(status == FRACTION_STATS[stat])) if status.size else math.nan
    if stat == "frac_stable":
        if eta_sharpness is None:
            raise ValueError("frac_stable needs eta_sharpness")
        stable = (status == "converged") & (np.asarray(eta_sharpness, dtype=np.float64) < 2.0)
        return float(np.mean(stable)) if status.size else math.nan
    converged = status == "converged" if value not in ALL_TRAJECTORY_VALUES else np.ones(status.shape, bool)
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
