"""summarize and grouped statistics run in DuckDB with its own quantiles; they
equal the NumPy reference (summary.statistics and summary.cell_statistic)
within a few units in the last place — step-count quantiles, fractions,
counts, min and max exactly — on sweeps with every status and on hand-made
groups with NaN, ties, censoring and empty sets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lin2net.analysis.summary import STATS, cell_statistic, grouped_statistics, statistics, statistics_table, summarize
from lin2net.sweep.config import parse_config
from lin2net.sweep.runner import run_sweep
from tests.conftest import plain

# Stable, edge-of-stability and divergent cells; a short max_steps censors some.
MIXED = {
    "seed": 5,
    "trajectories": 37,
    "grid": {"eta": [0.05, 0.6, 0.95, 1.4], "lambda0": [0.5, 2.0, 3.0], "phi": [1.0, 2.0], "d": [1, 3]},
    "loss_tol": 1e-10,
    "max_steps": 300,
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mixed") / "out"
    run_sweep(parse_config(MIXED), out, shard_rows=37 * 10)  # several shards
    return out


ULPS = 4  # quantile_cont interpolates as a + (b − a)·t; NumPy switches to b − (b − a)·(1 − t) above t = 1/2


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _close(a: float, b: float, scale: float = 0.0) -> bool:
    """Equal, or within ULPS units in the last place of the larger of |a|, |b|
    and ``scale`` (an IQR is a difference of quantiles of size ``scale``)."""
    if _same(a, b):
        return True
    size = max(abs(a), abs(b), scale)
    return math.isfinite(size) and abs(a - b) <= ULPS * np.spacing(size)


def _matches(row: pd.Series, name: str, expected: float) -> bool:
    """A summary column against the reference: counts, fractions and step-count
    quantiles exactly, the others within a few ulps."""
    got = float(row[name])
    if name.startswith(("steps_", "frac_", "trajectories")):
        return _same(got, float(expected))
    if name.endswith("_iqr"):  # q75 − q25: each within ulps of |q| <= |median| + |iqr|
        median = float(row[name.replace("_iqr", "_median")])
        return _close(got, float(expected), abs(median) + abs(got))
    return _close(got, float(expected))


def test_summarize_equals_the_numpy_reference_within_ulps(mixed: Path) -> None:
    from lin2net.analysis.check import cell_tables
    from lin2net.store.outdir import read_trajectories

    summary = summarize(mixed).set_index("cell_id")
    statuses = set()
    tables = cell_tables(read_trajectories(mixed))
    assert len(tables) == len(summary) == 4 * 3 * 2 * 2
    for table in tables:
        cell_id = table.column("cell_id")[0].as_py()
        expected = statistics(table)
        row = summary.loc[cell_id]
        for name, value in expected.items():
            assert _matches(row, name, value), (cell_id, name, row[name], value)
        statuses |= set(table.column("status").to_pylist())
    assert statuses == {"converged", "diverged", "max_steps"}


@pytest.mark.parametrize("by", [["eta"], ["phi", "d"], ["eta_lambda0"], ["init"], ["lambda0", "eta"]])
def test_grouped_summaries_keep_their_columns_and_equal_the_reference(mixed: Path, by: list[str]) -> None:
    from lin2net.store.outdir import read_trajectories

    frame = plain(read_trajectories(mixed)).to_pandas()
    summary = summarize(mixed, by=by)
    assert list(summary.columns[: len(by)]) == by
    assert len(summary) == len(frame.groupby(by))
    for _, row in summary.iterrows():
        mask = np.logical_and.reduce([frame[k] == row[k] for k in by])
        expected = statistics(pa.Table.from_pandas(frame[mask], preserve_index=False))
        for name, value in expected.items():
            assert _matches(row, name, value), (by, name, row[name], value)


@pytest.mark.parametrize("stat", STATS)
def test_grouped_statistics_equal_cell_statistic(mixed: Path, stat: str) -> None:
    from lin2net.store.outdir import read_trajectories

    frame = plain(read_trajectories(mixed)).to_pandas()
    values = ["steps", "q_ratio", "sharpness_T", "max_abs_eps"]
    result = grouped_statistics(mixed, ["eta", "lambda0"], values, stat)
    assert len(result) == 12 and list(result.columns[:2]) == ["eta", "lambda0"]
    for _, row in result.iterrows():
        group = frame[(frame.eta == row.eta) & (frame.lambda0 == row.lambda0)]
        assert row.trajectories == len(group)
        assert row.frac_converged == cell_statistic(group.status, group.status, "status", "frac_converged")
        for value in values:
            eta_sharpness = group.eta * group.sharpness_T
            expected = cell_statistic(group[value], group.status, value, stat, eta_sharpness=eta_sharpness)
            if stat == "mean":  # DuckDB and NumPy sum in different orders
                assert row[value] == pytest.approx(expected, rel=1e-13, nan_ok=True)
            elif value == "steps" or stat in ("min", "max"):
                assert _same(float(row[value]), expected), (stat, value)
            else:
                assert _close(float(row[value]), expected), (stat, value, row[value], expected)


def test_edge_cases_of_the_quantiles_match_numpy() -> None:
    """Ties, NaN, one element, two elements, all censored, none converged."""
    groups = {
        "one": ([3.0], ["converged"]),
        "two": ([1.0, 4.0], ["converged", "converged"]),
        "ties": ([2.0, 2.0, 2.0, 5.0, 5.0], ["converged"] * 5),
        "nan": ([1.0, math.nan, 3.0, 7.0], ["converged"] * 4),
        "censored": ([10.0, 20.0, 30.0], ["max_steps", "converged", "diverged"]),
        "none": ([1.0, 2.0], ["diverged", "max_steps"]),
        "thirds": ([0.1, 0.7, 0.2, 0.9, 0.3, 0.35], ["converged"] * 6),
    }
    rows = [(name, v, s) for name, (values, statuses) in groups.items() for v, s in zip(values, statuses, strict=True)]
    table = pa.table(
        {
            "group": [r[0] for r in rows],
            "steps": pa.array([int(r[1]) if not math.isnan(r[1]) else 0 for r in rows], type=pa.int64()),
            "q_ratio": [r[1] for r in rows],
            "status": pa.array([r[2] for r in rows]).dictionary_encode(),
        }
    )
    for stat in (s for s in STATS if s != "frac_stable"):  # frac_stable needs eta and sharpness_T
        result = statistics_table(table, ["group"], ["steps", "q_ratio"], stat).set_index("group")
        frame = pd.DataFrame({"group": [r[0] for r in rows], "q_ratio": [r[1] for r in rows]})
        frame["status"] = [r[2] for r in rows]
        frame["steps"] = table.column("steps").to_numpy()
        for name, part in frame.groupby("group"):
            for value in ("steps", "q_ratio"):
                expected = cell_statistic(part[value], part.status, value, stat)
                got = float(result.loc[name, value])
                if stat == "mean":
                    assert got == pytest.approx(expected, rel=1e-15, nan_ok=True)
                elif value == "steps" or stat in ("min", "max"):
                    assert _same(got, expected), (name, value, stat, got, expected)
                else:
                    assert _close(got, expected), (name, value, stat, got, expected)


def test_where_and_value_expressions_extend_the_query(mixed: Path) -> None:
    """A WHERE clause selects the trajectories every statistic sees; a named
    expression is a value like a column (here 1 − Q(T)/Q(0))."""
    from lin2net.store.outdir import read_trajectories

    frame = plain(read_trajectories(mixed)).to_pandas()
    result = grouped_statistics(
        mixed,
        ["eta"],
        ["steps", "one_minus_q"],
        "median",
        where=["d = 3", "phi > 1.5"],
        expressions={"one_minus_q": "1 - q_ratio"},
    )
    assert len(result) == 4
    for _, row in result.iterrows():
        group = frame[(frame.eta == row.eta) & (frame.d == 3) & (frame.phi > 1.5)]
        assert row.trajectories == len(group) == 3 * 37
        assert _same(row.steps, cell_statistic(group.steps, group.status, "steps", "median"))
        expected = cell_statistic(1 - group.q_ratio, group.status, "one_minus_q", "median")
        assert _close(row.one_minus_q, expected), (row.one_minus_q, expected)
