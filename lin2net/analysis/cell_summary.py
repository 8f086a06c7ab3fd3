"""Per-cell summaries of simulated trajectories (``keep: summary``), and statistics from them.

A sweep with ``keep: summary`` (or ``both``) reduces each cell's trajectories,
right after the kernel, to one row (:func:`summary_table`), instead of (or
beside) one row per trajectory. Per cell (columns in docs/columns.md):

* ``trajectories``, the counts ``converged``, ``diverged``, ``max_steps`` and
  ``stable`` (converged with η·S(T) < 2: ``frac_stable``);
* exact quantiles, computed like ``lin2net summarize`` computes them from
  rows (:func:`lin2net.analysis.summary.cell_statistic`): ``steps_q25``,
  ``steps_median``, ``steps_q75`` with non-converged trajectories counted as
  T = ∞ (``inverted_cdf``), and ``<v>_q25``, ``<v>_median``, ``<v>_q75`` of
  the converged trajectories' values of :data:`EXACT_QUANTILES` (NaN
  excluded; NumPy's ``linear`` method); ``<v>_count``, ``<v>_sum``,
  ``<v>_min``, ``<v>_max`` of the converged values of :data:`CONVERGED_VALUES`,
  so means and extremes merge exactly;
* ``lambda_gf_median`` over all trajectories (NaN if any is NaN) and, for
  SGD, ``<v>_median`` of the SGD dynamics' summary values (:func:`sgd_values`,
  from the registry) over all trajectories (NaN excluded);
* ``<v>_sketch``: a quantile sketch (:mod:`lin2net.analysis.sketch`, relative
  accuracy :data:`ALPHA`) of the same values, so that the quantiles of a cell
  stored in several parts, or of a group of cells (``summarize --by``), are
  known to within α;
* ``steps_hist`` and ``log_q_ratio_hist``: histograms of the converged
  trajectories' T and log Q(T)/Q(0) with fixed bin edges (:func:`steps_bin`,
  :func:`log_q_bin`), so histograms of parts add up;
* GD only: Theorem 1 and 2 counts per cell (:func:`lin2net.analysis.check.check_table`),
  prefixed ``check_``, so ``lin2net check`` works without rows.

When one row holds a whole cell, statistics are read from the exact columns;
when a cell's trajectories come in several rows, or rows are pooled, counts,
fractions, means and extremes stay exact and quantiles come from the merged
sketches (:func:`group_statistics`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from lin2net.analysis import sketch as sk
from lin2net.dynamics import registry

ALPHA = sk.DEFAULT_ALPHA
QUANTILES = {"q25": 0.25, "median": 0.5, "q75": 0.75}
CONVERGED_VALUES = ("steps", "q_ratio", "log_q_ratio", "sharpness_T", "lambda_T")
"""Values kept over the converged trajectories (NaN excluded), as summarize and plot reduce them."""
EXACT_QUANTILES = ("q_ratio", "log_q_ratio", "sharpness_T")
"""Values whose exact quantiles are kept (those summarize shows; steps has its censored ones);
each costs a partition of the cell's values, the others' quantiles come from their sketch."""
ALL_VALUES = ("lambda_gf",)
RATE_COUNTS = {
    "frac_converged": "converged",
    "frac_stable": "stable",
    "frac_diverged": "diverged",
    "frac_max_steps": "max_steps",
}
"""The fraction statistics (:data:`lin2net.analysis.summary.RATE_STATS`, same order) and the count each divides."""
SUMMARY_QUANTILE_VALUES = ("steps", "q_ratio", "sharpness_T")
"""The values whose median, IQR, q25 and q75 summarize shows."""
STEPS_BINS_PER_OCTAVE = 8
LOG_Q_BIN_WIDTH = 1.0 / 64.0
STATUS = ("converged", "diverged", "max_steps")
AXES = ("eta", "lambda0", "phi", "d", "init", "eta_lambda0", "batch_size", "label_noise", "depth", "inputs")


def sgd_values() -> tuple[str, ...]:
    """The SGD dynamics' summary values (the registry's): medians over every trajectory."""
    return registry.get("sgd").summary_values


def steps_bin(steps: np.ndarray) -> np.ndarray:
    """Bin j of T holds 2^(j/8) ≤ T + 1 < 2^((j+1)/8): eight bins per octave, j = 0 for T = 0."""
    bins: np.ndarray = np.floor(STEPS_BINS_PER_OCTAVE * np.log2(np.asarray(steps, dtype=np.float64) + 1.0))
    return bins.astype(np.int64)


def log_q_bin(log_q: np.ndarray) -> np.ndarray:
    """Bin j of log Q(T)/Q(0) holds j/64 ≤ log Q(T)/Q(0) < (j+1)/64 (finite values only)."""
    return np.floor(np.asarray(log_q, dtype=np.float64) / LOG_Q_BIN_WIDTH).astype(np.int64)


def encode_histogram(bins: np.ndarray) -> bytes:
    """Sparse histogram of integer bin indices: int64 bins then int64 counts."""
    if bins.size == 0:
        return b""
    low = int(bins.min())
    dense = np.bincount(bins - low)  # the bins of one cell span a narrow range
    keys = np.flatnonzero(dense)
    return (keys + low).astype("<i8").tobytes() + dense[keys].astype("<i8").tobytes()


def decode_histogram(data: bytes) -> dict[int, int]:
    """``bin -> count`` of :func:`encode_histogram`'s bytes."""
    words = np.frombuffer(data, dtype="<i8")
    half = words.size // 2
    return {int(k): int(c) for k, c in zip(words[:half], words[half:], strict=True)}


def merge_histograms(histograms: Sequence[bytes]) -> dict[int, int]:
    """The histogram of the union: counts of equal bins added."""
    total: dict[int, int] = {}
    for data in histograms:
        for key, count in decode_histogram(data).items():
            total[key] = total.get(key, 0) + count
    return dict(sorted(total.items()))


def _quantiles(values: np.ndarray, censored: bool = False) -> list[float]:
    """q25, median, q75: NumPy's linear method, or ``inverted_cdf`` for censored step counts."""
    if values.size == 0:
        return [math.nan] * 3
    q = list(QUANTILES.values())
    found = np.quantile(values, q, method="inverted_cdf") if censored else np.quantile(values, q)
    return [float(v) for v in found]


def cell_row(columns: Mapping[str, np.ndarray], sgd: bool) -> dict[str, Any]:
    """The summary of one cell's per-trajectory arrays (``status`` as int codes
    of :class:`lin2net.dynamics.gd.reference.Status`, the value columns as in
    the trajectory table)."""
    status = columns["status"]
    converged = status == 0
    row: dict[str, Any] = {"trajectories": int(status.size)}
    for code, name in enumerate(STATUS):
        row[name] = int(np.count_nonzero(status == code))
    steps = columns["steps"]
    censored = np.where(converged, steps.astype(np.float64), np.inf)
    row.update(zip(("steps_q25", "steps_median", "steps_q75"), _quantiles(censored, censored=True), strict=True))
    for value in CONVERGED_VALUES:
        data = np.asarray(columns[value][converged], dtype=np.float64)
        data = data[~np.isnan(data)]
        if value in EXACT_QUANTILES:
            row.update(zip((f"{value}_{s}" for s in QUANTILES), _quantiles(data), strict=True))
        row[f"{value}_count"] = int(data.size)
        with np.errstate(invalid="ignore"):  # inf + (−inf) (log Q of 0 beside an overflow): NaN
            row[f"{value}_sum"] = float(data.sum())
        row[f"{value}_min"] = float(data.min()) if data.size else math.nan
        row[f"{value}_max"] = float(data.max()) if data.size else math.nan
        row[f"{value}_sketch"] = sk.encode(sk.sketch(data, ALPHA))
    gf = columns["lambda_gf"]
    nan = np.isnan(gf)
    row["lambda_gf_nan"] = int(np.count_nonzero(nan))
    # np.quantile's linear median, as summarize's query computes it (np.median averages differently)
    row["lambda_gf_median"] = float(np.quantile(gf, 0.5)) if gf.size and not nan.any() else math.nan
    row["lambda_gf_sketch"] = sk.encode(sk.sketch(gf, ALPHA))
    if sgd:
        for value in sgd_values():
            data = columns[value][~np.isnan(columns[value])]
            row[f"{value}_median"] = float(np.quantile(data, 0.5)) if data.size else math.nan
            row[f"{value}_sketch"] = sk.encode(sk.sketch(data, ALPHA))
    row["steps_hist"] = encode_histogram(steps_bin(steps[converged]))
    log_q = columns["log_q_ratio"][converged]
    row["log_q_ratio_hist"] = encode_histogram(log_q_bin(log_q[np.isfinite(log_q)]))
    return row


def summary_table(cells: Sequence[Any], trajectories: int, initial: Any, results: Any) -> pa.Table:
    """One row per cell of a simulated shard (the arrays of
    :func:`lin2net.dynamics.gd.cell.simulate_cells`, cells one after another)."""
    from lin2net.dynamics import registry
    from lin2net.sweep.grid import grid_product
    from lin2net.theory.closed_forms import gradient_flow_sharpness

    sgd = cells[0].algorithm == "sgd"
    family = registry.is_family(cells[0].algorithm)  # a model family's: no Theorem 1–2 counts
    own_axes = registry.get(cells[0].algorithm).axis_names
    with np.errstate(over="ignore"):  # Q(T)/Q(0) past overflow is inf, as in the trajectory table
        q_ratio = np.exp(results.log_q_ratio)
    rows: list[dict[str, Any]] = []
    for index, cell in enumerate(cells):
        part = slice(index * trajectories, (index + 1) * trajectories)
        eps0 = initial.eps0[part]
        lam0 = initial.lambda_init[part] if family else initial.lam0[part]
        if family:
            lambda_gf = initial.lambda_gf[part]
        else:
            lambda_gf = gradient_flow_sharpness(eps0, lam0, cell.phi, initial.s0[part], initial.p0[part])
        columns: dict[str, np.ndarray] = {
            "status": results.status[part],
            "steps": results.steps[part],
            "q_ratio": q_ratio[part],
            "sharpness_T": results.sharpness_T[part],
            "lambda_T": results.lambda_T[part],
            "log_q_ratio": results.log_q_ratio[part],
            "lambda_gf": lambda_gf,
        }
        if sgd:
            columns |= {name: getattr(results, name)[part] for name in sgd_values()}
        row: dict[str, Any] = {"cell_id": cell.cell_id}
        row |= {axis: _axis_value(cell, axis) for axis in AXES if axis != "eta_lambda0"}
        row["eta_lambda0"] = grid_product(cell.eta, cell.lambda0) if cell.eta_lambda0 is None else cell.eta_lambda0
        row |= cell_row(columns, sgd)
        # frac_stable: converged at a stable minimum, η·S(T) < 2 (summary.STABLE_COUNT_SQL)
        stable = (columns["status"] == 0) & (cell.eta * columns["sharpness_T"] < 2.0)
        row["stable"] = int(np.count_nonzero(stable))
        if not sgd and not family:
            counts = check_counts(
                cell.eta,
                cell.phi,
                eps0,
                lam0,
                results.status[part],
                results.steps[part],
                results.sum_eps2[part],
                results.log_q_ratio[part],
                results.sharpness_T[part],
            )
            row |= {f"check_{k}": v for k, v in counts.items()}
        rows.append(row)
    for row in rows:  # only the dynamics' own axes beside the common ones
        for axis in ("batch_size", "label_noise", "depth", "inputs"):
            if axis not in own_axes:
                row.pop(axis, None)
    return pa.Table.from_pylist(rows, schema=_schema(rows[0]))


def _axis_value(cell: Any, axis: str) -> Any:
    """The cell's value on ``axis``: a common axis, or its dynamics' own (None if it has none)."""
    if axis in ("eta", "lambda0", "phi", "d", "init"):
        return getattr(cell, axis)
    return dict(cell.axes).get(axis)


def _schema(row: Mapping[str, Any]) -> pa.Schema:
    """Types by column: bytes are binary, Python ints int64, floats float64, strings string."""
    fields = []
    for name, value in row.items():
        if isinstance(value, bytes):
            kind: pa.DataType = pa.binary()
        elif isinstance(value, bool):
            kind = pa.bool_()
        elif isinstance(value, (int, np.integer)) and name not in ("eta", "lambda0", "phi", "label_noise"):
            kind = pa.int64()
        elif isinstance(value, str):
            kind = pa.string()
        else:
            kind = pa.float64()
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def check_counts(
    eta: float,
    phi: float,
    eps0: np.ndarray,
    lam0: np.ndarray,
    status: np.ndarray,
    steps: np.ndarray,
    sum_eps2: np.ndarray,
    log_q: np.ndarray,
    sharpness_T: np.ndarray,
) -> dict[str, Any]:
    """The counts :func:`lin2net.analysis.check.check_table` gives for one cell
    (same names, same bounds, tolerances and outcomes), on status codes instead
    of labels: the per-cell part of ``lin2net check`` without rows."""
    from lin2net.analysis.check import BOUNDS, OUTCOMES
    from lin2net.theory import theorems

    converged = status == 0
    linear = theorems.thm1_regime(eta, eps0, lam0, phi)
    slow = theorems.slow_regime(eta, eps0, lam0, phi) & ~linear
    in_regime = linear & converged
    row: dict[str, Any] = {"in_regime": int(np.count_nonzero(in_regime))}
    log_lower = theorems.log_thm1_lower(eta, eps0[in_regime], phi)
    log_upper = theorems.log_thm1_upper(eta, sum_eps2[in_regime])
    log_q_in = log_q[in_regime]
    with np.errstate(invalid="ignore"):  # −inf − (−inf): NaN, treated as holding (as check does)
        margins = {"lower": log_q_in - log_lower, "upper": log_upper - log_q_in}
    for name in BOUNDS:
        bound = log_lower if name == "lower" else log_upper
        tolerance = theorems.rounding_tolerance(steps[in_regime], bound)
        holds = ~(margins[name] < -tolerance)
        row[f"{name}_holds"] = int(np.count_nonzero(holds))
        row[f"{name}_fails"] = int(holds.size - np.count_nonzero(holds))
        finite = margins[name][~np.isnan(margins[name])]
        row[f"{name}_worst_margin"] = float(finite.min()) if finite.size else math.nan
    stable = eta * sharpness_T < 2.0
    outcome = {
        "converged": converged & stable,
        "passing": converged & ~stable,
        "diverged": status == 1,
        "max_steps": status == 2,
    }
    row["stable"] = int(np.count_nonzero(outcome["converged"]))
    row["passing"] = int(np.count_nonzero(outcome["passing"]))
    for regime, chosen in (("linear", linear), ("slow", slow)):
        row[regime] = int(np.count_nonzero(chosen))
        for name in OUTCOMES:
            row[f"{regime}_{name}"] = int(np.count_nonzero(chosen & outcome[name]))
    return row


# ---------------------------------------------------------------- statistics from summaries


def _merged(group: pd.DataFrame, column: str) -> sk.Sketch:
    return sk.merge(*(sk.decode(bytes(data)) for data in group[column]))


def value_statistic(group: pd.DataFrame, value: str, stat: str) -> float:
    """One statistic of ``value`` over the trajectories of ``group`` (rows of
    summary files): exact from one row, else counts and sketches merged.
    Semantics of :func:`lin2net.analysis.summary.cell_statistic`."""
    total = int(group["trajectories"].sum())
    if stat in RATE_COUNTS:
        return float(group[RATE_COUNTS[stat]].sum() / total) if total else math.nan
    single = len(group) == 1
    if stat in QUANTILES:
        exact = f"{value}_{stat}"
        if single and exact in group:
            return float(group[exact].iloc[0])
        if value == "lambda_gf" and stat == "median" and int(group["lambda_gf_nan"].sum()):
            return math.nan
        merged = _merged(group, f"{value}_sketch")
        if value == "steps":  # censored: rank ⌈nq⌉ − 1 of all, ∞ past the converged
            if total == 0:
                return math.nan
            rank = max(math.ceil(total * QUANTILES[stat]), 1) - 1
            return sk.value_at_rank(merged, rank) if rank < merged.total else math.inf
        return sk.quantile(merged, QUANTILES[stat])
    count = int(group[f"{value}_count"].sum())
    if count == 0:
        return math.nan
    if stat == "mean":
        return float(group[f"{value}_sum"].sum() / count)
    if stat == "min":
        return float(group[f"{value}_min"].min())
    if stat == "max":
        return float(group[f"{value}_max"].max())
    raise ValueError(f"unknown statistic {stat!r}")


def group_statistics(rows: pd.DataFrame, keys: Sequence[str], requests: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """One row per combination of ``keys``: the keys, ``trajectories`` and, for
    each ``name -> (value, stat)`` of ``requests``, that statistic."""
    if keys and not rows.duplicated(list(keys)).any():
        return _one_row_groups(rows, keys, requests)
    records = []
    groups = rows.groupby(list(keys), sort=True, dropna=False) if keys else [((), rows)]
    for key, group in groups:
        values = key if isinstance(key, tuple) else (key,)
        record: dict[str, Any] = dict(zip(keys, values, strict=True))
        record["trajectories"] = int(group["trajectories"].sum())
        for name, (value, stat) in requests.items():
            record[name] = value_statistic(group, value, stat)
        records.append(record)
    frame = pd.DataFrame(records)
    if "trajectories" in frame:
        frame["trajectories"] = frame["trajectories"].astype(np.int64)
    return frame


def _one_row_groups(rows: pd.DataFrame, keys: Sequence[str], requests: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """:func:`group_statistics` where every group is one row: columns read as
    they are (no Python per row), sketches decoded only for quantiles that
    have no exact column."""
    rows = rows.sort_values(list(keys), kind="stable").reset_index(drop=True)
    frame = rows[list(keys)].copy()
    frame["trajectories"] = rows["trajectories"].astype(np.int64)
    for name, (value, stat) in requests.items():
        if stat in RATE_COUNTS:
            frame[name] = rows[RATE_COUNTS[stat]] / rows["trajectories"]
        elif f"{value}_{stat}" in rows:
            frame[name] = rows[f"{value}_{stat}"].astype(np.float64)
        elif stat in ("mean", "min", "max"):
            count = rows[f"{value}_count"].to_numpy()
            column = rows[f"{value}_sum"] / np.where(count > 0, count, 1) if stat == "mean" else rows[f"{value}_{stat}"]
            frame[name] = np.where(count > 0, column, np.nan)
        else:
            frame[name] = [value_statistic(rows.iloc[[i]], value, stat) for i in range(len(rows))]
    return frame


def _rows(out: Any) -> pd.DataFrame:
    from lin2net.store.summary_file import read_summaries

    frame: pd.DataFrame = read_summaries(out).to_pandas()
    return frame


def _iqr(q25: float, q75: float) -> float:
    return q75 if math.isinf(q75) or math.isnan(q75) else q75 - q25


def summarize_kept(out: Any, keys: Sequence[str], sgd: bool) -> pd.DataFrame:
    """``lin2net summarize``'s table from the summary files of ``out``
    (columns of :func:`lin2net.analysis.summary.summary_query`, in its order)."""
    rows = _rows(out)
    extra = sgd_values() if sgd else ()
    requests: dict[str, tuple[str, str]] = {name: ("status", name) for name in RATE_COUNTS}
    for value in SUMMARY_QUANTILE_VALUES:
        for stat in QUANTILES:
            requests[f"{value}_{stat}"] = (value, stat)
    requests["log_q_ratio_median"] = ("log_q_ratio", "median")
    requests["lambda_gf_median"] = ("lambda_gf", "median")
    requests |= {f"{value}_median": (value, "median") for value in extra}
    if "cell_id" in keys and not rows["cell_id"].duplicated().any():
        # every group one whole cell: the exact columns as they are (no Python per cell)
        frame = rows[list(keys)].copy()
        frame["trajectories"] = rows["trajectories"].astype(np.int64)
        for name, (value, stat) in requests.items():
            if name in RATE_COUNTS:
                frame[name] = rows[RATE_COUNTS[name]] / rows["trajectories"]
            else:
                frame[name] = rows[f"{value}_{stat}"].astype(np.float64)
    else:
        frame = group_statistics(rows, keys, requests)
    for value in SUMMARY_QUANTILE_VALUES:
        q25, q75 = frame[f"{value}_q25"], frame[f"{value}_q75"]
        frame[f"{value}_iqr"] = [_iqr(a, b) for a, b in zip(q25, q75, strict=True)]
    order = [*keys, "trajectories", *RATE_COUNTS]
    order += [f"{v}_{s}" for v in SUMMARY_QUANTILE_VALUES for s in ("median", "iqr", "q25", "q75")]
    order += ["log_q_ratio_median", "lambda_gf_median", *(f"{v}_median" for v in extra)]
    return frame[order]


def kept_values(sgd: bool) -> tuple[str, ...]:
    """Values whose statistics a summary-only sweep can give."""
    return (*CONVERGED_VALUES, *ALL_VALUES, *(sgd_values() if sgd else ()))


def grouped_kept(out: Any, keys: Sequence[str], values: Sequence[str], stat: str, sgd: bool) -> pd.DataFrame:
    """:func:`lin2net.analysis.summary.grouped_statistics` from summary files."""
    from lin2net.errors import ConfigError

    allowed = kept_values(sgd)
    for value in values:
        if value not in allowed:
            raise ConfigError(
                "--value",
                f"{value} is not kept by a sweep with keep: summary (no trajectory rows); "
                f"choose from {', '.join(allowed)}",
            )
        if (value in ALL_VALUES or value in sgd_values()) and stat in ("mean", "min", "max"):
            raise ConfigError("--stat", f"{stat} of {value} is not kept by a sweep with keep: summary")
    # the columns of lin2net.analysis.summary._statistics_query, in its order
    requests: dict[str, tuple[str, str]] = {name: ("status", name) for name in ("frac_converged", "frac_diverged")}
    requests |= {value: (value, stat) for value in values}
    frame = group_statistics(_rows(out), keys, requests)
    return frame.sort_values(list(keys), kind="stable").reset_index(drop=True) if keys else frame


def check_rows(out: Any) -> list[dict[str, Any]]:
    """Per cell, the counts of :func:`lin2net.analysis.check.check_table`,
    from summary files (parts of a cell added; worst margins: the minimum)."""
    rows = _rows(out)
    records = []
    for cell_id, group in rows.groupby("cell_id", sort=False):
        first = group.iloc[0]
        record: dict[str, Any] = {"cell_id": cell_id, **{k: first[k] for k in ("eta", "lambda0", "phi", "d")}}
        record["d"] = int(record["d"])
        record["trajectories"] = int(group["trajectories"].sum())
        for column in group.columns:
            if column.startswith("check_"):
                name = column.removeprefix("check_")
                values = group[column]
                record[name] = float(values.min()) if name.endswith("worst_margin") else int(values.sum())
        records.append(record)
    return records
