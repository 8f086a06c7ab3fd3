"""Check Theorem 1's bounds on Q(T)/Q(0) against a sweep's trajectories.

For every trajectory that is in Theorem 1's step-size regime
(:func:`lin2net.theory.theorems.thm1_regime`) and converged, two margins in log space,
positive where the bound holds and negative where it fails:

    lower_margin = log Q(T)/Q(0) − (−√η ε0²/Φ),
    upper_margin = −η² Σ_{t<T} ε_t² − log Q(T)/Q(0).

The paper states both bounds strictly; a bound counts as failed only when its
margin is below −:func:`lin2net.theory.theorems.rounding_tolerance` (ties within
rounding count as holding). Q(T) at the convergence time T stands in for
Q(∞); past T the factors |1 − η²ε_t²| differ from 1 by less than η²·2·loss_tol.

Bounds and regime are recomputed from the raw columns (eta, eps0,
lambda_init, phi, sum_eps2, log_q_ratio), so sweeps written before the
theory columns existed can be checked too, and ``q_ratio`` underflow to 0
does not matter.

:func:`check_sweep` reduces every cell at once: a verified shard holds each
cell's ``trajectories`` rows contiguously, in the order its footer lists the
cells, so the per-trajectory arrays reshape to (cells, trajectories) and
every count is one NumPy reduction along the rows. :func:`check_table`, the
same counts for one cell's table, is the reference it is tested against.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lin2net.dynamics import registry
from lin2net.errors import ConfigError, OutputError
from lin2net.store.opened import OpenedOutput, open_output, parallel
from lin2net.theory import theorems

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

CHECK_COLUMNS = [
    "cell_id",
    "eta",
    "lambda0",
    "phi",
    "d",
    "eps0",
    "lambda_init",
    "status",
    "steps",
    "sum_eps2",
    "log_q_ratio",
    "sharpness_T",
]
OUTCOMES = ("converged", "passing", "diverged", "max_steps")
"""Theorem 2 tallies: ``converged`` with η·S(T) < 2 (a stable minimum); ``passing``: the
loss reached loss_tol at T but η·S(T) ≥ 2, so the minimum there is unstable and GD
leaves it again (a passing hit, not a limit); ``diverged``; ``max_steps``."""
BOUNDS = ("lower", "upper")
BOUND_TEXT = {
    "lower": "lower bound exp(−√η ε0²/Φ) < Q(T)/Q(0)",
    "upper": "upper bound Q(T)/Q(0) < exp(−η² Σ ε_t²)",
}


def trajectory_margins(table: pa.Table) -> dict[str, np.ndarray]:
    """Per trajectory: ``in_regime`` and, for each bound, ``<bound>_margin`` and
    ``<bound>_holds`` (margins in log space, positive where the bound holds)."""
    column = {name: table.column(name).to_numpy(zero_copy_only=False) for name in CHECK_COLUMNS[1:]}
    eta, eps0, phi = column["eta"], column["eps0"], column["phi"]
    converged = np.asarray(column["status"]) == "converged"
    in_regime = theorems.thm1_regime(eta, eps0, column["lambda_init"], phi) & converged
    log_q = column["log_q_ratio"].astype(np.float64)
    log_lower = theorems.log_thm1_lower(eta, eps0, phi)
    log_upper = theorems.log_thm1_upper(eta, column["sum_eps2"])
    out: dict[str, np.ndarray] = {"in_regime": in_regime}
    out["regime"] = theorems.regime(eta, eps0, column["lambda_init"], phi)
    stable = eta * column["sharpness_T"].astype(np.float64) < 2.0
    status = np.asarray(column["status"]).astype(str)
    out["outcome"] = np.where(converged & ~stable, "passing", status)
    with np.errstate(invalid="ignore"):  # −inf − (−inf) where Φ = 0 and Q underflowed: NaN, treated as holding
        for name, margin, bound in (("lower", log_q - log_lower, log_lower), ("upper", log_upper - log_q, log_upper)):
            tolerance = theorems.rounding_tolerance(column["steps"], bound)
            out[f"{name}_margin"] = margin
            out[f"{name}_holds"] = ~(margin < -tolerance)
    return out


def check_table(table: pa.Table) -> dict[str, Any]:
    """One row of counts for one cell's table (see :func:`check_sweep`), one
    trajectory's margins at a time through :func:`trajectory_margins`."""
    first = table.slice(0, 1).to_pylist()[0] if table.num_rows else {}
    row: dict[str, Any] = {key: first.get(key) for key in ("cell_id", "eta", "lambda0", "phi", "d")}
    margins = trajectory_margins(table)
    in_regime = margins["in_regime"]
    row["trajectories"] = table.num_rows
    row["in_regime"] = int(in_regime.sum())
    for name in BOUNDS:
        holds = margins[f"{name}_holds"][in_regime]
        values = margins[f"{name}_margin"][in_regime]
        row[f"{name}_holds"] = int(holds.sum())
        row[f"{name}_fails"] = int((~holds).sum())
        finite = values[~np.isnan(values)]
        row[f"{name}_worst_margin"] = float(finite.min()) if finite.size else float("nan")
    # Every trajectory: reached loss_tol at a stable minimum (eta*S(T) < 2) or only passing through.
    row["stable"] = int((margins["outcome"] == "converged").sum())
    row["passing"] = int((margins["outcome"] == "passing").sum())
    for regime in ("linear", "slow"):
        chosen = margins["regime"] == regime
        row[regime] = int(chosen.sum())
        for outcome in OUTCOMES:
            row[f"{regime}_{outcome}"] = int((chosen & (margins["outcome"] == outcome)).sum())
    return row


@dataclass
class CheckReport:
    """Per-cell counts (``cells``) and the totals over the sweep (``overall``)."""

    cells: pd.DataFrame
    totals: dict[str, dict[str, Any]]
    notes: list[str] = dataclass_field(default_factory=list)  # which theorems apply (model families)

    @property
    def overall(self) -> pd.DataFrame:
        """One row per bound: in_regime, holds, fails, cells_failing, worst_margin, worst_* (cell and axes)."""
        import pandas as pd

        return pd.DataFrame([{"bound": bound, **self.totals[bound]} for bound in BOUNDS])

    def failing(self, bound: str) -> pd.DataFrame:
        """Cells where ``bound`` fails for at least one trajectory, worst first."""
        frame = self.cells[self.cells[f"{bound}_fails"] > 0]
        return frame.sort_values(f"{bound}_worst_margin", kind="stable").reset_index(drop=True)

    def sentences(self) -> list[str]:
        """The verdict in plain words, one sentence per bound."""
        lines = []
        for bound in BOUNDS:
            total = self.totals[bound]
            n, fails = int(total["in_regime"]), int(total["fails"])
            if n == 0:
                lines.append(f"Theorem 1 {BOUND_TEXT[bound]}: no converged trajectory is in the theorem's regime.")
            elif fails == 0:
                lines.append(
                    f"Theorem 1 {BOUND_TEXT[bound]}: holds for all {n} converged in-regime trajectories "
                    f"(smallest margin {total['worst_margin'] + 0.0:.3g} in log Q)."
                )
            else:
                lines.append(
                    f"Theorem 1 {BOUND_TEXT[bound]}: FAILS for {fails} of {n} converged in-regime trajectories "
                    f"in {int(total['cells_failing'])} cells; worst: log Q(T)/Q(0) is {-total['worst_margin']:.3g} "
                    f"on the wrong side of the log bound in cell {total['worst_cell']} "
                    f"(eta={total['worst_eta']:.4g}, lambda0={total['worst_lambda0']:.4g}, "
                    f"phi={total['worst_phi']:.4g}, d={total['worst_d']})."
                )
        return lines

    def theorem2(self) -> pd.DataFrame:
        """Outcomes per Theorem 2 regime (``linear``, ``slow``), summed over the sweep."""
        rows = []
        for regime in ("linear", "slow"):
            row: dict[str, Any] = {"regime": regime, "trajectories": int(self.cells[regime].sum())}
            row.update({outcome: int(self.cells[f"{regime}_{outcome}"].sum()) for outcome in OUTCOMES})
            rows.append(row)
        import pandas as pd

        return pd.DataFrame(rows)

    def stability_sentence(self) -> str:
        """How many of the trajectories that reached loss_tol did so at a stable minimum."""
        stable = int(self.cells["stable"].sum()) if "stable" in self.cells else 0
        passing = int(self.cells["passing"].sum()) if "passing" in self.cells else 0
        return (
            f"Of the {stable + passing} trajectories that reached loss <= loss_tol, {stable} converged at a stable "
            f"minimum (eta*S(T) < 2) and {passing} only passed through it (eta*S(T) >= 2)."
        )

    def theorem2_sentences(self) -> list[str]:
        lines = [self.stability_sentence()]
        for row in self.theorem2().to_dict("records"):
            n = row["trajectories"]
            if row["regime"] == "linear":
                verdict = "all converged" if row["converged"] == n else "NOT ALL CONVERGED"
                lines.append(
                    f"Theorem 2, first condition (linear convergence): {row['converged']} of {n} trajectories "
                    f"converged to a stable minimum ({verdict}); {row['passing']} passing, "
                    f"{row['diverged']} diverged, {row['max_steps']} at max_steps."
                )
            else:
                verdict = " — contradicts 'GD converges'" if row["diverged"] else ""
                lines.append(
                    f"Theorem 2, second condition (converges, possibly slowly): of {n} trajectories, "
                    f"{row['converged']} converged to a stable minimum, {row['passing']} only passed through "
                    f"loss <= loss_tol at an unstable point (eta*S(T) >= 2), {row['diverged']} diverged{verdict}, "
                    f"{row['max_steps']} were still running at max_steps."
                )
        return lines

    def export(self) -> pd.DataFrame:
        """Per-cell rows followed by one ``ALL`` row of totals (for csv/markdown)."""
        total: dict[str, Any] = {"cell_id": "ALL", "trajectories": int(self.cells["trajectories"].sum())}
        total["in_regime"] = int(self.cells["in_regime"].sum())
        for bound in BOUNDS:
            row = self.totals[bound]
            total[f"{bound}_holds"] = int(row["holds"])
            total[f"{bound}_fails"] = int(row["fails"])
            total[f"{bound}_worst_margin"] = float(row["worst_margin"])
        for column in self.cells.columns:
            if column.startswith(("linear", "slow")) or column in ("stable", "passing"):
                total[column] = int(self.cells[column].sum())
        import pandas as pd

        frame = pd.concat([self.cells, pd.DataFrame([total])], ignore_index=True)
        # Integer columns stay integers (d, counts): the ALL row leaves some empty, which
        # would otherwise turn them into floats (d written as 1.0).
        for name in self.cells.columns:
            if self.cells[name].dtype.kind in "iu":
                frame[name] = frame[name].astype("Int64")
        return frame


def check_sweep(out: Path | OpenedOutput, *, verify: bool = False) -> CheckReport:
    """Check Theorem 1's bounds on every finished cell of the sweep in ``out``."""
    opened = open_output(out, verify=verify)
    algorithm = opened.algorithm
    if registry.is_family(algorithm):
        return _check_family(opened)
    if not registry.get(algorithm).theorems:
        raise ConfigError(
            "algorithm",
            f"{opened.path} is an {algorithm.upper()} sweep; check tests the seed paper's theorems, which are about "
            f"gradient descent (summarize and plot read {algorithm.upper()} sweeps)",
        )
    if opened.config.keep == "summary":  # no rows: the per-cell counts the sweep kept
        from lin2net.analysis.cell_summary import check_rows

        rows = check_rows(opened.path)
        if not rows:
            raise OutputError(f"{opened.path} holds no finished cells yet")
        return summarize_checks(rows)
    if not opened.shards:
        raise OutputError(f"{opened.path} holds no finished cells yet")
    n = opened.config.trajectories

    def check_unit(unit: list[Any]) -> dict[str, Any]:
        table = opened.trajectories(CHECK_COLUMNS[1:], shards=unit)
        cell_ids = unit[0].cell_ids
        return check_cells(table, cell_ids, [opened.grid[cell_id] for cell_id in cell_ids], n)

    units = check_units(opened)
    parts = parallel(check_unit, units)  # NumPy releases the GIL on these long arrays
    columns = {name: _concatenate([part[name] for part in parts]) for name in parts[0]}
    return summarize_checks(columns)


def theorem_statement(config: Any) -> tuple[str, bool]:
    """Which of the seed paper's theorems apply to a model family's sweep, in words, and
    whether ``check`` runs them: Theorems 1–2 are about the depth-2 scalar-output model
    L = ½(a·b − Φ)², so they apply to ``shallow`` and to its exact reductions only."""
    family = config.family
    if family == "deep":
        has_two = 2 in tuple(config.axes.get("depth", ()))
        text = (
            "model.family deep: Theorems 1–2 apply only to its depth-2 cells (there it is the shallow model, "
            "θ = (a, b)); at depth >= 3 no theorem of the seed paper applies (Kreisler et al.'s monotone "
            "GF-solution sharpness is what `lin2net trace` shows)"
        )
        return text + ("; checking the depth-2 cells" if has_two else "; this sweep has no depth-2 cell"), has_two
    if family == "vector":
        text = (
            "model.family vector: Theorems 1–2 apply only at inputs m = 1 with whitened data, a linear teacher "
            "and no label noise (there L = ½(ab − Φ)² exactly); its rows store ε = √(2L) without the sign the "
            "bounds need, so check does not run them (the reduction is tests/families/test_reductions.py)"
        )
        return text, False
    text = f"model.family {family}"
    if config.user_algorithm == "sgd":
        text += " with algorithm: sgd"
    return text + ": no theorem of the seed paper applies (they are about GD on the depth-2 linear model)", False


def _check_family(opened: OpenedOutput) -> CheckReport:
    """Theorems 1–2 on the cells of a family sweep that are the shallow model (deep at
    depth 2); a ConfigError stating which theorems apply where none can be checked."""
    statement, runs = theorem_statement(opened.config)
    if not runs:
        raise ConfigError("algorithm", f"{opened.path}: {statement}")
    if opened.config.keep == "summary":
        raise ConfigError("keep", f"{opened.path}: {statement}; this needs trajectory rows (keep: rows or both)")
    if not opened.shards:
        raise OutputError(f"{opened.path} holds no finished cells yet")
    import pyarrow as pa

    n = opened.config.trajectories
    keep = {cell_id for cell_id, cell in opened.grid.items() if cell.value("depth") == 2}
    units = check_units(opened)
    parts = []
    for unit in units:
        cell_ids = [cell_id for cell_id in unit[0].cell_ids if cell_id in keep]
        if not cell_ids:
            continue
        table = opened.trajectories(CHECK_COLUMNS, shards=unit)
        ids = table.column("cell_id").cast(pa.string())
        mask = pa.compute.is_in(ids, value_set=pa.array(cell_ids, type=pa.string()))
        kept = table.filter(mask).drop_columns(["cell_id"])
        parts.append(check_cells(kept, cell_ids, [opened.grid[c] for c in cell_ids], n))
    if not parts:
        raise OutputError(f"{opened.path} holds no finished depth-2 cells yet")
    columns = {name: _concatenate([part[name] for part in parts]) for name in parts[0]}
    report = summarize_checks(columns)
    report.notes = [statement]
    return report


def check_units(opened: Any) -> list[list[Any]]:
    """The units ``check`` reads one at a time: a shard file of whole cells, or all
    the parts of one cell, in trajectory order."""
    whole = [[shard] for shard in opened.shards if shard.part is None]
    in_parts: dict[str, list[Any]] = {}
    for shard in opened.shards:
        if shard.part is not None:
            in_parts.setdefault(shard.cell_ids[0], []).append(shard)
    return whole + [sorted(group, key=lambda shard: shard.part) for group in in_parts.values()]


def _concatenate(parts: list[Any]) -> Any:
    return [x for part in parts for x in part] if isinstance(parts[0], list) else np.concatenate(parts)


def _floats(table: pa.Table, name: str) -> np.ndarray:
    import pyarrow as pa

    column = table.column(name)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return np.asarray(column.to_numpy(), dtype=np.float64)


def _codes(table: pa.Table, name: str, values: Sequence[str]) -> np.ndarray:
    """Per row, the index of the string column ``name``'s value in ``values``
    (``len(values)`` for any other), read off each chunk's dictionary."""
    import pyarrow as pa

    parts = []
    for chunk in table.column(name).chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        lookup = {value: code for code, value in enumerate(values)}
        codes = np.array([lookup.get(v, len(values)) for v in chunk.dictionary.to_pylist()], dtype=np.int8)
        parts.append(codes[np.asarray(chunk.indices.to_numpy(zero_copy_only=False), dtype=np.int64)])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)


def check_cells(table: pa.Table, cell_ids: Sequence[str], cells: Sequence[Any], trajectories: int) -> dict[str, Any]:
    """:func:`check_table`'s counts for every cell at once, as columns.

    ``table`` holds the cells' rows contiguously, ``trajectories`` each, in the
    order of ``cell_ids`` (``cells``: their :class:`~lin2net.sweep.grid.Cell`,
    which give the axes)."""
    n = trajectories
    if table.num_rows != len(cell_ids) * n:
        raise OutputError(f"{table.num_rows} rows are not {len(cell_ids)} cells of {n} trajectories")
    eta, eps0, phi = _floats(table, "eta"), _floats(table, "eps0"), _floats(table, "phi")
    lam0, steps = _floats(table, "lambda_init"), _floats(table, "steps")
    log_q, sum_eps2 = _floats(table, "log_q_ratio"), _floats(table, "sum_eps2")
    status = _codes(table, "status", ("converged", "diverged", "max_steps"))
    converged = status == 0
    linear = theorems.thm1_regime(eta, eps0, lam0, phi)
    slow = theorems.slow_regime(eta, eps0, lam0, phi) & ~linear  # theorems.regime: linear first
    in_regime = linear & converged
    stable = eta * _floats(table, "sharpness_T") < 2.0
    outcomes = {
        "converged": converged & stable,
        "passing": converged & ~stable,
        "diverged": status == 1,
        "max_steps": status == 2,
    }

    def per_cell(mask: np.ndarray) -> np.ndarray:
        return np.asarray(mask.reshape(-1, n).sum(axis=1), dtype=np.int64) if n else np.zeros(len(cell_ids), int)

    columns: dict[str, Any] = {
        "cell_id": list(cell_ids),
        "eta": np.array([c.eta for c in cells], dtype=np.float64),
        "lambda0": np.array([c.lambda0 for c in cells], dtype=np.float64),
        "phi": np.array([c.phi for c in cells], dtype=np.float64),
        "d": np.array([c.d for c in cells], dtype=np.int64),
        "trajectories": np.full(len(cell_ids), n, dtype=np.int64),
        "in_regime": per_cell(in_regime),
    }
    log_lower = theorems.log_thm1_lower(eta, eps0, phi)
    log_upper = theorems.log_thm1_upper(eta, sum_eps2)
    with np.errstate(invalid="ignore"):  # −inf − (−inf) where Φ = 0 and Q underflowed: NaN, treated as holding
        for name, margin, bound in (("lower", log_q - log_lower, log_lower), ("upper", log_upper - log_q, log_upper)):
            holds = ~(margin < -theorems.rounding_tolerance(steps, bound))
            columns[f"{name}_holds"] = per_cell(in_regime & holds)
            columns[f"{name}_fails"] = per_cell(in_regime & ~holds)
            counted = in_regime & ~np.isnan(margin)
            worst = np.where(counted, margin, np.inf).reshape(-1, n).min(axis=1) if n else np.zeros(0)
            columns[f"{name}_worst_margin"] = np.where(per_cell(counted) > 0, worst, np.nan)
    # Every trajectory: reached loss_tol at a stable minimum (eta*S(T) < 2) or only passing through.
    columns["stable"] = per_cell(outcomes["converged"])
    columns["passing"] = per_cell(outcomes["passing"])
    for regime, chosen in (("linear", linear), ("slow", slow)):
        columns[regime] = per_cell(chosen)
        for outcome in OUTCOMES:
            columns[f"{regime}_{outcome}"] = per_cell(chosen & outcomes[outcome])
    return columns


def cell_tables(table: pa.Table) -> list[pa.Table]:
    """``table`` split into its cells (a shard stores each cell's rows
    contiguously), with dictionary columns decoded to plain strings."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(index, field.name, table.column(index).cast(pa.string()))
    ids = np.asarray(table.column("cell_id").to_numpy(zero_copy_only=False))
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.array([], dtype=np.int64)
    stops = np.r_[starts[1:], len(ids)]
    return [table.slice(int(a), int(b - a)) for a, b in zip(starts, stops, strict=True)]


def summarize_checks(rows: Iterable[dict[str, Any]] | dict[str, Any]) -> CheckReport:
    """Totals over per-cell rows of :func:`check_table`, or the columns of
    :func:`check_cells` (at least one cell)."""
    import pandas as pd

    cells = pd.DataFrame(rows if isinstance(rows, dict) else list(rows))
    cells = cells.sort_values([c for c in ("eta", "lambda0", "phi", "d") if c in cells], kind="stable")
    cells = cells.reset_index(drop=True)
    totals: dict[str, dict[str, Any]] = {}
    for bound in BOUNDS:
        fails = cells.get(f"{bound}_fails", pd.Series(dtype=np.int64))
        margins = cells.get(f"{bound}_worst_margin", pd.Series(dtype=np.float64))
        row: dict[str, Any] = {
            "in_regime": int(cells["in_regime"].sum()) if len(cells) else 0,
            "holds": int(cells.get(f"{bound}_holds", pd.Series(dtype=np.int64)).sum()),
            "fails": int(fails.sum()),
            "cells_failing": int((fails > 0).sum()),
            "worst_margin": float(margins.min()) if margins.notna().any() else float("nan"),
        }
        worst = cells.iloc[int(np.nanargmin(margins.to_numpy(dtype=np.float64)))] if margins.notna().any() else None
        for key in ("cell", "eta", "lambda0", "phi", "d"):
            source = "cell_id" if key == "cell" else key
            row[f"worst_{key}"] = None if worst is None else worst[source]
        totals[bound] = row
    return CheckReport(cells=cells, totals=totals)
