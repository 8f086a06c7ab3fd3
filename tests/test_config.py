"""Config validation: good configs resolve as documented, bad ones fail in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from lin2net.errors import ConfigError
from lin2net.sweep.config import load_config, parse_config
from lin2net.sweep.grid import expand_grid

GOOD_GRID = "grid:\n  eta: 0.1\n  lambda0: 1.0\n"


def test_axis_forms_expand() -> None:
    config = parse_config(
        {
            "grid": {
                "eta": {"geomspace": [0.001, 1.0, 4]},
                "lambda0": {"linspace": [1, 2, 3]},
                "phi": [0.5, 2],
                "d": {"geomspace": [1, 100, 5]},
            }
        }
    )
    assert_allclose(config.axes["eta"], [0.001, 0.01, 0.1, 1.0])
    assert config.axes["lambda0"] == (1.0, 1.5, 2.0)
    assert config.axes["phi"] == (0.5, 2.0)
    assert config.axes["d"] == (1, 3, 10, 32, 100)
    assert len(expand_grid(config)) == 4 * 3 * 2 * 5


def test_defaults() -> None:
    config = parse_config({"grid": {"eta": 0.1, "lambda0": 1.0}}, default_name="mine")
    assert (config.name, config.seed, config.trajectories, config.init) == ("mine", 0, 1000, "sphere")
    assert (config.loss_tol, config.max_steps, config.axes["phi"], config.axes["d"]) == (1e-10, 100_000, (1.0,), (10,))


def test_eta_lambda0_axis_sets_eta_per_cell() -> None:
    config = parse_config({"grid": {"eta_lambda0": [0.5, 2.0], "lambda0": [0.25, 4.0]}})
    etas = sorted((c.eta_lambda0, c.lambda0, c.eta) for c in expand_grid(config))
    assert etas == [(0.5, 0.25, 2.0), (0.5, 4.0, 0.125), (2.0, 0.25, 8.0), (2.0, 4.0, 0.5)]


def test_scientific_notation_without_dot_is_a_number(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD_GRID + "loss_tol: 1e-12\n")
    assert load_config(path).loss_tol == 1e-12


def test_resolved_config_round_trips() -> None:
    config = parse_config({"grid": {"eta": {"geomspace": [0.01, 1, 7]}, "lambda0": [1, 3]}, "init": "gaussian"})
    again = parse_config(config.resolved())
    assert again == config


BAD_CONFIGS = [
    ("unknown top-level key", GOOD_GRID + "max_step: 10\n", "max_step", "max_steps"),
    ("unknown grid key", "grid:\n  eta: 0.1\n  lamda0: 1.0\n", "grid.lamda0", "lambda0"),
    ("wrong type", GOOD_GRID + "trajectories: many\n", "trajectories", "many"),
    ("float trajectories", GOOD_GRID + "trajectories: 2.5\n", "trajectories", "2.5"),
    ("negative eta", "grid:\n  eta: -0.1\n  lambda0: 1.0\n", "grid.eta", "-0.1"),
    ("zero eta in list", "grid:\n  eta: [0.1, 0]\n  lambda0: 1.0\n", "grid.eta", "0"),
    ("zero lambda0", "grid:\n  eta: 0.1\n  lambda0: 0\n", "grid.lambda0", "0"),
    ("zero d", GOOD_GRID + "  d: 0\n", "grid.d", "0"),
    ("fractional d", GOOD_GRID + "  d: [2.5]\n", "grid.d", "2.5"),
    ("negative phi", GOOD_GRID + "  phi: -1\n", "grid.phi", "-1"),
    ("zero num", "grid:\n  eta: {linspace: [0.1, 1, 0]}\n  lambda0: 1.0\n", "num", "0"),
    ("zero trajectories", GOOD_GRID + "trajectories: 0\n", "trajectories", "0"),
    ("zero max_steps", GOOD_GRID + "max_steps: 0\n", "max_steps", "0"),
    ("negative max_steps", GOOD_GRID + "max_steps: -5\n", "max_steps", "must be > 0, got -5"),
    ("non-finite eta", "grid:\n  eta: .inf\n  lambda0: 1.0\n", "grid.eta", "inf"),
    ("nan lambda0", "grid:\n  eta: 0.1\n  lambda0: [1.0, .nan]\n", "grid.lambda0[1]", "nan"),
    ("geomspace endpoint <= 0", "grid:\n  eta: {geomspace: [0, 1, 5]}\n  lambda0: 1.0\n", "grid.eta.geomspace", "0"),
    ("negative geomspace stop", "grid:\n  eta: 0.1\n  lambda0: {geomspace: [1, -1, 5]}\n", "geomspace", "-1"),
    ("empty axis", "grid:\n  eta: []\n  lambda0: 1.0\n", "grid.eta", "empty"),
    ("both eta and eta_lambda0", "grid:\n  eta: 0.1\n  eta_lambda0: 1\n  lambda0: 1.0\n", "eta_lambda0", "both"),
    ("no eta", "grid:\n  lambda0: 1.0\n", "grid.eta", "missing"),
    ("no grid", "seed: 1\n", "grid", "missing"),
    ("bad axis mapping", "grid:\n  eta: {logspace: [1, 2, 3]}\n  lambda0: 1.0\n", "grid.eta", "logspace"),
    ("short range", "grid:\n  eta: {linspace: [1, 2]}\n  lambda0: 1.0\n", "grid.eta.linspace", "[1, 2]"),
    ("duplicate values", "grid:\n  eta: [0.1, 0.1]\n  lambda0: 1.0\n", "grid.eta", "duplicate"),
    ("bad init", GOOD_GRID + "init: spherical\n", "init", "sphere"),
    (
        "explicit length mismatch",
        "grid:\n  eta: 0.1\ninit: {explicit: {a: [1, 2], b: [1]}}\n",
        "init.explicit",
        "length",
    ),
    ("negative loss_tol", GOOD_GRID + "loss_tol: -1e-10\n", "loss_tol", "-1e-10"),
    ("negative seed", GOOD_GRID + "seed: -3\n", "seed", "-3"),
    ("boolean eta", "grid:\n  eta: true\n  lambda0: 1.0\n", "grid.eta", "True"),
    ("bad integrator", GOOD_GRID + "integrator: euler\n", "integrator", "euler"),
    # sizes beyond the limits: refused before anything is allocated
    ("huge num", "grid:\n  eta: {linspace: [0.1, 1, 100000000000000000000]}\n  lambda0: 1.0\n", "num", "at most"),
    ("huge trajectories", GOOD_GRID + "trajectories: 1e12\n", "trajectories", "at most 1000000000"),
    ("max_steps past int64", GOOD_GRID + "max_steps: 100000000000000000000000\n", "max_steps", "at most"),
    ("huge d", GOOD_GRID + "  d: {geomspace: [1, 1e9, 3]}\n", "grid.d", "at most 10000000"),
    (
        "too many cells",
        "grid:\n  eta: {linspace: [0.1, 1, 1000]}\n  lambda0: {linspace: [1, 2, 1001]}\n",
        "grid",
        "1000 eta x 1001 lambda0 = 1001000 cells",
    ),
    ("malformed YAML", "grid: [eta: 0.1\n  lambda0: {\n", "", "malformed YAML"),
    ("not a mapping", "- 1\n- 2\n", "", "mapping"),
]


@pytest.mark.parametrize(("label", "text", "key", "detail"), BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_raises_naming_key_and_value(tmp_path: Path, label: str, text: str, key: str, detail: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert key in message.split(": ", 1)[0], message
    assert detail in message, message


@pytest.mark.parametrize(("label", "text", "key", "detail"), BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_on_the_command_line(tmp_path: Path, cli, label: str, text: str, key: str, detail: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    result = cli("sweep", path, "-o", out)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and detail in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_missing_config_file(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("sweep", tmp_path / "nope.yaml", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: config file not found: {tmp_path / 'nope.yaml'}"
    assert not (tmp_path / "out").exists()


def test_unknown_key_suggestion_is_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'trajectories'"):
        parse_config({"grid": {"eta": 0.1, "lambda0": 1}, "trajectorys": 10})


def test_explicit_init_rejects_lambda0_axis() -> None:
    with pytest.raises(ConfigError, match=r"^grid.lambda0"):
        parse_config({"grid": {"eta": 0.1, "lambda0": 1.0}, "init": {"explicit": {"a": [1.0], "b": [1.0]}}})


def test_geomspace_values_are_exact_endpoints() -> None:
    config = parse_config({"grid": {"eta": {"geomspace": [0.001, 1.0, 31]}, "lambda0": 1.0}})
    assert config.axes["eta"][0] == 0.001 and config.axes["eta"][-1] == 1.0
    assert np.all(np.diff(np.log(config.axes["eta"])) > 0)


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """``levels`` anchors, each a list of ``width`` aliases of the previous: width**levels leaves in a few lines."""
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


BOMB_TARGETS = {
    "name": "name: *a8\ngrid: {eta: 0.1, lambda0: 1.0}\n",
    "grid.eta": "grid: {eta: *a8, lambda0: 1.0}\n",
    "trajectories": "trajectories: *a8\ngrid: {eta: 0.1, lambda0: 1.0}\n",
    "init.explicit.a": "grid: {eta: 0.1}\ninit: {explicit: {a: *a8, b: [1]}}\n",
}


@pytest.mark.parametrize("key", list(BOMB_TARGETS))
def test_alias_bomb_is_refused_while_loading(tmp_path: Path, key: str) -> None:
    """387 420 489 leaves behind 9 lines: refused by counting the expanded nodes, before
    anything is built or rendered (no key is named: the document as a whole is refused)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb() + BOMB_TARGETS[key])
    with pytest.raises(ConfigError, match=r"^YAML aliases expand to more than 1000000 values"):
        load_config(path)


def test_alias_bomb_in_set_and_small_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD_GRID)
    bomb = "{" + _alias_bomb().replace("\n", ", ").rstrip(", ") + ", b: *a8}"
    with pytest.raises(ConfigError, match=r"expand to more than"):
        load_config(path, [f"name={bomb}"])
    path.write_text("grid:\n  eta: &e [0.1, 0.2]\n  lambda0: *e\n")
    assert load_config(path).axes["lambda0"] == (0.1, 0.2)


def test_describe_is_bounded_for_huge_values() -> None:
    """A value shared a million times over renders in bounded time and length."""
    from lin2net.validation import describe as _describe

    shared: list[object] = ["x"] * 10
    for _ in range(30):
        shared = [shared] * 10  # 10**31 leaves if rendered in full
    text = _describe(shared)
    assert len(text) < 80 and text.endswith("(list)")
    assert "digits" in _describe(10**5000) and len(_describe(10**5000)) < 80


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("a: &a [*a]\n" + GOOD_GRID, "refers to itself"),
        (GOOD_GRID + "seed: 1\nseed: 2\n", "duplicate key 'seed' at line 5"),
        ("grid:\n  eta: 0.1\n  eta: 0.2\n  lambda0: 1.0\n", "duplicate key 'eta' at line 3"),
        (GOOD_GRID + "seed: " + "9" * 5000 + "\n", "malformed YAML"),
        (GOOD_GRID + "seed: " + "9" * 30 + "\n", "seed: must be at most 9223372036854775807"),
        ('name: "/"\n' + GOOD_GRID, "name: must be a label"),
        ('name: ".."\n' + GOOD_GRID, "name: must be a label"),
        ('name: "a/b"\n' + GOOD_GRID, "name: must be a label"),
        ('name: "a\\0b"\n' + GOOD_GRID, "name: must be a label"),
        ('name: "a\\nb"\n' + GOOD_GRID, "name: must be a label"),
        ("name: " + "x" * 101 + "\n" + GOOD_GRID, "name: must be at most 100 characters"),
        ("grid:\n  eta_lambda0: 1.0e-300\n  lambda0: 1.0e+100\n", "grid.eta_lambda0: eta = 1e-300/1e+100 = 0.0"),
        ("grid:\n  eta_lambda0: 1.0e+100\n  lambda0: 1.0e-100\n", "the derived eta must be > 0 and at most 1e+150"),
        ("grid:\n  eta: 0.1\n  lambda0: 1.0\n  phi: 1.0e+200\n", "grid.phi: must be at most 1e+150"),
        ("grid:\n  eta: 1.0e+151\n  lambda0: 1.0\n", "grid.eta: must be at most 1e+150"),
        ("grid:\n  eta: 0.1\n  lambda0: [1, 1.0e+160]\n", "grid.lambda0: must be at most 1e+150"),
        (
            "grid:\n  eta: 0.1\ninit: {explicit: {a: [1.0e+100], b: [1]}}\n",
            "init.explicit: |a|² + |b|² must be at most",
        ),
        ("x: " + "[" * 3000 + "\n", "nested too deeply"),
    ],
)
def test_more_bad_configs_are_one_line(tmp_path: Path, text: str, detail: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert detail in str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 300


def test_default_name_from_an_odd_file_name_is_a_safe_label(tmp_path: Path) -> None:
    path = tmp_path / ("é" * 120 + ".yaml")
    path.write_text(GOOD_GRID)
    name = load_config(path).name
    assert name == "é" * 100 and len(name.encode()) <= 255
    assert parse_config({"grid": {"eta": 0.1, "lambda0": 1}}, default_name="runs").name == "runs"
