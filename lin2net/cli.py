"""Command-line interface: parses options, calls the library, reports errors.

Library errors (:class:`~lin2net.errors.Lin2netError`) become one line on
stderr and their exit code (2 for bad input); nothing else is caught here.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from lin2net import __version__
from lin2net.config import load_config
from lin2net.errors import ConfigError, Lin2netError
from lin2net.grid import Cell
from lin2net.store import MANIFEST_FILE, atomic_write
from lin2net.sweep import SweepPlan, completeness, plan_sweep, run_sweep

if TYPE_CHECKING:  # pandas is imported by the commands that need it: sweep starts faster
    import pandas as pd

app = typer.Typer(
    name="lin2net",
    help="Sweep gradient descent on L(a, b) = 1/2 (a·b − Φ)² over grids of η, λ(0), Φ and d.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stdout = Console()
stderr = Console(stderr=True)
T = TypeVar("T")


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; return the Exit to raise.
    Control characters from user input (a YAML key with a newline) are escaped."""
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    stderr.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except Lin2netError as exc:
        raise fail(str(exc), exc.exit_code) from None


def version_callback(value: bool) -> None:
    if value:
        stdout.print(f"lin2net {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """lin2net: exact, batched gradient-descent sweeps on depth-2 linear networks."""


@app.command()
def sweep(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML sweep config (see README).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory \\[default: runs/<config name>].")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace results in OUT (default: resume a run of the same config).")
    ] = False,
    extend: Annotated[
        bool,
        typer.Option("--extend", help="OUT holds a smaller grid of this config: run only the cells it lacks."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; one log line at the end.")] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-j", help="Local worker cores; 1 runs in this process \\[default: all cores]."),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", metavar="ADDRESS", help="Run cells on this Dask scheduler (tcp://host:8786)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the axes, cells, cells already done and output size; write nothing.")
    ] = False,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="Override a config key (repeatable; VALUE is YAML)."),
    ] = None,
    shard_size: Annotated[
        int | None,
        typer.Option(
            "--shard-size",
            metavar="ROWS",
            help="Trajectories per shard file (whole cells) \\[default: 262144; 8192 for the NumPy integrators].",
        ),
    ] = None,
) -> None:
    """Run every cell of a grid not yet done in OUT; one Parquet file per cell.

    Example: lin2net sweep configs/smoke.yaml -o runs/smoke --set max_steps=5000 --workers 2
    """
    with user_errors():
        config = load_config(config_path, sets or ())
        out_dir = out if out is not None else Path("runs") / config.name
        if workers is not None and workers < 1:
            raise ConfigError("--workers", f"must be >= 1, got {workers}")
        if shard_size is not None and not 1 <= shard_size <= 1 << 24:
            raise ConfigError("--shard-size", f"must be between 1 and {1 << 24}, got {shard_size}")
        if extend and overwrite:
            raise ConfigError("--extend", "give --extend (keep OUT's cells) or --overwrite (replace them), not both")
        if workers is not None and scheduler is not None:
            raise ConfigError("--workers", "give --workers (local) or --scheduler (Dask), not both")
        if dry_run:
            _print_plan(plan_sweep(config, out_dir, overwrite=overwrite, extend=extend, shard_rows=shard_size))
            return
        with _cell_progress(enabled=not quiet and stderr.is_terminal) as progress:
            try:
                report = run_sweep(
                    config,
                    out_dir,
                    overwrite=overwrite,
                    extend=extend,
                    on_start=progress.start,
                    on_cell_done=progress.advance,
                    on_note=_note,
                    workers=workers,
                    scheduler=scheduler,
                    overrides=sets or (),
                    shard_rows=shard_size,
                )
            except KeyboardInterrupt as interrupt:
                code = 128 + getattr(interrupt, "signum", 2)  # 130 for Ctrl-C, 143 for SIGTERM
                message = f"interrupted; finished cells are kept in {out_dir}, rerun the same command to resume"
                raise fail(message, code) from None
    stderr.print(
        f"{report.cells} cells, {report.trajectories} trajectories in {report.seconds:.2f} s -> {out_dir}: "
        f"ran {report.ran}, skipped {report.skipped} already done, failed {len(report.failures)}",
        highlight=False,
        soft_wrap=True,
    )
    if report.failures:
        names = "; ".join(f"{f.describe()}: {_clip(f.error, 160)}" for f in report.failures[:3])
        more = f"; and {len(report.failures) - 3} more" if len(report.failures) > 3 else ""
        raise fail(
            f"{len(report.failures)} of {report.ran} cells failed: {names}{more} "
            f"(all in {out_dir / MANIFEST_FILE}; rerun the same command to retry them)",
            1,
        )


def _note(line: str) -> None:
    stderr.print(f"note: {line}", markup=False, highlight=False, soft_wrap=True)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _print_plan(plan: SweepPlan) -> None:
    config = plan.config
    state = {
        "new": "new output directory",
        "resume": f"resuming: {plan.done} of {plan.cells} cells already done",
        "extend": f"extending: {plan.done} of {plan.cells} cells already done",
        "overwrite": "--overwrite: results already there would be replaced",
    }[plan.out_state]
    lines = [f"dry run of {config.name} -> {plan.out} ({state}); nothing written", "axes:"]
    for key, values in config.axes.items():
        shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
        if len(values) > 6:
            shown = f"{len(values)} values from {values[0]:g} to {values[-1]:g}"
        lines.append(f"  {key:<12} {shown}")
    if config.explicit is not None:
        lines.append(f"  {'init':<12} explicit: d = {config.explicit.d}, lambda0 = {config.explicit.lambda0:g}")
    lines.append(f"cells: {plan.cells} x {config.trajectories} trajectories = {plan.trajectories} trajectories")
    if plan.bad_files:
        lines.append(f"shard files failing verification: {plan.bad_files} (moved aside and recomputed by the sweep)")
    if plan.done == plan.cells:
        lines.append("nothing to run: every cell is done")
    else:
        lines += [
            f"to run: {plan.cells - plan.done} cells in {plan.shards} shard file{'s' if plan.shards != 1 else ''}",
            f"estimated output size: {_human_bytes(plan.estimated_bytes)}",
        ]
    stdout.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def _human_bytes(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


class _Progress:
    """Progress-bar callbacks for :func:`run_sweep` (no-ops when disabled)."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.task = progress.add_task("sweep", total=None) if progress is not None else None

    def start(self, cells: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, total=cells)

    def advance(self, cell: Cell, seconds: float) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task)


@contextmanager
def _cell_progress(enabled: bool) -> Iterator[_Progress]:
    if not enabled:
        yield _Progress(None)
        return
    progress = Progress(
        TextColumn("cells"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    )
    with progress:
        yield _Progress(progress)


class SummaryFormat(StrEnum):
    table = "table"
    csv = "csv"
    markdown = "markdown"
    parquet = "parquet"


SUFFIX_FORMATS = {".csv": SummaryFormat.csv, ".md": SummaryFormat.markdown, ".parquet": SummaryFormat.parquet}


@app.command()
def summarize(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output directory of a sweep.")],
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Group by these axes, pooling the others (repeat or comma-separate)."),
    ] = None,
    fmt: Annotated[
        SummaryFormat | None,
        typer.Option("--format", "-f", help="table, csv, markdown or parquet \\[default: from -o suffix, else table]."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to FILE instead of the terminal.")
    ] = None,
) -> None:
    """Per-cell statistics of a sweep: fractions converged, medians and IQRs.

    Example: lin2net summarize runs/smoke --by eta --format csv -o eta.csv
    """
    axes = [axis.strip() for item in by or [] for axis in item.split(",") if axis.strip()]
    chosen = fmt or (SUFFIX_FORMATS.get(output.suffix, SummaryFormat.csv) if output else SummaryFormat.table)
    with user_errors():
        if chosen is SummaryFormat.parquet and output is None:
            raise ConfigError("--format", "parquet output needs a file: add -o FILE.parquet")
        from lin2net.summary import summarize as summarize_sweep

        frame = summarize_sweep(out, by=axes or None)
    _note_missing_cells(out)
    if chosen is SummaryFormat.table:
        if output is not None:
            raise fail("--format table prints to the terminal; use csv, markdown or parquet with -o", 2)
        title = f"lin2net summary of {out}"
        _print_table(_rich_table(frame, title=title, labels=TERMINAL_COLUMNS, caption=TABLE_CAPTION))
        return
    _export(frame, chosen, output)


def _note_missing_cells(out: Path) -> None:
    """One line on stderr when OUT's grid has cells without a file."""
    try:
        state = completeness(out)
    except Lin2netError:
        return  # no readable resolved config: nothing to compare with
    if state.missing:
        failed = f", {len(state.failed)} of them failed (see {out / MANIFEST_FILE})" if state.failed else ""
        stderr.print(
            f"note: {len(state.missing)} of {len(state.expected)} cells are missing from {out}{failed}; "
            f"the summary covers the {len(state.expected) - len(state.missing)} finished",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _export(frame: pd.DataFrame, fmt: str, output: Path | None) -> None:
    """``frame`` as csv or markdown on stdout, or as csv, markdown or parquet
    written atomically to ``output``."""
    if fmt == "parquet" and output is not None:
        with user_errors():
            atomic_write(output, lambda temp: frame.to_parquet(temp, index=False))
        return
    text = frame.to_csv(index=False) if fmt == "csv" else to_markdown(frame)
    if output is None:
        sys.stdout.write(text)
        return
    with user_errors():
        atomic_write(output, lambda temp: temp.write_text(text, encoding="utf-8"))


TERMINAL_COLUMNS = {
    "eta": "η",
    "lambda0": "λ0",
    "phi": "Φ",
    "d": "d",
    "init": "init",
    "trajectories": "n",
    "frac_converged": "conv",
    "frac_diverged": "div",
    "frac_max_steps": "max",
    "steps_median": "steps",
    "q_ratio_median": "Q(T)/Q0",
    "sharpness_T_median": "S(T)",
    "lambda_gf_median": "λ_GF",
}
TABLE_CAPTION = "medians; Q(T)/Q0 and S(T) over converged trajectories; IQRs in --format csv"
AXIS_COLUMNS = ("eta", "eta_lambda0", "lambda0", "phi", "d", "init")


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (numbers to 6 significant digits)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


def _rich_table(
    frame: pd.DataFrame, title: str, labels: Mapping[str, str] | None = None, caption: str | None = None
) -> Table:
    """A terminal table of ``frame``. With ``labels`` (column → header), a compact
    view: only those columns, and of the axes only those that vary. Exports
    (csv, markdown, parquet) carry every column."""
    if labels is None:
        shown = list(frame.columns)
        labels = {c: str(c) for c in shown}
    else:
        shown = [c for c in labels if c in frame.columns and (c not in AXIS_COLUMNS or frame[c].nunique() > 1)]
    table = Table(title=title, header_style="bold", caption=caption)
    for column in shown:
        numeric = frame[column].dtype.kind in "biuf"
        table.add_column(labels[column], justify="right" if numeric else "left", overflow="fold")
    for row in frame[shown].itertuples(index=False):
        table.add_row(*(_format_value(v) for v in row))
    return table


def _print_table(table: Table) -> None:
    """On a terminal, fit its width; piped or redirected, print the table at its
    natural width, so no number is split across lines."""
    if stdout.is_terminal:
        stdout.print(table)
        return
    natural = Measurement.get(stdout, stdout.options.update(max_width=100_000), table).maximum
    Console(file=stdout.file, width=max(natural, stdout.width)).print(table)


class CheckFormat(StrEnum):
    table = "table"
    csv = "csv"
    markdown = "markdown"


@app.command()
def check(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output directory of a sweep.")],
    fmt: Annotated[
        CheckFormat | None,
        typer.Option("--format", "-f", help="table (terminal), csv or markdown [default: from -o, else table]."),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the per-cell table to FILE.")] = None,
) -> None:
    """Check Theorem 1's bounds on Q(T)/Q(0) for every converged in-regime trajectory.

    Reports, per cell and overall, how many trajectories satisfy each bound and
    where a bound fails, with the worst margin in log Q; and what became of the
    trajectories in Theorem 2's two step-size regimes. Exits 0: it is a report.

    Example: lin2net check runs/smoke --format markdown -o check.md
    """
    from lin2net.check import check_sweep

    chosen = fmt or (CheckFormat.markdown if output is not None and output.suffix == ".md" else None)
    chosen = chosen or (CheckFormat.csv if output is not None else CheckFormat.table)
    if chosen is CheckFormat.table and output is not None:
        raise fail("--format table prints to the terminal; use csv or markdown with -o", 2)
    with user_errors():
        report = check_sweep(out)
    if chosen is CheckFormat.table:
        shown_columns = ["bound", "in_regime", "holds", "fails", "cells_failing", "worst_margin", "worst_cell"]
        overall = report.overall[shown_columns]
        _print_table(_rich_table(overall, title=f"Theorem 1 bounds on Q(T)/Q(0) in {out}"))
        for bound in ("lower", "upper"):
            failing = report.failing(bound)
            if len(failing):
                shown = failing.head(20)[
                    ["cell_id", "eta", "lambda0", "phi", "d", "in_regime", f"{bound}_fails", f"{bound}_worst_margin"]
                ]
                more = f" (worst 20 of {len(failing)})" if len(failing) > 20 else ""
                _print_table(_rich_table(shown, title=f"cells where the {bound} bound fails{more}"))
        _print_table(_rich_table(report.theorem2(), title="Theorem 2 regimes: outcomes"))
        for line in [*report.sentences(), *report.theorem2_sentences()]:
            stdout.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    _export(report.export(), chosen, output)
    for line in [*report.sentences(), *report.theorem2_sentences()]:
        stderr.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def plot(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output directory of a sweep.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Figure file, .png/.svg/.pdf [default: OUT/figure3.png, or OUT/<stat>_<value>.png]."
        ),
    ] = None,
    x: Annotated[
        str | None, typer.Option("--x", help="Horizontal axis [default: eta, or eta_lambda0 if swept].")
    ] = None,
    y: Annotated[str | None, typer.Option("--y", help="Vertical axis [default: lambda0].")] = None,
    value: Annotated[
        str | None,
        typer.Option("--value", help="Numeric column to map [default: two panels, q_ratio and steps, as Figure 3]."),
    ] = None,
    stat: Annotated[
        str,
        typer.Option("--stat", help="median, mean, min, max, q25, q75, frac_converged, frac_diverged, frac_max_steps."),
    ] = "median",
) -> None:
    """Heatmaps of a sweep over two axes, one row per value of the other axes (the paper's Figure 3).

    By default: median Q(T)/Q(0) and median convergence time over eta and lambda0,
    with the reference curves eta*lambda0 = 2, eta = 2/sqrt(lambda0^2 + 4 Phi^2), eta = 1/Phi.
    Hatched grey: fewer than half the trajectories converged.

    Example: lin2net plot runs/figure3 -o figure3.png
    """
    from lin2net.plotting import plot_sweep

    path = output if output is not None else out / ("figure3.png" if value is None else f"{stat}_{value}.png")
    with user_errors():
        plot_sweep(out, path, x=x, y=y, value=value, stat=stat)
    stderr.print(f"wrote {path}", highlight=False)


def _floats(option: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(option, f"must be comma-separated numbers, got {text!r}") from None


@app.command()
def trace(
    eta: Annotated[float, typer.Option("--eta", help="Stepsize.")],
    lambda0: Annotated[float | None, typer.Option("--lambda0", help="Initial scale (random init).")] = None,
    phi: Annotated[float, typer.Option("--phi", help="Target.")] = 1.0,
    d: Annotated[int | None, typer.Option("--d", help="Width (random init) [default: 10].")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Root seed, as in a sweep config.")] = 0,
    init: Annotated[str | None, typer.Option("--init", help="sphere or gaussian [default: sphere].")] = None,
    trajectory: Annotated[int, typer.Option("--trajectory", help="Index of the initialization in the cell.")] = 0,
    a: Annotated[str | None, typer.Option("--a", help="Explicit a, comma-separated, e.g. 1,2.")] = None,
    b: Annotated[str | None, typer.Option("--b", help="Explicit b, comma-separated, e.g. 0.5,0.1.")] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Step budget.")] = 100_000,
    loss_tol: Annotated[float, typer.Option("--loss-tol", help="Converged once eps^2/2 <= this.")] = 1e-10,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Per-step table, .parquet or .csv.")] = None,
    plot_path: Annotated[Path | None, typer.Option("--plot", help="Figure, .png/.svg/.pdf.")] = None,
) -> None:
    """Run one initialization step by step; write the per-step table and a figure.

    The random initialization is trajectory --trajectory of the sweep cell
    (eta, lambda0, phi, d) with root seed --seed, so it reproduces that sweep row.
    The figure overlays the gradient flow from the same start (GF time eta*t).

    Example: lin2net trace --eta 0.5 --lambda0 3 --d 10 -o trace.csv --plot trace.png
    """
    from lin2net.integrator import StopRule
    from lin2net.plotting import check_figure_path, plot_trace
    from lin2net.theory import regime
    from lin2net.trace import (
        TABLE_SUFFIXES,
        TRACE_MAX_STEPS,
        start_from_vectors,
        sweep_initialization,
        trace_trajectory,
        write_trace_table,
    )

    with user_errors():
        if output is not None and output.suffix.lower() not in TABLE_SUFFIXES:
            raise ConfigError("--output", f"unknown table format {output.suffix or '(none)'!r}; use .parquet or .csv")
        if plot_path is not None:
            check_figure_path(plot_path)
        if not (math.isfinite(eta) and eta > 0):
            raise ConfigError("--eta", f"must be a finite number > 0, got {eta!r}")
        if not 0 < max_steps <= TRACE_MAX_STEPS:
            problem = f"must be > 0 and at most {TRACE_MAX_STEPS} (trace keeps every step), got {max_steps}"
            raise ConfigError("--max-steps", problem)
        if not loss_tol > 0:
            raise ConfigError("--loss-tol", f"must be > 0, got {loss_tol}")
        vec_a, vec_b = _floats("--a", a), _floats("--b", b)
        if (vec_a is None) != (vec_b is None):
            raise ConfigError("--a/--b", "give both --a and --b, or neither")
        if vec_a is not None and vec_b is not None:
            for option, given in (("--lambda0", lambda0), ("--d", d), ("--init", init)):
                if given is not None:
                    raise ConfigError(option, "not used with --a/--b (the vectors fix the initialization)")
            start = start_from_vectors(vec_a, vec_b, phi)
        else:
            if lambda0 is None:
                raise ConfigError("--lambda0", "missing: give --lambda0 (and --d, --seed, --init), or --a and --b")
            start = sweep_initialization(
                eta=eta,
                lambda0=lambda0,
                phi=phi,
                d=10 if d is None else d,
                seed=seed,
                init=init or "sphere",
                trajectory=trajectory,
            )
        result = trace_trajectory(start, eta, StopRule(loss_tol, max_steps))
        if output is not None:
            write_trace_table(result, output)
        if plot_path is not None:
            plot_trace(result, plot_path)
    last = result.table.iloc[-1]
    stderr.print(
        f"{result.status.label} at T = {result.steps}: Q(T)/Q(0) = {last['q_ratio']:.6g}, "
        f"lambda(T) = {last['lambda']:.6g}, lambda_GF = {result.lambda_gf:.6g}; "
        f"eps0 = {start.eps0:.6g}, lambda0 = {start.lam0:.6g}, regime: {regime(eta, start.eps0, start.lam0, phi)}",
        highlight=False,
        soft_wrap=True,
    )
    for path in (output, plot_path):
        if path is not None:
            stderr.print(f"wrote {path}", highlight=False)


def main() -> None:
    app()
