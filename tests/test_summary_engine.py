"""summarize and grouped statistics run in DuckDB; they equal the NumPy
reference (the pre-DuckDB code path, kept as summary.statistics and
summary.cell_statistic) bit for bit, on sweeps with every status and on
hand-made groups with NaN, ties, censoring and empty sets."""

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


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_summarize_equals_the_numpy_reference_bit_for_bit(mixed: Path) -> None:
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
            assert _same(float(row[name]), float(value)), (cell_id, name, row[name], value)
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
            assert _same(float(row[name]), float(value)), (by, name)


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
            else:
                assert _same(float(row[value]), expected), (stat, value)


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
                else:
                    assert _same(got, expected), (name, value, stat, got, expected)
