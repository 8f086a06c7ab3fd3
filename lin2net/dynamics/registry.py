"""The registry of dynamics: what each one declares, and everything derived from it.

Each dynamics (``algorithm:`` in a config) declares, in one :class:`Entry`:

* its grid axes beyond the common ones (name, label, dtype, limits) and the
  top-level config keys only it reads;
* its row-schema fragment (columns after the common ones) and the values
  ``summarize`` gives the median of;
* whether the seed paper's theorems (``check``) apply to it;
* its ``simulate`` (cells in, initial conditions and results out, for a sweep)
  and ``trace`` (one trajectory, every step) entry points, as
  ``"module:function"`` names imported only when used (they import numba).

Derived from it: the config's grid keys and algorithms
(:data:`lin2net.sweep.config.GRID_KEYS`), the summary and plot axes and their
labels, the CLI's choices and the per-dynamics row schema
(:func:`lin2net.dynamics.cells.trajectory_schema`). A new dynamics is one folder
(reference, kernel, cell) plus one :func:`register` call.

This module imports neither numba nor the config (the config imports it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Axis:
    """A grid axis: its config key (``grid.<name>``), its label in tables and
    figures, its type, and its limits (``minimum``, included where ``allow_zero``
    says 0 is allowed)."""

    name: str
    label: str
    dtype: type = float
    minimum: float = 0.0
    allow_zero: bool = False
    default: Any = None  # the value when the config leaves the axis out (None: required)


COMMON_AXES = (
    Axis("eta", "η"),
    Axis("eta_lambda0", "η·λ0"),
    Axis("lambda0", "λ0"),
    Axis("phi", "Φ", allow_zero=True, default=1.0),
    Axis("d", "d", dtype=int, minimum=1, default=10),
)
"""Every dynamics' axes: the stepsize (η or η·λ0), the initial scale, the target, the width."""


@dataclass(frozen=True)
class Entry:
    """One dynamics (see module doc)."""

    name: str
    description: str
    simulate: str  # "module:function": (config, cells, threads, cancel, part=None) -> (InitialConditions, results)
    trace: str  # "module:function": (config, cell, trajectory, rule) -> lin2net.analysis.trace.Trace
    axes: tuple[Axis, ...] = ()
    config_keys: tuple[str, ...] = ()
    # (name, Arrow type alias such as "float64"), after the common columns and the axes; an alias,
    # not a pyarrow type, so that reading the registry (every command does) does not import pyarrow
    result_columns: tuple[tuple[str, str], ...] = ()
    summary_values: tuple[str, ...] = ()
    theorems: bool = False
    extras: dict[str, Any] = field(default_factory=dict)

    def function(self, which: str) -> Callable[..., Any]:
        """The entry point ``simulate`` or ``trace``, imported now."""
        module, name = getattr(self, which).split(":")
        function: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return function

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(axis.name for axis in self.axes)


_ENTRIES: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    """Add (or replace) a dynamics; its name becomes a value of ``algorithm:``."""
    _ENTRIES[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove a dynamics (tests that register a toy one clean up with this)."""
    _ENTRIES.pop(name, None)


def get(name: str) -> Entry:
    """The dynamics registered as ``name`` (KeyError if none)."""
    return _ENTRIES[name]


def names() -> tuple[str, ...]:
    """The registered dynamics, GD first."""
    return tuple(_ENTRIES)


def entries() -> tuple[Entry, ...]:
    return tuple(_ENTRIES.values())


def extra_axes() -> tuple[Axis, ...]:
    """The axes some dynamics adds, each once, in registration order."""
    seen: dict[str, Axis] = {}
    for entry in _ENTRIES.values():
        for axis in entry.axes:
            seen.setdefault(axis.name, axis)
    return tuple(seen.values())


def grid_keys() -> tuple[str, ...]:
    """Every grid axis any dynamics reads: the common ones, then the extras."""
    return (*(axis.name for axis in COMMON_AXES), *(axis.name for axis in extra_axes()))


def axis(name: str) -> Axis:
    """The axis ``name``, common or a dynamics' own (KeyError if none has it)."""
    for candidate in (*COMMON_AXES, *extra_axes()):
        if candidate.name == name:
            return candidate
    raise KeyError(name)


TABLE_ORDER = ("eta", "lambda0", "phi", "d", "eta_lambda0")
"""The common axes in the order tables and plots list them."""


def table_axes() -> tuple[str, ...]:
    """Every axis in the order tables and plots list them: the common ones, then each dynamics' own."""
    return (*TABLE_ORDER, *(axis.name for axis in extra_axes()))


def axis_labels() -> dict[str, str]:
    """Axis name → label for tables and figures (``init`` included)."""
    labels = {axis.name: axis.label for axis in COMMON_AXES}
    labels["init"] = "init"
    labels.update({axis.name: axis.label for axis in extra_axes()})
    return labels


def owner_of(key: str) -> str | None:
    """The dynamics that alone reads top-level config key or grid axis ``key``, if any."""
    for entry in _ENTRIES.values():
        if key in entry.config_keys or key in entry.axis_names:
            return entry.name
    return None


WINDOW_COLUMNS = ("q_ratio_window", "log_q_ratio_window", "sharpness_window", "loss_window", "lambda_window")

register(
    Entry(
        name="gd",
        description="full-batch gradient descent (the seed paper's dynamics)",
        simulate="lin2net.dynamics.gd.cell:simulate_gd_cells",
        trace="lin2net.dynamics.gd.cell:trace_gd",
        theorems=True,
    )
)
register(
    Entry(
        name="sgd",
        description="mini-batch and label-noise SGD on a scalar data set (docs/sgd.md)",
        simulate="lin2net.dynamics.sgd.cell:simulate_sgd_cells",
        trace="lin2net.dynamics.sgd.cell:trace_sgd_cell",
        axes=(
            Axis("batch_size", "B", dtype=int, minimum=1),
            Axis("label_noise", "σ", allow_zero=True, default=0.0),
        ),
        config_keys=("data", "sampling", "window"),
        result_columns=(
            ("loss_T", "float64"),
            *((name, "float64") for name in WINDOW_COLUMNS),
        ),
        summary_values=("loss_T", "q_ratio_window", "loss_window", "sharpness_window", "lambda_window"),
    )
)


# Model families (docs/models.md): one entry per (family, algorithm), all run by the generic
# parameter-vector dynamics; ``extras`` names the family and the ``algorithm:`` value.
FAMILY_SIMULATE = "lin2net.dynamics.family_cells:simulate_family_cells"
FAMILY_TRACE = "lin2net.dynamics.family_cells:trace_family"
DEPTH = Axis("depth", "N", dtype=int, minimum=2)
INPUTS = Axis("inputs", "m", dtype=int, minimum=1)
BATCH_SIZE = Axis("batch_size", "B", dtype=int, minimum=1)
FAMILY_RESULTS = (("loss_T", "float64"),)
FAMILY_SUMMARY = ("loss_T",)
for _name, _family, _algorithm, _axes, _keys, _description in (
    ("deep", "deep", "gd", (DEPTH,), (), "GD on the depth-N scalar linear network f = W_N ⋯ W_1"),
    ("vector", "vector", "gd", (INPUTS,), ("data",), "GD on f(x) = bᵀAx over a vector data set"),
    ("vector-sgd", "vector", "sgd", (INPUTS, BATCH_SIZE), ("data",), "mini-batch SGD on f(x) = bᵀAx"),
    ("relu", "relu", "gd", (INPUTS,), ("data",), "GD on f(x) = Σ_j b_j relu(a_jᵀx) over a vector data set"),
    ("relu-sgd", "relu", "sgd", (INPUTS, BATCH_SIZE), ("data",), "mini-batch SGD on the ReLU network"),
):
    register(
        Entry(
            name=_name,
            description=_description,
            simulate=FAMILY_SIMULATE,
            trace=FAMILY_TRACE,
            axes=_axes,
            config_keys=_keys,
            result_columns=FAMILY_RESULTS,
            summary_values=FAMILY_SUMMARY,
            theorems=False,  # Theorems 1–2 are the depth-2 scalar model's (lin2net check says which apply)
            extras={"family": _family, "algorithm": _algorithm},
        )
    )


def is_family(name: str) -> bool:
    """Whether registry entry ``name`` is a model family's (not the shallow model's)."""
    return name in _ENTRIES and "family" in _ENTRIES[name].extras
