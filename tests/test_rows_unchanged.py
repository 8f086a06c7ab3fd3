"""Refactors never change a row: today's code against rows recorded before them.

``tests/fixtures/rows/*.parquet`` were written by ``tests/fixtures/record_rows.py``
on the commit before the dynamics protocol (issue "One dynamics protocol").
Each config is swept again here, also with other shard sizes and worker
counts, and every row must come back identical: the same cell ids and
trajectories, integers equal, floats bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from lin2net.cli import app
from tests.fixtures.record_rows import CONFIGS, HERE, sweep_rows

# (config, extra sweep options); the slow ones run in CI's slow pass.
CASES = [
    pytest.param("gd_compiled", (), id="gd_compiled"),
    pytest.param(
        "gd_compiled", ("--shard-size", "97", "--workers", "1"), id="gd_compiled-shard97-w1", marks=pytest.mark.slow
    ),
    pytest.param("gd_reduced", ("--shard-size", "300"), id="gd_reduced-shard300", marks=pytest.mark.slow),
    pytest.param("gd_full", (), id="gd_full", marks=pytest.mark.slow),
    pytest.param("sgd_compiled", (), id="sgd_compiled"),
    pytest.param("sgd_compiled", ("--shard-size", "50", "--workers", "1"), id="sgd_compiled-shard50-w1",
                 marks=pytest.mark.slow),
    pytest.param("sgd_reduced", (), id="sgd_reduced", marks=pytest.mark.slow),
]


def _bits(column: pa.ChunkedArray) -> np.ndarray:
    values = column.to_numpy(zero_copy_only=False)
    return values.view(np.int64) if values.dtype == np.float64 else values


def _in_process(*args: str) -> None:
    """``lin2net args`` in this process: the same command line, without the second
    of imports a subprocess costs (tests/test_sweep_cli.py tests ``python -m lin2net``)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("name", "options"), CASES)
def test_rows_equal_the_recorded_rows(name: str, options: tuple[str, ...], tmp_path: Path) -> None:
    recorded = pq.read_table(HERE / f"{name}.parquet")
    rows = sweep_rows(name, CONFIGS[name], tmp_path, *options, lin2net=_in_process)
    assert rows.column_names == recorded.column_names
    assert rows.num_rows == recorded.num_rows
    for column in recorded.column_names:
        mismatched = np.flatnonzero(_bits(rows[column]) != _bits(recorded[column]))
        assert mismatched.size == 0, (
            f"{column}: {mismatched.size} rows differ, first at row {mismatched[0]}: "
            f"{rows[column][int(mismatched[0])]} against recorded {recorded[column][int(mismatched[0])]}"
        )
