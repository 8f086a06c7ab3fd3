"""keep: summary | both: per-cell summary files instead of (or beside) trajectory rows.

Oracles: the same sweep with keep: rows (summarize and check give the same
table), np.quantile on the rows (sketch quantiles of pooled cells within α),
and a fresh uninterrupted sweep (resume and --extend)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lin2net.analysis import cell_summary
from lin2net.analysis.summary import grouped_statistics
from lin2net.store.outdir import finished_cell_ids, read_trajectories
from lin2net.store.shards import form_shards
from lin2net.store.summary_file import SUMMARY_KEY, summary_files
from lin2net.sweep.executors import FAIL_CELLS_ENV, ShardTask, compute_shard
from lin2net.sweep.grid import expand_grid
from tests.conftest import make_config, write_yaml

RAW: dict[str, Any] = {
    "name": "summary",
    "seed": 11,
    "trajectories": 300,
    "grid": {"eta": [0.1, 0.5, 1.1], "lambda0": [1.0, 3.0], "d": [1, 5]},
    "max_steps": 3000,
}
ALPHA = cell_summary.ALPHA


def sweep(cli: Any, tmp_path: Path, out: str, *extra: str, raw: dict[str, Any] | None = None) -> Path:
    config = write_yaml(tmp_path / f"{out}.yaml", raw or RAW)
    result = cli("sweep", config, "-o", tmp_path / out, "-q", "--shard-size", "600", *extra)
    assert result.exit_code == 0, result.output
    return tmp_path / out


def csv(cli: Any, *args: Any) -> pd.DataFrame:
    result = cli(*args, "--format", "csv")
    assert result.exit_code == 0, result.output
    return pd.read_csv(io.StringIO(result.stdout))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from typer.testing import CliRunner

    from tests.conftest import Cli

    cli = Cli(CliRunner())
    tmp = tmp_path_factory.mktemp("summary-mode")
    return {
        "rows": sweep(cli, tmp, "rows"),
        "summary": sweep(cli, tmp, "summary", "--keep", "summary"),
        "both": sweep(cli, tmp, "both", "--keep", "both"),
    }


def test_files_each_mode_writes(outputs: dict[str, Path]) -> None:
    assert summary_files(outputs["rows"]) == []
    assert not list((outputs["summary"] / "shards").glob("*.parquet"))
    files = summary_files(outputs["summary"])
    assert len(files) == 6  # 12 cells of 300 trajectories, shards of 600
    assert all(SUMMARY_KEY in (pq.read_metadata(p).metadata or {}) for p in files)
    assert [p.name for p in summary_files(outputs["both"])] == [p.name for p in files]
    assert len(list((outputs["both"] / "shards").glob("part-*.parquet"))) == 6
    assert len(finished_cell_ids(outputs["summary"])) == 12


def test_summarize_per_cell_equals_the_rows_sweep(cli: Any, outputs: dict[str, Path]) -> None:
    rows = csv(cli, "summarize", outputs["rows"])
    pd.testing.assert_frame_equal(csv(cli, "summarize", outputs["summary"]), rows)
    pd.testing.assert_frame_equal(csv(cli, "summarize", outputs["both"]), rows)


def test_check_equals_the_rows_sweep_and_names_what_it_cannot_do(cli: Any, outputs: dict[str, Path]) -> None:
    pd.testing.assert_frame_equal(csv(cli, "check", outputs["summary"]), csv(cli, "check", outputs["rows"]))
    result = cli("check", outputs["summary"])
    assert result.exit_code == 0
    notes = [line for line in result.stderr.splitlines() if "keep: summary" in line]
    assert len(notes) == 1 and "cannot" in notes[0]


def lower_quantile(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q, method="lower")) if values.size else math.nan


def close(estimate: float, exact: float) -> bool:
    if math.isnan(exact) or math.isinf(exact):
        return estimate == exact or (math.isnan(estimate) and math.isnan(exact))
    return abs(estimate - exact) <= ALPHA * (1 + 1e-9) * abs(exact)


@pytest.mark.parametrize("stat", ["q25", "median", "q75"])
@pytest.mark.parametrize("value", ["q_ratio", "sharpness_T", "steps"])
def test_pooled_quantiles_are_within_alpha_of_the_rows(outputs: dict[str, Path], value: str, stat: str) -> None:
    q = cell_summary.QUANTILES[stat]
    frame = grouped_statistics(outputs["summary"], ["eta"], [value], stat)
    table = read_trajectories(outputs["rows"], ["eta", "status", value]).to_pandas()
    assert len(frame) == 3
    for row in frame.itertuples():
        part = table[table["eta"] == row.eta]
        converged = (part["status"].astype(str) == "converged").to_numpy()
        assert row.trajectories == len(part)
        assert row.frac_converged == converged.mean()
        data = part[value].to_numpy(dtype=np.float64)
        if value == "steps":  # censored: inverted_cdf of T with ∞ for the others
            exact = float(np.quantile(np.where(converged, data, np.inf), q, method="inverted_cdf"))
        else:
            exact = lower_quantile(data[converged], q)
        assert close(getattr(row, value), exact), (row, exact)


def test_means_and_extremes_pool_exactly(outputs: dict[str, Path]) -> None:
    table = read_trajectories(outputs["rows"], ["lambda0", "status", "lambda_T"]).to_pandas()
    for stat, reduce in (("mean", np.mean), ("min", np.min), ("max", np.max)):
        frame = grouped_statistics(outputs["summary"], ["lambda0"], ["lambda_T"], stat)
        for row in frame.itertuples():
            part = table[(table["lambda0"] == row.lambda0) & (table["status"].astype(str) == "converged")]
            assert row.lambda_T == pytest.approx(float(reduce(part["lambda_T"])), rel=1e-12)


def test_histograms_merge_to_the_histogram_of_the_union(outputs: dict[str, Path]) -> None:
    summaries = pq.read_table(summary_files(outputs["summary"])[0]).to_pandas()
    rows = read_trajectories(outputs["rows"], ["cell_id", "status", "steps", "log_q_ratio"]).to_pandas()
    rows = rows[rows["cell_id"].astype(str).isin(summaries["cell_id"]) & (rows["status"].astype(str) == "converged")]
    merged = cell_summary.merge_histograms(list(summaries["steps_hist"]))
    keys, counts = np.unique(cell_summary.steps_bin(rows["steps"].to_numpy()), return_counts=True)
    assert merged == dict(zip(keys.tolist(), counts.tolist(), strict=True))
    assert sum(cell_summary.merge_histograms(list(summaries["log_q_ratio_hist"])).values()) == len(rows)
    # documented edges: T + 1 in [2^(j/8), 2^((j+1)/8))
    assert cell_summary.steps_bin(np.array([0, 1, 2, 255])).tolist() == [0, 8, 12, 64]


def test_plot_reads_summaries_and_refuses_values_not_kept(cli: Any, outputs: dict[str, Path], tmp_path: Path) -> None:
    result = cli("plot", outputs["summary"], "-o", tmp_path / "f.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f.png").stat().st_size > 0
    result = cli("plot", outputs["summary"], "--value", "eps_T")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith("error: --value: eps_T is not kept")


def test_resume_runs_only_failed_and_corrupt_shards(cli: Any, tmp_path: Path, outputs: dict[str, Path]) -> None:
    cells = expand_grid(make_config(**RAW))
    bad = cells[4].cell_id
    config = write_yaml(tmp_path / "c.yaml", RAW)
    out = tmp_path / "resumed"
    first = cli.env(**{FAIL_CELLS_ENV: bad})(
        "sweep", config, "-o", out, "-q", "--shard-size", "600", "--keep", "summary"
    )
    assert first.exit_code == 1
    assert bad not in finished_cell_ids(out) and len(finished_cell_ids(out)) == 11
    damaged = summary_files(out)[0]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 3] ^= 0xFF
    damaged.write_bytes(bytes(data))
    second = cli("sweep", config, "-o", out, "-q", "--shard-size", "600", "--keep", "summary")
    assert second.exit_code == 0, second.output
    assert "moved to" in second.output and "ran 3, skipped 9" in second.output
    pd.testing.assert_frame_equal(csv(cli, "summarize", out), csv(cli, "summarize", outputs["rows"]))


def test_both_reruns_a_shard_whose_summary_is_missing(cli: Any, tmp_path: Path) -> None:
    out = sweep(cli, tmp_path, "both", "--keep", "both")
    summary_files(out)[2].unlink()
    config = write_yaml(tmp_path / "again.yaml", RAW)
    result = cli("sweep", config, "-o", out, "-q", "--shard-size", "600", "--keep", "both")
    assert result.exit_code == 0 and "ran 2, skipped 10" in result.output
    assert len(summary_files(out)) == 6


def test_extend_runs_only_new_cells_and_matches_a_fresh_sweep(
    cli: Any, tmp_path: Path, outputs: dict[str, Path]
) -> None:
    small = {**RAW, "grid": {**RAW["grid"], "eta": [0.1, 0.5]}}
    out = sweep(cli, tmp_path, "grown", "--keep", "summary", raw=small)
    config = write_yaml(tmp_path / "big.yaml", RAW)
    result = cli("sweep", config, "-o", out, "-q", "--shard-size", "600", "--keep", "summary", "--extend")
    assert result.exit_code == 0 and "ran 4, skipped 8" in result.output
    pd.testing.assert_frame_equal(csv(cli, "summarize", out), csv(cli, "summarize", outputs["summary"]))


def test_overwrite_removes_summary_files(cli: Any, tmp_path: Path) -> None:
    out = sweep(cli, tmp_path, "replaced", "--keep", "summary")
    config = write_yaml(tmp_path / "rows.yaml", RAW)
    result = cli("sweep", config, "-o", out, "-q", "--overwrite")
    assert result.exit_code == 0, result.output
    assert summary_files(out) == [] and len(list((out / "shards").glob("part-*.parquet"))) >= 1


def test_the_shared_compute_path_writes_summaries(tmp_path: Path) -> None:
    """What a Dask worker runs (compute_shard) writes the summary file itself."""
    from lin2net.store.outdir import prepare_output_dir

    config = make_config(keep="summary", trajectories=50)
    prepare_output_dir(tmp_path, config, overwrite=False)
    shard = form_shards(expand_grid(config), config.trajectories)[0]
    (outcome,) = compute_shard(ShardTask(config, shard, tmp_path.resolve()))
    assert outcome.error is None
    assert [p.name for p in summary_files(tmp_path)] == [shard.file_name]
    assert len(finished_cell_ids(tmp_path)) == len(shard.cells)


def test_keep_is_validated_and_rows_sweeps_resolve_as_before(cli: Any, tmp_path: Path) -> None:
    assert "keep" not in make_config().resolved()
    assert make_config(keep="both").resolved()["keep"] == "both"
    config = write_yaml(tmp_path / "bad.yaml", {**RAW, "keep": "summaries"})
    result = cli("sweep", config, "-o", tmp_path / "x")
    assert result.exit_code == 2
    assert result.output.startswith("error: keep: must be one of rows, summary, both")
    assert not (tmp_path / "x").exists()


SGD_RAW: dict[str, Any] = {
    "name": "sgd-summary",
    "seed": 3,
    "trajectories": 64,
    "algorithm": "sgd",
    "grid": {"eta": [0.1, 0.4], "lambda0": 1.0, "d": 3, "batch_size": [1, 4], "label_noise": [0.0, 0.1]},
    "data": {"n": 12},
    "loss_tol": 1e-10,
    "max_steps": 400,
    "window": 50,
}


def test_sgd_summaries_equal_the_rows_sweep(cli: Any, tmp_path: Path) -> None:
    rows = sweep(cli, tmp_path, "sgd-rows", raw=SGD_RAW)
    summary = sweep(cli, tmp_path, "sgd-summary", "--keep", "summary", raw=SGD_RAW)
    pd.testing.assert_frame_equal(csv(cli, "summarize", summary), csv(cli, "summarize", rows))
    pooled = csv(cli, "summarize", summary, "--by", "batch_size")
    exact = csv(cli, "summarize", rows, "--by", "batch_size")
    pd.testing.assert_series_equal(pooled["frac_converged"], exact["frac_converged"])
    assert (pooled["trajectories"] == exact["trajectories"]).all()


def test_trace_recomputes_a_trajectory_of_a_summary_only_sweep(cli: Any, outputs: dict[str, Path]) -> None:
    cell = expand_grid(make_config(**RAW))[0].cell_id
    result = cli("trace", outputs["summary"], "--cell", cell, "--trajectory", "3")
    assert result.exit_code == 0, result.output


def test_a_cell_in_two_parts_merges_to_within_alpha_of_the_whole(outputs: dict[str, Path]) -> None:
    """A cell streamed through two shards has two summary rows: fractions, means
    and extremes exact, quantiles from the merged sketches within α."""
    table = read_trajectories(outputs["rows"]).to_pandas()
    cell = table[table["cell_id"].astype(str) == table["cell_id"].astype(str).iloc[0]]
    codes = {"converged": 0, "diverged": 1, "max_steps": 2}
    columns = {name: cell[name].to_numpy() for name in ("steps", "q_ratio", "sharpness_T", "lambda_T", "lambda_gf")}
    columns["log_q_ratio"] = cell["log_q_ratio"].to_numpy()
    columns["status"] = cell["status"].astype(str).map(codes).to_numpy()
    half = len(cell) // 3
    parts = [{k: v[s] for k, v in columns.items()} for s in (slice(0, half), slice(half, None))]
    rows = pd.DataFrame([{"cell_id": "c", **cell_summary.cell_row(p, sgd=False)} for p in parts])
    whole = cell_summary.cell_row(columns, sgd=False)
    converged = columns["status"] == 0
    for value in ("q_ratio", "sharpness_T"):
        for stat, q in cell_summary.QUANTILES.items():
            merged = cell_summary.value_statistic(rows, value, stat)
            assert close(merged, lower_quantile(columns[value][converged], q))
        assert cell_summary.value_statistic(rows, value, "max") == whole[f"{value}_max"]
        assert cell_summary.value_statistic(rows, value, "mean") == pytest.approx(
            np.mean(columns[value][converged]), rel=1e-12
        )
    assert cell_summary.value_statistic(rows, "status", "frac_converged") == converged.mean()
    assert close(cell_summary.value_statistic(rows, "lambda_gf", "median"), lower_quantile(columns["lambda_gf"], 0.5))


def test_per_cell_statistics_for_plot_equal_the_rows_sweep(outputs: dict[str, Path]) -> None:
    """Grouped by every axis (one summary row a group, plot's case): exact columns
    equal the rows' statistics; means within rounding; sketched quantiles within α."""
    keys = ["eta", "lambda0", "d"]
    for stat in ("median", "q25", "q75", "frac_converged", "frac_max_steps"):
        kept = grouped_statistics(outputs["summary"], keys, ["q_ratio", "steps", "sharpness_T"], stat)
        rows = grouped_statistics(outputs["rows"], keys, ["q_ratio", "steps", "sharpness_T"], stat)
        pd.testing.assert_frame_equal(kept, rows, check_dtype=False)
    for stat in ("mean", "min", "max"):
        kept = grouped_statistics(outputs["summary"], keys, ["lambda_T"], stat)
        rows = grouped_statistics(outputs["rows"], keys, ["lambda_T"], stat)
        np.testing.assert_allclose(kept["lambda_T"], rows["lambda_T"], rtol=1e-12, equal_nan=True)
    kept = grouped_statistics(outputs["summary"], keys, ["lambda_T"], "median")
    table = read_trajectories(outputs["rows"], [*keys, "status", "lambda_T"]).to_pandas()
    for row in kept.itertuples():
        part = table[(table["eta"] == row.eta) & (table["lambda0"] == row.lambda0) & (table["d"] == row.d)]
        values = part["lambda_T"][part["status"].astype(str) == "converged"].to_numpy()
        assert close(row.lambda_T, lower_quantile(values, 0.5))


@pytest.mark.parametrize("folder", ["shards", "summaries"])
def test_a_damaged_column_name_in_a_footer_is_moved_aside_not_a_traceback(
    cli: Any, tmp_path: Path, folder: str
) -> None:
    """A flipped byte in a column name of the Parquet footer (not UTF-8 any more)
    fails verification like any other damage (it used to raise UnicodeDecodeError)."""
    import struct

    out = sweep(cli, tmp_path, "damaged", "--keep", "both")
    path = sorted((out / folder).glob("part-*.parquet"))[0]
    data = bytearray(path.read_bytes())
    footer = len(data) - 8 - struct.unpack("<i", data[-8:-4])[0]
    where = data.find(b"sharpness_T", footer)
    assert where > footer
    data[where] ^= 0xC0
    path.write_bytes(bytes(data))
    config = write_yaml(tmp_path / "again.yaml", RAW)
    result = cli("sweep", config, "-o", out, "-q", "--shard-size", "600", "--keep", "both")
    assert result.exit_code == 0, result.output
    assert f"{path.name} failed verification" in result.output and "ran 2, skipped 10" in result.output


def test_another_keep_is_another_config(cli: Any, tmp_path: Path, outputs: dict[str, Path]) -> None:
    config = write_yaml(tmp_path / "c.yaml", RAW)
    result = cli("sweep", config, "-o", outputs["rows"], "-q", "--shard-size", "600", "--keep", "summary")
    assert result.exit_code == 2
    assert "different config (keep is missing from OUT)" in result.output and "--overwrite" in result.output
    assert summary_files(outputs["rows"]) == []


def test_frac_stable_and_log_q_median_per_cell_and_pooled(cli: Any, outputs: dict[str, Path]) -> None:
    """frac_stable (converged with η·S(T) < 2) is a count, exact per cell and pooled;
    log_q_ratio_median is exact per cell and, pooled, within α of the rows'."""
    keys = ["eta", "lambda0", "d"]
    for stat in ("frac_stable", "frac_diverged"):
        kept = grouped_statistics(outputs["summary"], keys, ["q_ratio"], stat)
        rows = grouped_statistics(outputs["rows"], keys, ["q_ratio"], stat)
        pd.testing.assert_frame_equal(kept, rows, check_dtype=False)
    kept = grouped_statistics(outputs["summary"], keys, ["log_q_ratio"], "median")
    rows = grouped_statistics(outputs["rows"], keys, ["log_q_ratio"], "median")
    pd.testing.assert_frame_equal(kept, rows, check_dtype=False)
    pooled = csv(cli, "summarize", outputs["summary"], "--by", "eta")
    exact = csv(cli, "summarize", outputs["rows"], "--by", "eta")
    assert list(pooled.columns) == list(exact.columns)
    pd.testing.assert_series_equal(pooled["frac_stable"], exact["frac_stable"])
    table = read_trajectories(outputs["rows"], ["eta", "status", "log_q_ratio"]).to_pandas()
    for row in pooled.itertuples():
        part = table[(table["eta"] == row.eta) & (table["status"].astype(str) == "converged")]
        values = part["log_q_ratio"].to_numpy(dtype=np.float64)
        assert close(row.log_q_ratio_median, lower_quantile(values[~np.isnan(values)], 0.5))


def test_sgd_summary_values_come_from_the_registry(cli: Any, tmp_path: Path) -> None:
    """Every SGD summary value of the registry has its exact median per cell (plot's
    median of it equals the rows sweep's) and its column in summarize."""
    from lin2net.dynamics import registry

    values = list(registry.get("sgd").summary_values)
    rows = sweep(cli, tmp_path, "sgd-rows", raw=SGD_RAW)
    summary = sweep(cli, tmp_path, "sgd-summary", "--keep", "summary", raw=SGD_RAW)
    keys = ["eta", "batch_size", "label_noise"]
    kept = grouped_statistics(summary, keys, values, "median")
    exact = grouped_statistics(rows, keys, values, "median")
    pd.testing.assert_frame_equal(kept, exact, check_dtype=False)
    for stat in ("frac_stable", "frac_converged"):
        pd.testing.assert_frame_equal(
            grouped_statistics(summary, keys, ["sharpness_T"], stat),
            grouped_statistics(rows, keys, ["sharpness_T"], stat),
            check_dtype=False,
        )
    assert [f"{v}_median" for v in values] == list(csv(cli, "summarize", summary).columns[-len(values) :])


def test_stable_counts_converged_below_two_over_eta(tmp_path: Path) -> None:
    """summary_table's ``stable``: converged with η·S(T) < 2 only (a converged
    trajectory at η·S(T) ≥ 2 only passed through loss_tol), as summarize's frac_stable."""
    import dataclasses

    from lin2net.dynamics.cells import simulate_cells

    config = make_config(trajectories=40, grid={"eta": [0.1, 0.5], "lambda0": 1.0, "d": 3})
    cells = expand_grid(config)
    initial, results = simulate_cells(config, cells)
    sharpness = np.array(results.sharpness_T, dtype=np.float64, copy=True)
    sharpness[::3] = 2.5 / np.repeat([cell.eta for cell in cells], config.trajectories)[::3]  # η·S(T) = 2.5
    results = dataclasses.replace(results, sharpness_T=sharpness)
    table = cell_summary.summary_table(cells, config.trajectories, initial, results).to_pandas()
    for index, cell in enumerate(cells):
        part = slice(index * config.trajectories, (index + 1) * config.trajectories)
        converged = np.asarray(results.status[part]) == 0
        expected = int(np.count_nonzero(converged & (cell.eta * sharpness[part] < 2.0)))
        row = table.iloc[index]
        assert row["stable"] == expected < row["converged"]
        assert cell_summary.value_statistic(table.iloc[[index]], "status", "frac_stable") == expected / len(converged)


def test_a_grid_point_larger_than_a_shard_is_refused_before_anything_is_written(tmp_path: Path, cli: Any) -> None:
    """Summary files hold whole grid points: a sweep (and its dry run) that would
    split one into parts is refused in one line, and writes nothing."""
    config = write_yaml(
        tmp_path / "big.yaml",
        {"name": "big", "trajectories": 70_000, "keep": "summary", "grid": {"eta": 0.1, "lambda0": 1.0}},
    )
    out = tmp_path / "out"
    for extra in (["--dry-run"], ["-q"]):
        result = cli("sweep", config, "-o", out, "--shard-size", "1000", *extra)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: keep: 'summary' needs each grid point in one shard")
        assert result.output.count("\n") == 1
        assert not out.exists()


def test_reading_rows_of_a_summary_only_output_says_there_are_none(outputs: dict[str, Path], cli: Any) -> None:
    import lin2net

    result = cli("plot", outputs["summary"], "--kind", "line", "--x", "eta")
    assert result.exit_code != 0
    assert "keeps per-cell summaries only (keep: summary)" in result.output
    with pytest.raises(Exception, match="no trajectory rows"):
        lin2net.open(outputs["summary"]).trajectories()
