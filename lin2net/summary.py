"""Per-cell (or per-group) statistics of a sweep's trajectory tables.

Statistics, per group of trajectories:

* ``trajectories`` and the fractions ``frac_converged``, ``frac_diverged``,
  ``frac_max_steps``;
* ``steps_median``, ``steps_iqr``: quantiles of the convergence time, with
  trajectories that did not converge counted as never converging (T = ∞), so
  the median is exact whenever at least half converged and ``inf`` otherwise;
* ``q_ratio_*``, ``sharpness_T_*``: median and interquartile range over the
  converged trajectories (where the limit was reached; NaN if none);
* ``lambda_gf_median``: median gradient-flow limit sharpness, all trajectories.

Cell files are read one at a time and only the needed columns; grouping over
axes (``by``) keeps just those few columns of the grouped trajectories.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lin2net.errors import ConfigError
from lin2net.store import iter_cell_tables

AXES = ("eta", "lambda0", "phi", "d", "eta_lambda0", "init")
VALUE_COLUMNS = ("status", "steps", "q_ratio", "sharpness_T", "lambda_gf")


def summarize(out: Path, by: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per cell, or per combination of the ``by`` axes, sorted by axes."""
    if by:
        unknown = [axis for axis in by if axis not in AXES]
        if unknown:
            raise ConfigError("--by", f"unknown axis {unknown[0]!r}; choose from {', '.join(AXES)}")
    columns = ["cell_id", *AXES, *VALUE_COLUMNS]
    rows: list[dict[str, Any]] = []
    groups: dict[tuple[Any, ...], list[pa.Table]] = defaultdict(list)
    for table in iter_cell_tables(out, columns):
        if not by:
            if table.num_rows:
                first = table.slice(0, 1).to_pylist()[0]
                rows.append({"cell_id": first["cell_id"], **{a: first[a] for a in AXES}, **statistics(table)})
            continue
        for key, part in _split(table.select([*by, *VALUE_COLUMNS]), list(by)):
            groups[key].append(part)
    for key, parts in groups.items():
        rows.append({**dict(zip(by or (), key, strict=True)), **statistics(pa.concat_tables(parts))})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values([a for a in (by or AXES) if a in frame.columns], kind="stable").reset_index(drop=True)


def _split(table: pa.Table, by: list[str]) -> list[tuple[tuple[Any, ...], pa.Table]]:
    keys = table.select(by).to_pandas()
    return [
        ((key,) if not isinstance(key, tuple) else key, table.take(pa.array(index)))
        for key, index in keys.groupby(by, sort=False).indices.items()
    ]


STATS = ("median", "mean", "min", "max", "q25", "q75", "frac_converged", "frac_diverged", "frac_max_steps")
FRACTION_STATS = {"frac_converged": "converged", "frac_diverged": "diverged", "frac_max_steps": "max_steps"}
QUANTILES = {"q25": 0.25, "median": 0.5, "q75": 0.75}


def statistics(table: pa.Table) -> dict[str, float | int]:
    """The statistics of the module doc for one group of trajectories."""
    status = np.asarray(table.column("status").to_numpy(zero_copy_only=False))
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


def cell_statistic(values: np.ndarray, status: np.ndarray, value: str, stat: str) -> float:
    """One statistic (:data:`STATS`) of ``values`` for a group of trajectories.

    ``frac_*`` count statuses; the others reduce the converged trajectories'
    values (NaN when there are none) — except the quantiles of ``steps``, which
    count trajectories that did not converge as never converging (T = ∞).
    """
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


# TEMPORARY grouped_statistics: the coordinator replaces it
def grouped_statistics(out: Path, keys: Sequence[str], values: Sequence[str], stat: str) -> pd.DataFrame:
    """One row per distinct combination of ``keys`` (trajectory-table columns):
    the keys, ``trajectories``, ``frac_converged`` and, per name in ``values``,
    :func:`cell_statistic` ``stat`` of that column over the group."""
    keys, values = list(keys), list(values)
    columns = list(dict.fromkeys([*keys, *values, "status"]))
    groups: dict[tuple[Any, ...], list[pa.Table]] = defaultdict(list)
    for table in iter_cell_tables(out, columns):
        if table.num_rows and all(pc.count_distinct(table.column(k)).as_py() == 1 for k in keys):
            first = table.slice(0, 1).to_pylist()[0]  # a cell: its axes are constant
            groups[tuple(first[k] for k in keys)].append(table)
            continue
        for key, part in _split(table, keys):
            groups[key].append(part)
    rows = []
    for key, parts in groups.items():
        table = pa.concat_tables(parts)
        status = np.asarray(table.column("status").to_numpy(zero_copy_only=False))
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["trajectories"] = len(status)
        row["frac_converged"] = cell_statistic(status, status, "status", "frac_converged")
        for value in values:
            row[value] = cell_statistic(table.column(value).to_numpy(), status, value, stat)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*keys, "trajectories", "frac_converged", *values])
    return frame.sort_values(keys, kind="stable").reset_index(drop=True) if len(frame) else frame
