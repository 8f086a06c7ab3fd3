"""End to end: sweep → Parquet → summarize, through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from numpy.testing import assert_allclose

from lin2net.analysis.summary import summarize
from lin2net.store.outdir import read_trajectories, shard_files
from lin2net.sweep.grid import expand_grid
from tests.conftest import make_config, plain, trajectories_frame, write_yaml

SMALL = {
    "name": "small",
    "seed": 3,
    "trajectories": 40,
    "grid": {"eta": [0.1, 0.9], "lambda0": [0.5, 2.0], "phi": 1.0, "d": [1, 5]},
    "loss_tol": 1e-10,
    "max_steps": 4000,
}
LABELS = "dictionary<values=string, indices=int8, ordered=0>"
DESIGN_COLUMNS = {
    "cell_id": "dictionary<values=string, indices=int32, ordered=0>", "trajectory": "int64", "eta": "double",
    "lambda0": "double", "phi": "double", "d": "int64", "init": LABELS, "eps0": "double", "q0": "double",
    "sharpness0": "double", "status": LABELS, "regime": LABELS, "steps": "int64", "eps_T": "double",
    "lambda_T": "double", "sharpness_T": "double",
    "q_ratio": "double", "lambda_gf": "double", "sum_eps2": "double", "max_eta_sharpness": "double",
    "eos_steps": "int64",
}  # fmt: skip


def _sweep(cli, tmp_path: Path, config: dict, name: str = "out") -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path / name
    result = cli("sweep", write_yaml(tmp_path / f"{name}.yaml", config), "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_sweep_writes_one_shard_file_holding_every_cell(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = _sweep(cli, tmp_path, SMALL)
    files = shard_files(out)
    assert len(files) == 1  # 8 cells of 40 trajectories: one shard
    assert [p.name for p in (out / "shards").iterdir()] == [files[0].name]
    footer = json.loads(pq.read_metadata(files[0]).metadata[b"lin2net.shard"])
    assert [c["cell_id"] for c in footer["cells"]] == [c.cell_id for c in expand_grid(make_config(**{
        k: v for k, v in SMALL.items() if k != "name"}))]  # fmt: skip
    table = read_trajectories(out)
    assert table.num_rows == 8 * 40
    for name, dtype in DESIGN_COLUMNS.items():
        assert str(table.schema.field(name).type) == dtype, name
    frame = table.to_pandas()
    assert set(frame.status) <= {"converged", "diverged", "max_steps"}
    for _, cell in frame.groupby("cell_id"):
        assert sorted(cell.trajectory) == list(range(40))
        assert cell[["eta", "lambda0", "phi", "d"]].nunique().max() == 1
    # provenance beside the files and inside them
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["grid"]["eta"] == [0.1, 0.9] and resolved["trajectories"] == 40
    versions = json.loads((out / "provenance.json").read_text())
    assert versions["numpy"] == np.__version__
    meta = pq.read_schema(files[0]).metadata
    assert json.loads(meta[b"lin2net.config"]) == resolved
    assert json.loads(meta[b"lin2net.provenance"])["numpy"] == np.__version__


def test_values_in_the_table_are_consistent(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    frame = read_trajectories(_sweep(cli, tmp_path, SMALL)).to_pandas()
    conv = frame[frame.status == "converged"]
    assert np.all(0.5 * conv.eps_T**2 <= 1e-10)
    assert_allclose(conv.q_ratio, np.exp(conv.log_q_ratio))
    assert_allclose(frame.lambda_init, frame.lambda0)  # sphere: exact scale
    assert_allclose(frame.eta_lambda0, frame.eta * frame.lambda0)
    assert np.all(frame.steps[frame.status == "max_steps"] == 4000)
    # a·b ranges within ±λ0/2 (Cauchy–Schwarz), so ε0 ∈ [−λ0/2 − Φ, λ0/2 − Φ]
    assert np.all(np.abs(frame.eps0 + frame.phi) <= frame.lambda0 / 2 + 1e-12)


def test_same_config_twice_gives_identical_tables(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    first = read_trajectories(_sweep(cli, tmp_path, SMALL, "one")).to_pandas()
    second = read_trajectories(_sweep(cli, tmp_path, SMALL, "two")).to_pandas()
    pd.testing.assert_frame_equal(first, second)


def test_extra_axis_value_leaves_shared_cells_identical(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    bigger = {**SMALL, "grid": {**SMALL["grid"], "eta": [0.05, 0.1, 0.9]}}
    base = trajectories_frame(_sweep(cli, tmp_path, SMALL, "base"))
    more = trajectories_frame(_sweep(cli, tmp_path, bigger, "more"))
    assert len(more) == len(base) * 3 // 2
    shared = more[more.cell_id.isin(set(base.cell_id))].reset_index(drop=True)
    key = ["cell_id", "trajectory"]
    pd.testing.assert_frame_equal(
        base.sort_values(key).reset_index(drop=True), shared.sort_values(key).reset_index(drop=True)
    )


def test_cell_id_depends_on_values_not_position() -> None:
    ids = {c.parameters["eta"]: c.cell_id for c in expand_grid(make_config(grid={"eta": [0.1, 0.2], "lambda0": 1.0}))}
    flipped = {
        c.parameters["eta"]: c.cell_id for c in expand_grid(make_config(grid={"eta": [0.2, 0.1], "lambda0": 1.0}))
    }
    assert ids == flipped and len(set(ids.values())) == 2


def test_refuses_other_output_unless_overwrite(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = _sweep(cli, tmp_path, SMALL)
    before = {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    # the same config resumes: nothing left to run, nothing rewritten
    again = cli("sweep", tmp_path / "out.yaml", "-o", out, "--quiet")
    assert again.exit_code == 0 and "ran 0, skipped 8" in again.stderr
    # a different config is refused, naming the first differing key
    other = write_yaml(tmp_path / "other.yaml", {**SMALL, "max_steps": 100})
    refused = cli("sweep", other, "-o", out)
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "max_steps is 4000 in OUT, 100 here" in refused.stderr and "--overwrite" in refused.stderr
    assert {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == before
    # a directory that is not a lin2net output is refused too
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    kept = cli("sweep", other, "-o", foreign)
    assert kept.exit_code == 2 and "not a lin2net output" in kept.stderr and not (foreign / "shards").exists()
    replaced = cli("sweep", other, "-o", out, "--overwrite", "--quiet")
    assert replaced.exit_code == 0 and "ran 8, skipped 0" in replaced.stderr
    assert yaml.safe_load((out / "config.yaml").read_text())["max_steps"] == 100


def test_full_integrator_agrees_with_reduced(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    stable = {**SMALL, "grid": {**SMALL["grid"], "eta": [0.1, 0.3]}}
    reduced = trajectories_frame(_sweep(cli, tmp_path, stable, "reduced"))
    full = trajectories_frame(_sweep(cli, tmp_path, {**stable, "integrator": "full"}, "full"))
    key = ["cell_id", "trajectory"]
    reduced, full = reduced.sort_values(key), full.sort_values(key)
    assert list(reduced.status) == list(full.status)
    assert np.abs(reduced.steps.to_numpy() - full.steps.to_numpy()).max() <= 1
    same = reduced.steps.to_numpy() == full.steps.to_numpy()
    assert_allclose(reduced.q_ratio.to_numpy()[same], full.q_ratio.to_numpy()[same], rtol=1e-8)


def test_summarize_statistics_match_the_trajectories(tmp_path: Path) -> None:
    out = tmp_path / "s"
    from lin2net.sweep.runner import run_sweep

    run_sweep(make_config(**{k: v for k, v in SMALL.items() if k != "name"}), out)
    frame = read_trajectories(out).to_pandas()
    summary = summarize(out)
    assert len(summary) == 8 and set(summary.cell_id) == set(frame.cell_id)
    for _, row in summary.iterrows():
        cell = frame[frame.cell_id == row.cell_id]
        conv = cell[cell.status == "converged"]
        assert row.trajectories == 40
        assert row.frac_converged == pytest.approx((cell.status == "converged").mean())
        assert row.frac_diverged + row.frac_converged + row.frac_max_steps == pytest.approx(1)
        if len(conv):
            assert row.q_ratio_median == pytest.approx(np.median(conv.q_ratio))
            assert row.sharpness_T_median == pytest.approx(np.median(conv.sharpness_T))
        if len(conv) == len(cell):
            ordered = np.sort(conv.steps)
            assert ordered[len(ordered) // 2 - 1] <= row.steps_median <= ordered[len(ordered) // 2]
        assert row.lambda_gf_median == pytest.approx(np.median(cell.lambda_gf))
    pooled = summarize(out, by=["eta"])
    assert list(pooled.eta) == [0.1, 0.9] and list(pooled.trajectories) == [160, 160]
    for _, row in pooled.iterrows():
        part = frame[frame.eta == row.eta]
        assert row.frac_converged == pytest.approx((part.status == "converged").mean())


def test_summarize_formats(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = _sweep(cli, tmp_path, SMALL)
    expected = summarize(out, by=["eta", "d"])
    csv = cli("summarize", out, "--by", "eta,d", "--format", "csv")
    assert csv.exit_code == 0
    lines = csv.stdout.strip().splitlines()
    assert lines[0].split(",")[:2] == ["eta", "d"] and len(lines) == 1 + len(expected)
    md = cli("summarize", out, "--by", "eta", "--by", "d", "--format", "markdown", "-o", tmp_path / "s.md")
    assert md.exit_code == 0
    text = (tmp_path / "s.md").read_text().splitlines()
    assert text[0].startswith("| eta | d |") and set(text[1]) <= {"|", "-"} and len(text) == 2 + len(expected)
    pq_out = cli("summarize", out, "--by", "eta,d", "-o", tmp_path / "s.parquet")
    assert pq_out.exit_code == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s.parquet"), expected)
    table = cli("summarize", out)
    assert table.exit_code == 0 and "conv" in table.stdout and "…" not in table.stdout
    bad = cli("summarize", out, "--by", "width")
    assert bad.exit_code == 2 and "width" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    missing = cli("summarize", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "nowhere does not exist" in missing.stderr


def test_piped_summary_table_keeps_each_cell_on_one_line(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """Redirected output has no terminal width to fit: the table is printed at its
    natural width (wider than 80 here) rather than splitting numbers across lines."""
    config = {**SMALL, "trajectories": 10, "grid": {**SMALL["grid"], "phi": [1.0, 1.5]}}
    out = _sweep(cli, tmp_path, config)
    result = cli("summarize", out)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 16 and len({len(line) for line in lines}) == 1
    expected = summarize(out)
    for row, (_, cell) in zip(rows, expected.iterrows(), strict=True):
        fields = [field.strip() for field in row.strip("│").split("│")]
        assert [float(f) for f in fields[:4]] == [cell.eta, cell.lambda0, cell.phi, cell.d]
        assert int(fields[4]) == cell.trajectories == 10


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "c.yaml", {**SMALL, "grid": {"eta": 0.1, "lambda0": 1.0, "d": 2}})
    run = subprocess.run(
        [sys.executable, "-m", "lin2net", "sweep", str(config), "-o", str(tmp_path / "o"), "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "1 cells, 40 trajectories" in run.stderr
    assert len(shard_files(tmp_path / "o")) == 1


def test_shard_row_groups_hold_whole_cells_and_read_back_equal(tmp_path: Path) -> None:
    """Small cells share row groups, a cell never straddles two, and a large
    cell is written in pieces (bounded memory): the file holds the same rows."""
    from lin2net.dynamics.cells import cell_table, shard_tables, simulate_cells
    from lin2net.store.outdir import marker_text, read_trajectories, write_shard
    from lin2net.store.shard_file import row_groups
    from lin2net.store.shards import form_shards

    assert row_groups(5, 3, limit=7) == [(0, 6), (6, 12), (12, 15)]
    assert row_groups(2, 5, limit=3) == [(0, 3), (3, 5), (5, 8), (8, 10)]
    config = make_config(trajectories=50, grid={"eta": [0.3, 0.5], "lambda0": 1.0, "d": 3})
    cells = expand_grid(config)
    (shard,) = form_shards(cells, 50)
    initial, results = simulate_cells(config, cells)
    whole = pa.concat_tables(
        [cell_table(cell, *simulate_cells(config, [cell])) for cell in cells]  # one cell at a time
    )
    assert plain(pa.concat_tables(list(shard_tables(cells, 50, initial, results)))).equals(plain(whole))
    (tmp_path / ".lin2net").write_text(marker_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.resolved()))
    (tmp_path / "shards").mkdir()
    path = write_shard(tmp_path, config, shard, shard_tables(cells, 50, initial, results))
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    assert plain(read_trajectories(tmp_path)).equals(plain(whole))


WIDE_CONFIG = {**SMALL, "trajectories": 10, "grid": {**SMALL["grid"], "phi": [1.0, 1.5]}}


def _table_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("│")]
    return [[f.strip() for f in line.strip().strip("│").split("│")] for line in rows]


@pytest.mark.parametrize("columns", [80, 60])
def test_summary_fits_a_narrow_terminal_by_dropping_columns(tmp_path: Path, cli, columns: int) -> None:  # type: ignore[no-untyped-def]
    """At 80 (or 60) columns, no line is wider than the terminal, every row stays on one
    line with whole numbers, and the caption names the columns left out."""
    out = _sweep(cli, tmp_path, WIDE_CONFIG)
    result = cli.env(COLUMNS=str(columns))("summarize", out)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= columns
    rows = _table_rows(result.stdout)
    expected = summarize(out)
    assert len(rows) == len(expected) == 16
    for fields, (_, cell) in zip(rows, expected.iterrows(), strict=True):
        assert [float(f) for f in fields[:4]] == [cell.eta, cell.lambda0, cell.phi, cell.d]
        assert int(fields[4]) == cell.trajectories
        assert float(fields[5]) == pytest.approx(cell.frac_converged, rel=1e-3)
    assert "not shown for lack of width: " in result.stdout and "λ_GF" in result.stdout.split("not shown")[1]
    wide = cli.env(COLUMNS="200")("summarize", out)
    assert "not shown" not in wide.stdout and "λ_GF" in wide.stdout
    assert len(_table_rows(wide.stdout)[0]) > len(rows[0])


def test_grouping_columns_always_show_and_constant_axes_go_in_the_caption(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = _sweep(cli, tmp_path, SMALL)  # phi takes one value
    plain = cli("summarize", out)
    header = next(line for line in plain.stdout.splitlines() if line.startswith("┃"))
    assert "Φ" not in header and "Φ = 1, init = sphere" in plain.stdout
    for axis, label, values in (("phi", "Φ", [1.0]), ("eta_lambda0", "η·λ0", [0.05, 0.2, 0.45, 1.8])):
        result = cli("summarize", out, "--by", axis)
        assert result.exit_code == 0, result.output
        header = next(line for line in result.stdout.splitlines() if line.startswith("┃"))
        assert header.strip("┃ ").startswith(label), header
        assert [float(row[0]) for row in _table_rows(result.stdout)] == values
    by_init = cli("summarize", out, "--by", "init")
    assert _table_rows(by_init.stdout)[0][0] == "sphere" and "Φ = 1" in by_init.stdout


@pytest.mark.parametrize("command", ["summarize", "check"])
@pytest.mark.parametrize("name", ["x.xlsx", "x.bin", "noext"])
def test_unknown_output_suffix_is_an_error(tmp_path: Path, cli, command: str, name: str) -> None:  # type: ignore[no-untyped-def]
    out = _sweep(cli, tmp_path, {**SMALL, "trajectories": 4})
    result = cli(command, out, "-o", tmp_path / name)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith(f"error: --output: unknown file type '{Path(name).suffix or '(no suffix)'}")
    assert not (tmp_path / name).exists()
    forced = cli(command, out, "-o", tmp_path / name, "--format", "csv")
    assert forced.exit_code == 0 and (tmp_path / name).read_text().startswith("cell_id,eta,lambda0,phi,d,")


def test_integer_columns_stay_integers_in_every_export(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import csv
    import io

    out = _sweep(cli, tmp_path, {**SMALL, "trajectories": 4})
    for command in ("summarize", "check"):
        for fmt in ("csv", "markdown"):
            result = cli(command, out, "--format", fmt)
            assert result.exit_code == 0, result.output
            lines = result.stdout.splitlines()
            if fmt == "markdown":
                lines = [line.strip("| ").replace(" | ", ",") for line in lines if not line.startswith("|--")]
            rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
            assert {row["d"] for row in rows} <= {"1", "5", ""}, (command, fmt)
            assert all(row["trajectories"].isdigit() for row in rows), (command, fmt)
        path = tmp_path / f"{command}.parquet"
        assert cli(command, out, "-o", path).exit_code == 0
        frame = pd.read_parquet(path)
        assert frame["d"].dtype.kind == "i" or str(frame["d"].dtype) == "Int64", command


def test_option_errors_are_one_line_with_exit_2(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = _sweep(cli, tmp_path, {**SMALL, "trajectories": 4})
    cases = [
        (["summarize", out, "-f", "xx"], "error: --format: 'xx' is not one of 'table', 'csv', 'markdown', 'parquet'"),
        (["plot", out, "--x", "width"], "error: --x: 'width' is not one of"),
        (["plot", out, "--stat", "mode"], "error: --stat: 'mode' is not one of"),
        (["sweep"], "error: Missing argument 'CONFIG'"),
        (["sweep", "c.yaml", "--nope"], "error: No such option: --nope"),
        (["nope"], "error: No such command 'nope'"),
        (["sweep", "c.yaml", "--workers", "many"], "error: --workers: Input should be a valid integer"),
        (["sweep", "c.yaml", "--overwrite=yes"], "error: "),
    ]
    for args, start in cases:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith(start) and result.stderr.count("\n") == 1, (args, result.stderr)
        assert result.stdout == "" and "╭" not in result.stderr and "Traceback" not in result.stderr


def test_help_is_plain_text_with_choices_and_defaults(cli) -> None:  # type: ignore[no-untyped-def]
    for command in ([], ["sweep"], ["summarize"], ["check"], ["plot"], ["trace"]):
        short, long = cli(*command, "-h"), cli(*command, "--help")
        assert short.exit_code == long.exit_code == 0 and short.stdout == long.stdout
        text = short.stdout
        assert "<bool>" not in text and "{" not in text and "\\[" not in text and "╭" not in text, command
        assert not [line for line in text.splitlines() if line.rstrip().endswith(" .")], command
        if command:
            assert text.startswith(f"Usage: lin2net {command[0]} [OPTIONS]"), text.splitlines()[0]
    sweep_help = cli("sweep", "-h").stdout
    assert "--overwrite  " in sweep_help and "--dry-run  " in sweep_help  # flags take no value
    plot_help = " ".join(cli("plot", "-h").stdout.split())
    axes = "<eta|lambda0|phi|d|eta_lambda0|batch_size|label_noise|depth|inputs>"
    assert f"--x {axes}" in plot_help and f"--y {axes}" in plot_help
    assert "[default: eta, or eta_lambda0 if swept]" in plot_help and "[default: lambda0]" in plot_help
    assert "-o, --output FILE Figure file: .png, .svg or .pdf [default: OUT/figure3.png" in plot_help
    assert "one_minus_q_ratio" in plot_help and "[default: median]" in plot_help
    assert "Usage: lin2net sweep [OPTIONS] CONFIG" in cli("sweep", "-h").stdout
