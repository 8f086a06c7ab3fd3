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

One DuckDB query reads the verified shard files of an opened output
(:func:`lin2net.store.opened.open_output`) directly, with DuckDB's own
aggregates: ``quantile_disc`` for the censored step counts (the observed
count at rank ⌈n·q⌉, NumPy's ``inverted_cdf``: a censored quantile stays
``inf``), ``quantile_cont`` (NumPy's ``linear`` method) for the others,
``favg``, ``min``, ``max``. The numbers agree with :func:`cell_statistic`, the
NumPy reference, to a few units in the last place: the interpolation of a
``quantile_cont`` between two neighbours and the order of a mean's sum may
round differently (step-count quantiles, fractions, min and max are equal).

:class:`_Query` builds the query; it takes a ``WHERE`` clause (``where``)
and named value expressions (``expressions``) besides the table's columns.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lin2net.analysis import filters
from lin2net.dynamics import registry
from lin2net.errors import ConfigError
from lin2net.store.opened import OpenedOutput, open_output

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

COMMON_AXES = (*registry.TABLE_ORDER, "init")


def axes() -> tuple[str, ...]:
    """Every axis a summary may group by: the common ones, then each registered dynamics' own."""
    return (*COMMON_AXES, *(axis.name for axis in registry.extra_axes()))


def sweep_axes(algorithm: str) -> tuple[str, ...]:
    """The axes in the tables of a sweep of dynamics ``algorithm``."""
    return (*COMMON_AXES, *registry.get(algorithm).axis_names)


AXES = axes()  # as registered at import
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
STABLE_COUNT_SQL = "count_if(status = 'converged' AND eta * sharpness_T < 2)"
"""Trajectories that converged at a stable minimum, η·S(T) < 2 (``frac_stable``)."""
ALL_TRAJECTORY_VALUES = frozenset(
    ("loss_T", "q_ratio_window", "log_q_ratio_window", "sharpness_window", "loss_window", "lambda_window")
)
"""SGD columns reduced over every trajectory (not only the converged ones)."""
QUANTILES = {"q25": 0.25, "median": 0.5, "q75": 0.75}
_NAN = "'nan'::DOUBLE"
_QUANTILE_LIST = "[0.25, 0.5, 0.75]"  # one sort per value and group serves all three
_QUANTILE_INDEX = {"q25": 1, "median": 2, "q75": 3}
_NEVER = "9223372036854775807"  # the step count of a trajectory that never converged (T = ∞), as a BIGINT


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Rows:
    """A query's result without pandas: ``columns`` and ``rows`` (tuples of
    Python values). :meth:`to_csv` writes what ``DataFrame.to_csv(index=False)``
    writes; :meth:`df` makes the DataFrame."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.rows)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in row])
        return buffer.getvalue()

    def df(self) -> pd.DataFrame:
        import pandas as pd

        frame = pd.DataFrame.from_records(self.rows, columns=self.columns)
        for name in frame.columns:
            if frame[name].dtype == object and all(isinstance(v, float) for v in frame[name]):
                frame[name] = frame[name].astype(np.float64)  # an all-None column of a float result
        if "trajectories" in frame:
            frame["trajectories"] = frame["trajectories"].astype(np.int64)
        return frame


class _Query:
    """A two-level DuckDB query: per group, each aggregate once (inner level),
    then the statistics read off them (outer level).

    ``where``: conditions on trajectories (ANDed) that select the rows every
    statistic sees; ``expressions``: value name -> SQL over the trajectory
    columns, for values that are not a column (a value not named here is the
    column of that name)."""

    def __init__(self, all_trajectories: frozenset[str] = ALL_TRAJECTORY_VALUES) -> None:
        self.inner: dict[str, str] = {}
        self.outer: dict[str, str] = {}
        self.where: list[str] = []
        self.expressions: dict[str, str] = {}
        self.all_trajectories = all_trajectories  # values reduced over every trajectory

    def value_sql(self, value: str) -> str:
        return f"({self.expressions[value]})::DOUBLE" if value in self.expressions else f"{_quote(value)}::DOUBLE"

    def aggregate(self, sql: str) -> str:
        """Name of the inner-level column computing ``sql`` (added once)."""
        for name, expression in self.inner.items():
            if expression == sql:
                return name
        name = f"_{len(self.inner)}"
        self.inner[name] = sql
        return name

    def converged(self, value: str) -> str:
        """``value`` where the trajectory converged (any trajectory for
        :attr:`all_trajectories`) and it is a number, else NULL (which every
        aggregate skips: cheaper than a FILTER clause per aggregate)."""
        column = self.value_sql(value)
        converged = "" if value in self.all_trajectories else "status = 'converged' AND "
        return f"CASE WHEN {converged}NOT isnan({column}) THEN {column} END"

    def statistic(self, value: str, stat: str) -> str:
        """Outer-level SQL of :func:`cell_statistic` of one group."""
        if stat in FRACTION_STATS:  # k / n, rounded once, as np.mean of booleans
            count = self.aggregate(f"count_if(status = '{FRACTION_STATS[stat]}')")
            return f"{count} / {self.aggregate('count(*)')}::DOUBLE"
        if stat == "frac_stable":
            return f"{self.aggregate(STABLE_COUNT_SQL)} / {self.aggregate('count(*)')}::DOUBLE"
        if value == "steps" and stat in QUANTILES:
            # Integers sort faster than doubles: T = ∞ is the largest BIGINT until the outer level.
            censored = self.aggregate(
                f"quantile_disc(CASE WHEN status = 'converged' THEN steps::BIGINT ELSE {_NEVER} END, {_QUANTILE_LIST})"
            )
            element = f"{censored}[{_QUANTILE_INDEX[stat]}]"
            return f"CASE WHEN {element} = {_NEVER} THEN 'inf'::DOUBLE ELSE {element}::DOUBLE END"
        converged = self.converged(value)
        if stat in QUANTILES:
            quantiles = self.aggregate(f"quantile_cont({converged}, {_QUANTILE_LIST})")
            return f"coalesce({quantiles}[{_QUANTILE_INDEX[stat]}], {_NAN})"
        function = {"mean": "favg", "min": "min", "max": "max"}.get(stat)
        if function is None:
            raise ConfigError("--stat", f"unknown statistic {stat!r}; choose from {', '.join(STATS)}")
        return f"coalesce({self.aggregate(f'{function}({converged})')}, {_NAN})"

    def median_of_all(self, value: str) -> str:
        """The median over every trajectory where ``value`` is a number (NaN if none)."""
        column = self.value_sql(value)
        median = self.aggregate(f"quantile_cont(CASE WHEN NOT isnan({column}) THEN {column} END, 0.5)")
        return f"coalesce({median}, {_NAN})"

    def sql(self, source: str, keys: Sequence[str], order: Sequence[str] = (), carried: Sequence[str] = ()) -> str:
        """The query over ``source``, grouped by ``keys``; ``carried`` columns are
        constant within a group (a cell's axes, given its id) and are read once
        per group instead of hashed with the keys."""
        quoted = [_quote(k) for k in keys]
        carry = [f"any_value({_quote(c)}) AS {_quote(c)}" for c in carried]
        inner = ", ".join([*quoted, *carry, *(f"{sql} AS {name}" for name, sql in self.inner.items())])
        shown = [*quoted, *(_quote(c) for c in carried)]
        outer = ", ".join([*shown, *(f"{sql} AS {_quote(name)}" for name, sql in self.outer.items())])
        where = f" WHERE {' AND '.join(f'({w})' for w in self.where)}" if self.where else ""
        group = f" GROUP BY {', '.join(quoted)}" if keys else ""
        order_by = f" ORDER BY {', '.join(_quote(k) for k in order)}" if order else ""
        return f"WITH g AS (SELECT {inner} FROM {source}{where}{group}) SELECT {outer} FROM g{order_by}"

    def rows(
        self,
        source: str,
        keys: Sequence[str],
        order: Sequence[str] = (),
        table: pa.Table | None = None,
        carried: Sequence[str] = (),
    ) -> Rows:
        """Run :meth:`sql` over ``source`` (a DuckDB table expression; ``table``:
        an Arrow table registered as ``trajectories``)."""
        import duckdb

        connection = duckdb.connect()
        try:
            if table is not None:
                connection.register("trajectories", table)
            cursor = connection.execute(self.sql(source, keys, order, carried))
            columns = [d[0] for d in cursor.description]
            return Rows(columns, cursor.fetchall())
        finally:
            connection.close()


SGD_SUMMARY_VALUES = registry.get("sgd").summary_values
"""SGD sweeps add the median of these over every trajectory that has them (noisy
SGD never converges: its window averages are what it settles to); each dynamics
declares its own in the registry."""


def summary_query(extra_values: Sequence[str] = ()) -> _Query:
    """The summary columns of the module doc, as one query, plus ``<value>_median``
    of each of ``extra_values`` (the dynamics' summary values) over all trajectories."""
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
    # np.median: NaN if any is NaN. DuckDB orders NaN above every number, so max() finds one.
    largest = query.aggregate("max(lambda_gf)")
    median = query.aggregate("median(lambda_gf)")
    query.outer["lambda_gf_median"] = f"CASE WHEN isnan({largest}) THEN {_NAN} ELSE {median} END"
    for value in extra_values:
        query.outer[f"{value}_median"] = query.median_of_all(value)
    return query


def _summary_keys(opened: OpenedOutput, by: Sequence[str] | None) -> tuple[list[str], list[str], str]:
    """(group keys, sort keys, algorithm) of a summary, ``by`` checked."""
    known = axes()
    if by:
        unknown = [axis for axis in by if axis not in known]
        if unknown:
            raise ConfigError("--by", f"unknown axis {unknown[0]!r}; choose from {', '.join(known)}")
    algorithm = opened.algorithm
    present = list(sweep_axes(algorithm))
    if by:
        absent = [axis for axis in by if axis not in present]
        if absent:
            owner = registry.owner_of(absent[0])
            raise ConfigError("--by", f"{absent[0]} is an axis of {owner} sweeps only; this is a {algorithm} sweep")
    keys = list(dict.fromkeys(by)) if by else ["cell_id", *present]
    return keys, list(dict.fromkeys(by)) if by else present, algorithm


def _refuse_filters_without_rows(where: Sequence[str], expressions: Mapping[str, str] | None = None) -> None:
    """Filters and derived values need trajectory rows, which ``keep: summary`` does not write."""
    if where:
        raise ConfigError("--where", "needs trajectory rows; this sweep kept only per-cell summaries (keep: summary)")
    if expressions:
        raise ConfigError("--value", "expressions need trajectory rows; this sweep kept only summaries (keep: summary)")


def check_expressions(
    opened: OpenedOutput,
    where: Sequence[str] = (),
    values: Sequence[str] = (),
    expressions: Mapping[str, str] | None = None,
) -> None:
    """One ConfigError for a bad ``--where`` condition, an unknown column among
    ``values`` or a bad ``--value`` expression (did-you-mean included), checked
    by DuckDB against the (empty) row schema of the sweep's dynamics before
    any file is read (:func:`lin2net.analysis.filters.apply`)."""
    if not where and not values and not expressions:
        return
    from lin2net.dynamics.cells import trajectory_schema

    empty = trajectory_schema(opened.algorithm).empty_table()
    condition = " AND ".join(f"({w})" for w in where) if where else None
    filters.apply(empty, condition, [*values, *(expressions or {}).values()])


def _cell_keys(keys: list[str]) -> tuple[list[str], list[str]]:
    """(group keys, carried): a per-cell summary groups by ``cell_id`` alone, its
    axes follow from it (hashing one string beats hashing eight columns)."""
    return (keys[:1], keys[1:]) if keys and keys[0] == "cell_id" else (keys, [])


def summary_rows(
    out: Path | OpenedOutput, by: Sequence[str] | None = None, *, verify: bool = False, where: Sequence[str] = ()
) -> Rows:
    """:func:`summarize` as :class:`Rows` (no pandas: what ``--format csv``
    prints); ``where``: SQL conditions on the trajectories (ANDed)."""
    opened = open_output(out, verify=verify)
    keys, order, algorithm = _summary_keys(opened, by)
    if opened.config.keep == "summary":  # no rows: from the per-cell summaries
        from lin2net.analysis.cell_summary import summarize_kept

        _refuse_filters_without_rows(where)
        frame = summarize_kept(opened.path, keys, algorithm == "sgd")
        if not frame.empty:
            frame = frame.sort_values([a for a in order if a in frame.columns], kind="stable")
        return Rows(list(frame.columns), list(frame.itertuples(index=False, name=None)))
    check_expressions(opened, where)
    query = summary_query(registry.get(algorithm).summary_values)
    query.where.extend(where)
    if not opened.shards:
        return Rows([*keys, *query.outer], [])
    group, carried = _cell_keys(keys)
    return query.rows(opened.sql_source(), group, order, carried=carried)


def summarize(
    out: Path | OpenedOutput, by: Sequence[str] | None = None, *, verify: bool = False, where: str | None = None
) -> pd.DataFrame:
    """One row per cell, or per combination of the ``by`` axes, sorted by axes;
    with ``where`` (a DuckDB expression), of the trajectories for which it holds."""
    return summary_rows(out, by, verify=verify, where=[where] if where else []).df()


def grouped_statistics(
    out: Path | OpenedOutput,
    keys: Sequence[str],
    values: Sequence[str],
    stat: str,
    *,
    verify: bool = False,
    where: Sequence[str] = (),
    expressions: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per combination of ``keys`` (trajectory columns): the keys,
    ``trajectories``, ``frac_converged`` and, per value, ``stat`` of it
    (:func:`cell_statistic`'s semantics), in a column named as the value;
    sorted by the keys. ``where``: SQL conditions on the trajectories (ANDed);
    ``expressions``: value name -> SQL, for values that are not columns; a
    value that is neither is a DuckDB expression itself (checked first:
    :func:`check_expressions`)."""
    opened = open_output(out, verify=verify)
    keys = list(dict.fromkeys(keys))
    expressions = {**{v: v for v in values if v not in (expressions or {}) and not filters.is_column(v)},
                   **(expressions or {})}
    if opened.config.keep == "summary":  # no rows: from the per-cell summaries
        from lin2net.analysis.cell_summary import grouped_kept

        _refuse_filters_without_rows(where, expressions)
        return grouped_kept(opened.path, keys, values, stat, opened.algorithm == "sgd")
    check_expressions(opened, where, [v for v in values if v not in expressions], expressions)
    query = _statistics_query(values, stat, where, expressions)
    if not opened.shards:
        return Rows([*keys, *query.outer], []).df()
    return query.rows(opened.sql_source(), keys, keys).df()


def _statistics_query(
    values: Sequence[str], stat: str, where: Sequence[str] = (), expressions: Mapping[str, str] | None = None
) -> _Query:
    if stat not in STATS:
        raise ConfigError("--stat", f"unknown statistic {stat!r}; choose from {', '.join(STATS)}")
    # An expression of the columns reduced over every trajectory is reduced so too.
    everywhere = {v for v, sql in (expressions or {}).items() if filters.referenced_columns(sql, ALL_TRAJECTORY_VALUES)}
    query = _Query(ALL_TRAJECTORY_VALUES | everywhere)
    query.where.extend(where)
    query.expressions.update(expressions or {})
    query.outer["trajectories"] = query.aggregate("count(*)")
    query.outer["frac_converged"] = query.statistic("status", "frac_converged")
    query.outer["frac_diverged"] = query.statistic("status", "frac_diverged")
    for value in values:
        query.outer[value] = query.statistic(value, stat)
    return query


def statistics_table(
    table: pa.Table,
    keys: Sequence[str],
    values: Sequence[str],
    stat: str,
    *,
    where: Sequence[str] = (),
    expressions: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """:func:`grouped_statistics` of a table in memory."""
    keys = list(dict.fromkeys(keys))
    query = _statistics_query(values, stat, where, expressions)
    return query.rows("trajectories", keys, keys, table=table).df()


def statistics(table: pa.Table) -> dict[str, float | int]:
    """The statistics of the module doc for one group, in NumPy: the reference
    the DuckDB query is tested against."""
    import pyarrow as pa

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
