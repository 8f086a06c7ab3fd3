"""The SGD config keys: defaults, strict one-line errors, and GD configs left exactly as they were."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from lin2net.errors import ConfigError
from lin2net.sweep.config import parse_config
from lin2net.sweep.grid import expand_grid
from tests.conftest import make_config, trajectories_frame, write_yaml

SGD: dict[str, Any] = {
    "name": "sgd",
    "algorithm": "sgd",
    "trajectories": 8,
    "grid": {"eta": [0.1, 0.3], "lambda0": 1.0, "d": 2, "batch_size": [1, 4], "label_noise": [0.0, 0.1]},
    "data": {"n": 10},
    "max_steps": 200,
}


def with_changes(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(json.dumps(SGD))
    for key, value in changes.items():
        if key.startswith("grid_"):
            raw["grid"][key[5:]] = value
            if value is None:
                raw["grid"].pop(key[5:])
        elif value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def test_defaults_are_filled_and_round_trip() -> None:
    config = parse_config(with_changes())
    assert (config.algorithm, config.sampling, config.window) == ("sgd", "without_replacement", 200)
    resolved = config.resolved()
    assert resolved["data"] == {"n": 10, "x": "gaussian", "noise": 0.0}
    assert resolved["grid"]["batch_size"] == [1, 4] and resolved["grid"]["label_noise"] == [0.0, 0.1]
    assert parse_config(resolved) == config
    assert parse_config(with_changes(grid_label_noise=None)).axes["label_noise"] == (0.0,)
    assert parse_config(with_changes(max_steps=5000)).window == 1000


def test_gd_resolved_config_and_cell_ids_are_unchanged() -> None:
    config = make_config()
    assert list(config.resolved()) == [
        "name", "seed", "trajectories", "grid", "init", "loss_tol", "max_steps", "divergence_threshold", "integrator"
    ]  # fmt: skip
    assert list(config.resolved()["grid"]) == ["eta", "lambda0", "phi", "d"]
    for cell in expand_grid(config):
        old = {"eta": cell.eta, "lambda0": cell.lambda0, "phi": cell.phi, "d": cell.d, "init": cell.init}
        canonical = {k: float(v).hex() if isinstance(v, float) else v for k, v in sorted(old.items())}
        assert cell.cell_id == hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:12]


def test_sgd_cells_have_their_own_ids() -> None:
    cells = expand_grid(parse_config(with_changes()))
    assert len(cells) == 8 and len({cell.cell_id for cell in cells}) == 8


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        ({"algorithm": "adam"}, "algorithm", "must be one of gd, sgd"),
        ({"algorithm": None}, "data", "only used with algorithm: sgd"),
        ({"algorithm": None, "data": None}, "grid.batch_size", "only used with algorithm: sgd"),
        ({"grid_batch_size": None}, "grid.batch_size", "missing"),
        ({"grid_batch_size": 11}, "grid.batch_size", "at most data.n = 10"),
        ({"grid_batch_size": 0}, "grid.batch_size", "positive integer"),
        ({"grid_batch_size": 2.5}, "grid.batch_size", "positive integer"),
        ({"grid_label_noise": -0.1}, "grid.label_noise", ">= 0"),
        ({"data": {"n": 0}}, "data.n", "> 0"),
        ({"data": {"n": 10**6}}, "data.n", "at most 100000"),
        ({"data": {"x": "uniform"}}, "data.x", "gaussian, ones or a list"),
        ({"data": {"x": [0, 0, 0]}}, "data.x", "all values are 0"),
        ({"data": {"x": [1, 2], "n": 3}}, "data.n", "has 2 values"),
        ({"data": {"x": [1, "a"]}}, "data.x[1]", "must be a number"),
        ({"data": {"noise": -1}}, "data.noise", ">= 0"),
        ({"data": {"size": 3}}, "data.size", "unknown key"),
        ({"data": [1, 2]}, "data", "must be a mapping"),
        ({"sampling": "shuffle"}, "sampling", "must be one of without_replacement, with_replacement"),
        ({"window": 201}, "window", "at most max_steps = 200"),
        ({"window": 0}, "window", "> 0"),
    ],
)
def test_bad_sgd_keys_are_one_line_errors_naming_the_key(changes: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(with_changes(**changes))
    assert raised.value.key == key
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_sgd_sweep_through_the_cli(cli: Any, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "sgd.yaml", with_changes())
    out = tmp_path / "out"
    result = cli("sweep", config, "-o", out, "--quiet", "-j", "1")
    assert result.exit_code == 0, result.output
    table = trajectories_frame(out)
    assert len(table) == 8 * 8
    summary = cli("summarize", out, "--by", "batch_size,label_noise", "--format", "csv")
    assert summary.exit_code == 0, summary.output
    assert summary.stdout.splitlines()[0].startswith("batch_size,label_noise,trajectories")
    assert len(summary.stdout.strip().splitlines()) == 1 + 4
    import io

    import numpy as np
    import pandas as pd

    groups = pd.read_csv(io.StringIO(summary.stdout))
    for _, row in groups.iterrows():
        part = table[(table["batch_size"] == row.batch_size) & (table["label_noise"] == row.label_noise)]
        for value in ("loss_T", "q_ratio_window", "loss_window"):
            present = part[value].dropna()
            expected = float(np.median(present)) if len(present) else float("nan")
            assert row[f"{value}_median"] == expected or (np.isnan(expected) and np.isnan(row[f"{value}_median"]))
    figure = tmp_path / "sgd.png"
    plot = cli("plot", out, "--y", "batch_size", "--value", "loss_window", "-o", figure)
    assert plot.exit_code == 0, plot.output
    assert figure.stat().st_size > 0
    noisy_row = table[table["label_noise"] > 0].iloc[5]
    traced = tmp_path / "trace.csv"
    trace = cli(
        "trace", out, "--cell", noisy_row["cell_id"], "--trajectory", int(noisy_row["trajectory"]), "-o", traced
    )
    assert trace.exit_code == 0, trace.output
    assert trace.stderr.startswith(f"{noisy_row['status']} at T = {noisy_row['steps']}:")
    last = pd.read_csv(traced).iloc[-1]
    assert last["t"] == noisy_row["steps"]  # the sweep's own batches and noise, step by step
    assert last["log_q_ratio"] == pytest.approx(noisy_row["log_q_ratio"], rel=1e-12)
    assert last["lambda"] == pytest.approx(noisy_row["lambda_T"], rel=1e-12)
    assert last["loss"] == pytest.approx(noisy_row["loss_T"], rel=1e-9)
    refused = cli("check", out)
    assert refused.exit_code == 2 and "SGD sweep" in refused.stderr and refused.stderr.count("\n") == 1
    assert sorted(set(table["batch_size"])) == [1, 4] and sorted(set(table["label_noise"])) == [0.0, 0.1]
    noisy = table[table["label_noise"] > 0]
    assert (noisy["status"] == "max_steps").all() and noisy["loss_window"].notna().all()
    bad = write_yaml(tmp_path / "bad.yaml", with_changes(grid_batch_size=50))
    result = cli("sweep", bad, "-o", tmp_path / "bad")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: grid.batch_size:")
