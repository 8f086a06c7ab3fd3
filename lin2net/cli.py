"""Command-line interface: parses options, calls the library, reports errors.

Every error reaches the user as one line on stderr, ``error: <problem>``:
library errors (:class:`~lin2net.errors.Lin2netError`) with their exit code
(2 for bad input), option errors from the parser (an unknown option, a value
not among the choices) and file-system errors on the paths given with exit
code 2. Paths are checked before anything runs (NUL bytes, not UTF-8, too
long for the file system). Tables and exports live in :mod:`lin2net.analysis.tables`.
"""

from __future__ import annotations

import math
import os
import re
import sys
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer._click import exceptions as click_errors
from typer.core import TyperCommand, TyperGroup

from lin2net import __version__
from lin2net.analysis.tables import AXIS_LABELS
from lin2net.errors import ConfigError, Lin2netError
from lin2net.store.outdir import MANIFEST_FILE, path_problem
from lin2net.sweep.config import load_config
from lin2net.sweep.grid import Cell
from lin2net.sweep.runner import SweepPlan, completeness, plan_sweep, run_sweep

stdout = Console()
stderr = Console(stderr=True)


def printable(text: str) -> str:
    """``text`` with control characters (and undecodable bytes) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; return the Exit to raise.
    Control characters from user input (a YAML key with a newline) are escaped."""
    stderr.print(f"error: {printable(message)}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except Lin2netError as exc:
        failure = fail(str(exc), exc.exit_code)
        if getattr(exc, "exit_now", False):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_code)  # skip finalizers of a half-made Dask client (a 20 s wait, a report)
        raise failure from None
    except OSError as exc:  # a path given on the command line the file system refuses
        where = f"{_clip(printable(str(exc.filename)), 120)}: " if exc.filename is not None else ""
        raise fail(f"{where}{exc.strerror or exc.__class__.__name__}", 2) from None


def check_path(option: str, path: Path) -> Path:
    """Refuse, in one line, a path the file system cannot take (see
    :func:`lin2net.store.outdir.path_problem`)."""
    problem = path_problem(path)
    if problem is not None:
        raise ConfigError(option, f"{problem}: {_clip(printable(str(path)), 80)}")
    return path


def check_output_file(option: str, path: Path) -> Path:
    """:func:`check_path`, and the directory to write ``path`` in exists: checked
    before any work, so a typo in -o is not found only after computing."""
    check_path(option, path)
    parent = Path(path).parent
    if not parent.is_dir():
        shown = _clip(printable(str(parent)), 80)
        raise ConfigError(option, f"cannot write {_clip(printable(str(path)), 80)}: {shown} is not a directory")
    return path


def _usage_message(exc: click_errors.ClickException) -> str:
    """A parser error as one line: ``--format: 'xx' is not one of ...`` plus where to get help."""
    if isinstance(exc, click_errors.BadParameter) and not isinstance(exc, click_errors.MissingParameter):
        param = exc.param
        names = getattr(param, "opts", None) or []
        longest = max(names, key=len) if names else "value"
        if getattr(param, "param_type_name", "") == "argument":
            longest = getattr(param, "metavar", None) or longest.upper()
        message = re.sub(r"^Value error, ", "", str(exc.message))
        text = f"{longest}: {message}"
    else:
        text = exc.format_message()
    text = " ".join(text.split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and isinstance(exc, click_errors.UsageError):
        text = f"{text.rstrip('.')} (see '{ctx.command_path} --help')"
    return text


class _Group(TyperGroup):
    """The app: every parser error is one line ``error: ...`` with exit code 2."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(
                args=args, prog_name=prog_name or "lin2net", complete_var=complete_var, standalone_mode=False, **extra
            )
            code = result if isinstance(result, int) else 0
        except click_errors.NoArgsIsHelpError as exc:
            stdout.print(exc.ctx.get_help() if exc.ctx is not None else "", markup=False, highlight=False)
            code = 0
        except click_errors.ClickException as exc:
            fail(_usage_message(exc), exc.exit_code)
            code = exc.exit_code
        except typer.Abort:
            fail("aborted", 1)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


class _Command(TyperCommand):
    """A command whose usage line shows ``CONFIG``, not ``{CONFIG}``."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]


app = typer.Typer(
    name="lin2net",
    cls=_Group,
    help="Sweep gradient descent on L(a, b) = 1/2 (a·b − Φ)² over grids of η, λ(0), Φ and d.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
command = app.command(cls=_Command)


def version_callback(value: bool) -> None:
    if value:
        stdout.print(f"lin2net {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """lin2net: exact, batched gradient-descent sweeps on depth-2 linear networks."""


@command
def sweep(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML sweep config (keys: docs/config.md).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory [default: runs/<config name>].")
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
        typer.Option("--workers", "-j", help="Local worker cores; 1 runs in this process [default: all cores]."),
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
            help="Trajectories per shard file (whole cells) [default: 262144; 8192 for the NumPy integrators].",
        ),
    ] = None,
) -> None:
    """Run every cell of a grid not yet done in OUT; results in shard files OUT/shards/*.parquet.

    Example: lin2net sweep configs/smoke.yaml -o runs/smoke --set max_steps=5000 --workers 2
    """
    with user_errors():
        check_path("CONFIG", config_path)
        if out is not None:
            check_path("--out", out)
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
            plan = plan_sweep(
                config, out_dir, overwrite=overwrite, extend=extend, shard_rows=shard_size, workers=workers
            )
            _print_plan(plan)
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
            *(
                [
                    f"estimated run time: {_human_seconds(plan.estimated_seconds)} "
                    f"(scaled from a pilot of {plan.pilot_trajectories} of its trajectories)"
                ]
                if plan.estimated_seconds is not None
                else []
            ),
        ]
    stdout.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def _human_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


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


class ExportFormat(StrEnum):
    table = "table"
    csv = "csv"
    markdown = "markdown"
    parquet = "parquet"


SUMMARY_COLUMNS = {  # column -> header, in priority order (the first ones stay on a narrow terminal)
    **AXIS_LABELS,
    "trajectories": "n",
    "frac_converged": "conv",
    "frac_stable": "stable",
    "steps_median": "steps",
    "q_ratio_median": "Q(T)/Q0",
    "log_q_ratio_median": "log Q/Q0",
    "sharpness_T_median": "S(T)",
    # SGD: the window means are what noisy SGD settles to; ahead of div/max on a narrow terminal
    "sharpness_window_median": "S win",
    "lambda_window_median": "λ win",
    "q_ratio_window_median": "Q/Q0 win",
    "loss_window_median": "loss win",
    "frac_diverged": "div",
    "frac_max_steps": "max",
    "lambda_gf_median": "λ_GF",
}
SUMMARY_CAPTION = (
    "medians; Q(T)/Q0 and S(T) over converged trajectories; stable: converged with η·S(T) < 2; "
    "q25, q75 and IQRs in --format csv"
)
AXIS_COLUMNS = tuple(AXIS_LABELS)


def _table_width() -> int | None:
    """Width a terminal table must fit: $COLUMNS if set, else the terminal's;
    None (natural width) when output is piped or redirected."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return stdout.width if stdout.is_terminal else None


OUT_HELP = "Output directory of a sweep."
OUTPUT_HELP = "Write to FILE (.csv, .md, .parquet) instead of the terminal."
FORMAT_HELP = "Output format [default: from the -o suffix, else table]."


@command
def summarize(
    out: Annotated[Path, typer.Argument(metavar="OUT", help=OUT_HELP)],
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by", metavar="AXES", help="Group by these axes, pooling the others (repeat or comma-separate)."
        ),
    ] = None,
    fmt: Annotated[ExportFormat | None, typer.Option("--format", "-f", help=FORMAT_HELP)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help=OUTPUT_HELP)] = None,
    where: Annotated[str | None, typer.Option("--where", metavar="EXPR", help=WHERE_HELP)] = None,
) -> None:
    """Per-cell statistics of a sweep: fractions converged, medians and IQRs.

    Example: lin2net summarize runs/smoke --by eta --format csv -o eta.csv
    """
    from lin2net.analysis.tables import choose_format, export, print_table, terminal_table
    from lin2net.store.outdir import read_resolved_config

    axes = [axis.strip() for item in by or [] for axis in item.split(",") if axis.strip()]
    with user_errors():
        check_path("OUT", out)
        if output is not None:
            check_output_file("--output", output)
        chosen = choose_format(fmt.value if fmt else None, output)
        from lin2net.analysis.summary import summarize as summarize_sweep

        frame = summarize_sweep(out, by=axes or None, where=where)
        grid = read_resolved_config(out).get("grid", {})
    if frame.empty:
        raise fail(f"{out} holds no finished cells yet", 2)
    _note_missing_cells(out, "summary")
    if chosen != "table":
        with user_errors():
            export(frame, chosen, output)
        return
    # Without --by: the sweep's axes (those with one value go to the caption). With --by:
    # the grouping axes, always, and the pooled axes that take one value in the caption.
    shown_axes = axes or [a for a in AXIS_COLUMNS if a in grid or a == "init"]
    labels = {c: h for c, h in SUMMARY_COLUMNS.items() if c not in AXIS_COLUMNS or c in shown_axes}
    if "sharpness_window_median" in frame.columns:  # SGD: what noisy SGD settles to comes first
        first = [c for c in labels if c in AXIS_COLUMNS or c in ("trajectories", "frac_converged")]
        window = [c for c in labels if c.endswith("window_median")]
        labels = {c: labels[c] for c in dict.fromkeys([*first, *window, *labels])}
    if not (frame.get("q_ratio_median", pd_zero()) == 0).any():  # the log only where the median underflowed
        labels.pop("log_q_ratio_median", None)
    caption = SUMMARY_CAPTION
    if where:
        caption = f"where {where}; {caption}"
    if axes:
        pooled = {k: v for k, v in grid.items() if k not in axes and _single(v)}
        constant = [f"{SUMMARY_COLUMNS.get(k, k)} = {_axis_value(v)}" for k, v in pooled.items()]
        several = [SUMMARY_COLUMNS.get(k, k) for k, v in grid.items() if k not in axes and not _single(v)]
        if "eta_lambda0" in axes and "eta_lambda0" not in grid:
            several = [c for c in several if c not in ("η", "λ0")] + ["η and λ0 at each η·λ0"]
        pooled_note = [f"pooled over {', '.join(several)}"] if several else []
        caption = "; ".join([*constant, *pooled_note, caption])
    table = terminal_table(
        frame,
        title=f"lin2net summary of {out}",
        width=_table_width(),
        labels=labels,
        required=axes,
        axes=[] if axes else [a for a in AXIS_COLUMNS if a in labels],
        caption=caption,
    )
    print_table(stdout, table, _table_width())


@command
def cells(
    out: Annotated[Path, typer.Argument(metavar="OUT", help=OUT_HELP)],
    where: Annotated[str | None, typer.Option("--where", metavar="EXPR", help=WHERE_HELP)] = None,
    fmt: Annotated[ExportFormat | None, typer.Option("--format", "-f", help=FORMAT_HELP)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help=OUTPUT_HELP)] = None,
) -> None:
    """The cells of a sweep with their ids (for lin2net trace OUT --cell ID), their axes and outcomes.

    Example: lin2net cells runs/smoke --where 'eta > 1 and d = 10'
    """
    from lin2net.analysis.summary import summarize as summarize_sweep
    from lin2net.analysis.tables import choose_format, export, print_table, terminal_table

    with user_errors():
        check_path("OUT", out)
        if output is not None:
            check_output_file("--output", output)
        chosen = choose_format(fmt.value if fmt else None, output)
        frame = summarize_sweep(out, where=where)
    if frame.empty:
        raise fail(f"{out} holds no finished cells yet", 2)
    columns = ["cell_id", *(a for a in AXIS_COLUMNS if a in frame.columns), "trajectories"]
    columns += ["frac_converged", "frac_stable", "frac_diverged", "frac_max_steps"]
    frame = frame[columns]
    if chosen != "table":
        with user_errors():
            export(frame, chosen, output)
        return
    labels = {"cell_id": "cell_id", **{c: SUMMARY_COLUMNS.get(c, c) for c in columns[1:]}}
    table = terminal_table(
        frame,
        title=f"cells of {out}" + (f" where {where}" if where else ""),
        width=_table_width(),
        labels=labels,
        required=["cell_id"],
        axes=[a for a in AXIS_COLUMNS if a in frame.columns],
        caption=f"trace one: lin2net trace {out} --cell CELL_ID --trajectory K --plot trace.png",
    )
    print_table(stdout, table, _table_width())


def pd_zero() -> Any:
    import pandas as pd

    return pd.Series([], dtype=float)


def _single(values: Any) -> bool:
    return not isinstance(values, list) or len(values) == 1


def _axis_value(values: Any) -> str:
    from lin2net.analysis.tables import format_value

    value = values[0] if isinstance(values, list) and values else values
    return format_value(value)


def _note_missing_cells(out: Path, what: str) -> None:
    """One line on stderr when OUT's grid has cells without a file."""
    try:
        state = completeness(out)
    except Lin2netError:
        return  # no readable resolved config: nothing to compare with
    if state.missing:
        failed = f", {len(state.failed)} of them failed (see {out / MANIFEST_FILE})" if state.failed else ""
        stderr.print(
            f"note: {len(state.missing)} of {len(state.expected)} cells are missing from {out}{failed}; "
            f"the {what} covers the {len(state.expected) - len(state.missing)} finished",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


CHECK_OVERALL = {
    "bound": "bound",
    "in_regime": "in_regime",
    "fails": "fails",
    "holds": "holds",
    "worst_margin": "worst_margin",
    "cells_failing": "cells_failing",
    "worst_cell": "worst_cell",
}
CHECK_THEOREM2 = {
    "regime": "regime",
    "trajectories": "trajectories",
    "converged": "converged",
    "passing": "passing",
    "diverged": "diverged",
    "max_steps": "max_steps",
}


@command
def check(
    out: Annotated[Path, typer.Argument(metavar="OUT", help=OUT_HELP)],
    fmt: Annotated[ExportFormat | None, typer.Option("--format", "-f", help=FORMAT_HELP)] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write the per-cell table to FILE (.csv, .md, .parquet)."),
    ] = None,
) -> None:
    """Check Theorem 1's bounds on Q(T)/Q(0) for every converged in-regime trajectory.

    Reports, per cell and overall, how many trajectories satisfy each bound and
    where a bound fails, with the worst margin in log Q; and what became of the
    trajectories in Theorem 2's two step-size regimes. Exits 0: it is a report.

    Example: lin2net check runs/smoke --format markdown -o check.md
    """
    from lin2net.analysis.check import check_sweep
    from lin2net.analysis.tables import choose_format, export, print_table, terminal_table

    with user_errors():
        check_path("OUT", out)
        if output is not None:
            check_output_file("--output", output)
        chosen = choose_format(fmt.value if fmt else None, output)
        report = check_sweep(out)
    _note_missing_cells(out, "check")
    sentences = [*report.sentences(), *report.theorem2_sentences()]
    if chosen != "table":
        with user_errors():
            export(report.export(), chosen, output)
        for line in sentences:
            stderr.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    width = _table_width()
    overall = terminal_table(
        report.overall,
        title=f"Theorem 1 bounds on Q(T)/Q(0) in {out}",
        width=width,
        labels=CHECK_OVERALL,
        required=["bound", "in_regime", "fails"],
    )
    print_table(stdout, overall, width)
    for bound in ("lower", "upper"):
        failing = report.failing(bound)
        if len(failing):
            more = f" (worst 20 of {len(failing)})" if len(failing) > 20 else ""
            labels = {
                "cell_id": "cell_id",
                f"{bound}_worst_margin": "worst_margin",
                f"{bound}_fails": "fails",
                "eta": "η",
                "lambda0": "λ0",
                "phi": "Φ",
                "d": "d",
                "in_regime": "in_regime",
            }
            table = terminal_table(
                failing.head(20),
                title=f"cells where the {bound} bound fails{more}",
                width=width,
                labels=labels,
                required=["cell_id", f"{bound}_worst_margin"],
                axes=["eta", "lambda0", "phi", "d"],
            )
            print_table(stdout, table, width)
    theorem2 = terminal_table(
        report.theorem2(), title="Theorem 2 regimes: outcomes", width=width, labels=CHECK_THEOREM2, required=["regime"]
    )
    print_table(stdout, theorem2, width)
    for sentence in sentences:  # prose wraps between words at the table width
        for line in textwrap.wrap(sentence, width) if width else [sentence]:
            stdout.print(line, markup=False, highlight=False, soft_wrap=True)


class PlotAxis(StrEnum):
    eta = "eta"
    lambda0 = "lambda0"
    phi = "phi"
    d = "d"
    eta_lambda0 = "eta_lambda0"
    batch_size = "batch_size"
    label_noise = "label_noise"


class PlotKind(StrEnum):
    heatmap = "heatmap"
    line = "line"
    phase = "phase"
    regions = "regions"


class PlotScale(StrEnum):
    linear = "linear"
    log = "log"
    categorical = "categorical"


WHERE_HELP = "Keep the trajectories for which this DuckDB expression holds, e.g. 'lambda0 = 4 and d > 1'."


class PlotStat(StrEnum):
    median = "median"
    mean = "mean"
    min = "min"
    max = "max"
    q25 = "q25"
    q75 = "q75"
    frac_converged = "frac_converged"
    frac_stable = "frac_stable"
    frac_diverged = "frac_diverged"
    frac_max_steps = "frac_max_steps"


@command
def plot(
    out: Annotated[
        Path | None, typer.Argument(metavar="OUT", help=OUT_HELP + " Not used by --kind phase and regions.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Figure file: .png, .svg or .pdf [default: OUT/figure3.png for the default view, "
            "else OUT/plot-<value>-<stat>-<x>-<y>.png].",
        ),
    ] = None,
    x: Annotated[
        PlotAxis | None, typer.Option("--x", help="Horizontal axis [default: eta, or eta_lambda0 if swept].")
    ] = None,
    y: Annotated[PlotAxis | None, typer.Option("--y", help="Vertical axis [default: lambda0].")] = None,
    value: Annotated[
        str | None,
        typer.Option(
            "--value",
            metavar="COLUMN",
            help="Value to map: a numeric trajectory column (q_ratio, steps, lambda_T, sharpness_T, ...), "
            "one_minus_q_ratio, 1 − Q(T)/Q(0) on a log colour scale (shows the shrinkage where Q(T)/Q(0) "
            "is close to 1), or a DuckDB expression such as 'eta * sharpness_T' "
            "[default: two panels, q_ratio and steps, as Figure 3].",
        ),
    ] = None,
    stat: Annotated[PlotStat, typer.Option("--stat", help="Statistic per grid point.")] = PlotStat.median,
    kind: Annotated[
        PlotKind,
        typer.Option(
            "--kind",
            help="heatmap (over --x, --y), line (--value against --x, a line per --hue); without OUT: "
            "phase (the paper's Figure 1) or regions (its Figure 2).",
        ),
    ] = PlotKind.heatmap,
    where: Annotated[str | None, typer.Option("--where", metavar="EXPR", help=WHERE_HELP)] = None,
    hue: Annotated[PlotAxis | None, typer.Option("--hue", help="--kind line: one line per value of this axis.")] = None,
    facet: Annotated[
        PlotAxis | None, typer.Option("--facet", help="--kind line: one panel per value of this axis.")
    ] = None,
    xscale: Annotated[
        PlotScale | None, typer.Option("--xscale", help="[default: log for geometric values, categorical for a few d].")
    ] = None,
    eta: Annotated[float | None, typer.Option("--eta", help="--kind phase/regions: step size.")] = None,
    phi: Annotated[float | None, typer.Option("--phi", help="--kind phase/regions: target Φ [default: 1].")] = None,
    yscale: Annotated[
        PlotScale | None, typer.Option("--yscale", help="[default: as --xscale; line: log past 2 decades].")
    ] = None,
) -> None:
    """Heatmaps of a sweep over two axes, one panel per value of the other swept axes (the paper's Figure 3),
    or --kind line: a statistic against one axis.

    By default: median Q(T)/Q(0) and median convergence time over eta and lambda0,
    with the reference lines eta*lambda0 = 2, eta = 2/sqrt(lambda0^2 + 4 Phi^2),
    eta = 1/(lambda0 + 2 Phi) and eta = 1/Phi. Hatched grey: fewer than half the
    trajectories converged. The frac_* statistics draw one map, whatever --value.
    --value may be a DuckDB expression ('eta * sharpness_T'); --where filters.

    Example: lin2net plot runs/figure3 --value one_minus_q_ratio
    Example: lin2net plot runs/smoke --kind line --x eta --value sharpness_T --hue lambda0 --facet d
    """
    from lin2net.analysis.plotting import plot_lines, plot_sweep

    with user_errors():
        if kind in (PlotKind.phase, PlotKind.regions):
            from lin2net.analysis.paper_figures import plot_paper_figure

            if out is not None:
                raise ConfigError("OUT", f"--kind {kind.value} draws the paper's figure from the dynamics, not a sweep")
            if output is None:
                raise ConfigError("--output", f"--kind {kind.value} needs -o FILE (.png, .svg or .pdf)")
            check_output_file("--output", output)
            path = plot_paper_figure(kind.value, output, eta=eta, phi=phi)
            stderr.print(f"wrote {path}", highlight=False, markup=False, soft_wrap=True)
            return
        if out is None:
            raise ConfigError("OUT", f"missing: --kind {kind.value} plots a sweep's output directory")
        for option, given_value in (("--eta", eta), ("--phi", phi)):
            if given_value is not None:
                raise ConfigError(option, "only with --kind phase or regions (a sweep's plot takes its parameters)")
        check_path("OUT", out)
        if output is not None:
            check_output_file("--output", output)
        if kind == PlotKind.line:
            if y is not None:
                raise ConfigError("--y", "not used with --kind line (the value is the vertical axis)")
            path = plot_lines(
                out,
                output,
                x=x.value if x else None,
                value=value,
                hue=hue.value if hue else None,
                facet=facet.value if facet else None,
                stat=stat.value,
                where=where,
                xscale=xscale.value if xscale else None,
                yscale=yscale.value if yscale else None,
            )
        elif kind == PlotKind.heatmap:
            for option, given in (("--hue", hue), ("--facet", facet)):
                if given is not None:
                    raise ConfigError(option, "only with --kind line (heatmaps facet over every other swept axis)")
            path = plot_sweep(
                out,
                output,
                x=x.value if x else None,
                y=y.value if y else None,
                value=value,
                stat=stat.value,
                where=where,
                xscale=xscale.value if xscale else None,
                yscale=yscale.value if yscale else None,
            )
    _note_missing_cells(out, "figure")
    stderr.print(f"wrote {path}", highlight=False, markup=False, soft_wrap=True)


def _floats(option: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(option, f"must be comma-separated numbers, got {text!r}") from None


@command
def trace(
    out: Annotated[
        Path | None,
        typer.Argument(metavar="OUT", help="Output directory of a sweep, with --cell: trace one of its trajectories."),
    ] = None,
    cell_id: Annotated[
        str | None,
        typer.Option("--cell", metavar="CELL_ID", help="Cell of OUT (ids: lin2net cells OUT)."),
    ] = None,
    eta: Annotated[float | None, typer.Option("--eta", help="Stepsize (without OUT).")] = None,
    lambda0: Annotated[float | None, typer.Option("--lambda0", help="Initial scale (random init).")] = None,
    phi: Annotated[float | None, typer.Option("--phi", help="Target [default: 1].")] = None,
    d: Annotated[int | None, typer.Option("--d", help="Width (random init) [default: 10].")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Root seed, as in a sweep config [default: 0].")] = None,
    init: Annotated[str | None, typer.Option("--init", help="sphere or gaussian [default: sphere].")] = None,
    trajectory: Annotated[
        str,
        typer.Option(
            "--trajectory", metavar="K[,K...]", help="Index of the initialization in the cell; 0,1,2 overlays several."
        ),
    ] = "0",
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="SGD without OUT: batch size B (data: --n samples).")
    ] = None,
    label_noise: Annotated[
        float | None, typer.Option("--label-noise", help="SGD without OUT: per-step label-noise std σ [default: 0].")
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="SGD without OUT: data set size [default: 100].")] = None,
    a: Annotated[str | None, typer.Option("--a", help="Explicit a, comma-separated, e.g. 1,2.")] = None,
    b: Annotated[str | None, typer.Option("--b", help="Explicit b, comma-separated, e.g. 0.5,0.1.")] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Step budget [default: 100000, or OUT's max_steps].")
    ] = None,
    loss_tol: Annotated[
        float | None, typer.Option("--loss-tol", help="Converged once eps^2/2 <= this [default: 1e-10, or OUT's].")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Per-step table, .parquet or .csv.")
    ] = None,
    plot_path: Annotated[
        Path | None, typer.Option("--plot", metavar="FILE", help="Figure, .png, .svg or .pdf.")
    ] = None,
) -> None:
    """Run one initialization step by step; write the per-step table and a figure.

    Either OUT --cell CELL_ID --trajectory K: trajectory K of that cell of the sweep
    in OUT, with the sweep's exact parameters and stopping rule, so the trace ends
    on that trajectory's row. Or the parameters given here: the random
    initialization is trajectory --trajectory of the sweep cell (eta, lambda0,
    phi, d) with root seed --seed; --a and --b give an explicit one.
    The figure overlays the gradient flow from the same start (GF time eta*t).

    Example: lin2net trace --eta 0.5 --lambda0 3 --d 10 -o trace.csv --plot trace.png
    """
    from lin2net.analysis.plotting import check_figure_path, plot_trace
    from lin2net.analysis.trace import (
        TABLE_SUFFIXES,
        TRACE_MAX_STEPS,
        start_from_vectors,
        sweep_initialization,
        trace_trajectory,
        write_trace_table,
    )
    from lin2net.dynamics.gd.reference import StopRule
    from lin2net.theory.theorems import regime

    with user_errors():
        if out is not None:
            check_path("OUT", out)
        for option, path in (("--output", output), ("--plot", plot_path)):
            if path is not None:
                check_output_file(option, path)
        if output is not None and output.suffix.lower() not in TABLE_SUFFIXES:
            raise ConfigError("--output", f"unknown table format {output.suffix or '(none)'!r}; use .parquet or .csv")
        if plot_path is not None:
            check_figure_path(plot_path)
        if max_steps is not None and not 0 < max_steps <= TRACE_MAX_STEPS:
            problem = f"must be > 0 and at most {TRACE_MAX_STEPS} (trace keeps every step), got {max_steps}"
            raise ConfigError("--max-steps", problem)
        if loss_tol is not None and not loss_tol > 0:
            raise ConfigError("--loss-tol", f"must be > 0, got {loss_tol}")
        indices = _trajectories(trajectory)
        sgd_given = {"--batch-size": batch_size, "--label-noise": label_noise, "--n": n}
        runs: list[Any] = []
        info: dict[str, Any] = {}
        if out is not None or cell_id is not None:
            if out is None or cell_id is None:
                raise ConfigError("--cell", f"give OUT and --cell CELL_ID together (ids: {CELLS_HINT})")
            given = {"--eta": eta, "--lambda0": lambda0, "--phi": phi, "--d": d, "--seed": seed, "--init": init}
            for option, value in {**given, **sgd_given, "--a": a, "--b": b}.items():
                if value is not None:
                    raise ConfigError(option, "not used with OUT --cell (the sweep's config fixes the parameters)")
            for index in indices:
                start, eta, rule, config, cell = _sweep_trajectory(out, cell_id, index, max_steps, loss_tol)
                if config.algorithm == "sgd":
                    runs.append((index, start, _sgd_trace(config, cell, index, rule, start, eta)))
                else:
                    runs.append((index, start, trace_trajectory(start, eta, rule)))
            info = _trace_info(config, cell, cell_id.strip())
        elif batch_size is not None:
            if eta is None:
                raise ConfigError("--eta", "missing: an SGD trace needs --eta, --batch-size and --lambda0 (or --a/--b)")
            config, cell = _sgd_cli_config(
                eta, lambda0, phi, d, seed, init, batch_size, label_noise, n, a, b, max_steps, loss_tol, max(indices)
            )
            from lin2net.dynamics.gd.cell import stop_rule

            rule = stop_rule(config)
            for index in indices:
                start = _cli_start(config, cell, index)
                runs.append((index, start, _sgd_trace(config, cell, index, rule, start, cell.eta)))
            info = _trace_info(config, cell, None)
        else:
            for option, value in sgd_given.items():
                if value is not None:
                    raise ConfigError(
                        option, "an SGD parameter: give --batch-size too (or trace a cell of an SGD sweep)"
                    )
            if eta is None:
                raise ConfigError("--eta", "missing: give --eta (and --lambda0 or --a/--b), or OUT --cell CELL_ID")
            if not (math.isfinite(eta) and eta > 0):
                raise ConfigError("--eta", f"must be a finite number > 0, got {eta!r}")
            rule = StopRule(1e-10 if loss_tol is None else loss_tol, 100_000 if max_steps is None else max_steps)
            vec_a, vec_b = _floats("--a", a), _floats("--b", b)
            if (vec_a is None) != (vec_b is None):
                raise ConfigError("--a/--b", "give both --a and --b, or neither")
            if vec_a is not None and vec_b is not None:
                for option, given_value in (("--lambda0", lambda0), ("--d", d), ("--init", init)):
                    if given_value is not None:
                        raise ConfigError(option, "not used with --a/--b (the vectors fix the initialization)")
                if len(indices) > 1:
                    raise ConfigError("--trajectory", "one explicit start (--a/--b) is one trajectory: give one index")
                start = start_from_vectors(vec_a, vec_b, 1.0 if phi is None else phi)
                runs.append((indices[0], start, trace_trajectory(start, eta, rule)))
                info = {"algorithm": "GD", "η": eta, "Φ": start.phi, "d": len(vec_a), "init": "explicit"}
            else:
                if lambda0 is None:
                    raise ConfigError("--lambda0", "missing: give --lambda0 (and --d, --seed, --init), or --a and --b")
                for index in indices:
                    start = sweep_initialization(
                        eta=eta,
                        lambda0=lambda0,
                        phi=1.0 if phi is None else phi,
                        d=10 if d is None else d,
                        seed=0 if seed is None else seed,
                        init=init or "sphere",
                        trajectory=index,
                    )
                    runs.append((index, start, trace_trajectory(start, eta, rule)))
                info = {
                    "algorithm": "GD",
                    "η": eta,
                    "λ(0)": lambda0,
                    "Φ": 1.0 if phi is None else phi,
                    "d": 10 if d is None else d,
                    "init": init or "sphere",
                    "seed": 0 if seed is None else seed,
                }
        if output is not None:
            if len(runs) > 1:
                raise ConfigError("--output", "the per-step table holds one trajectory: give one --trajectory with -o")
            write_trace_table(runs[0][2], output)
        if plot_path is not None:
            plot_trace([(index, result) for index, _, result in runs], plot_path, parameters=info)
    for index, start, result in runs:
        last = result.table.iloc[-1]
        stderr.print(
            (f"trajectory {index}: " if len(runs) > 1 else "")
            + f"{result.status.label} at T = {result.steps}: Q(T)/Q(0) = {last['q_ratio']:.6g}, "
            f"lambda(T) = {last['lambda']:.6g}, lambda_GF = {result.lambda_gf:.6g}; "
            f"eps0 = {start.eps0:.6g}, lambda0 = {start.lam0:.6g}, "
            f"regime: {regime(result.eta, start.eps0, start.lam0, start.phi)}",
            highlight=False,
            soft_wrap=True,
        )
    for path in (output, plot_path):
        if path is not None:
            stderr.print(f"wrote {path}", highlight=False)


CELLS_HINT = "lin2net cells OUT"


def _trajectories(text: str) -> list[int]:
    """``--trajectory 0`` or ``0,1,2``: distinct indices >= 0."""
    try:
        indices = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError("--trajectory", f"must be an index or comma-separated indices, got {text!r}") from None
    if not indices or any(i < 0 for i in indices) or len(set(indices)) < len(indices):
        raise ConfigError("--trajectory", f"must be distinct indices >= 0, got {text!r}")
    if len(indices) > 10:
        raise ConfigError("--trajectory", f"at most 10 trajectories in one figure, got {len(indices)}")
    return indices


def _trace_info(config: Any, cell: Any, cell_id: str | None) -> dict[str, Any]:
    """The parameters a trace figure's title states."""
    info: dict[str, Any] = {"algorithm": "SGD" if config.algorithm == "sgd" else "GD"}
    if cell_id:
        info["cell"] = cell_id
    info.update({"η": cell.eta, "λ(0)": cell.lambda0, "Φ": cell.phi, "d": cell.d, "init": cell.init})
    if config.algorithm == "sgd":
        info.update({"B": cell.batch_size, "σ": cell.label_noise, "n": config.data.n})
    info["seed"] = config.seed
    return info


def _sgd_cli_config(
    eta: float,
    lambda0: float | None,
    phi: float | None,
    d: int | None,
    seed: int | None,
    init: str | None,
    batch_size: int,
    label_noise: float | None,
    n: int | None,
    a: str | None,
    b: str | None,
    max_steps: int | None,
    loss_tol: float | None,
    last: int,
) -> tuple[Any, Any]:
    """A one-cell SGD sweep config from trace's options, and its cell; bad values
    are reported by the config parser under the trace option's name."""
    from lin2net.sweep.config import parse_config
    from lin2net.sweep.grid import expand_grid

    grid: dict[str, Any] = {"eta": eta, "phi": 1.0 if phi is None else phi, "batch_size": batch_size}
    grid["label_noise"] = 0.0 if label_noise is None else label_noise
    vec_a, vec_b = _floats("--a", a), _floats("--b", b)
    raw: dict[str, Any] = {"name": "trace", "algorithm": "sgd", "seed": 0 if seed is None else seed}
    if vec_a is not None or vec_b is not None:
        if vec_a is None or vec_b is None:
            raise ConfigError("--a/--b", "give both --a and --b, or neither")
        raw["init"] = {"explicit": {"a": vec_a, "b": vec_b}}
        raw["trajectories"] = 1
        if last > 0:
            raise ConfigError("--trajectory", "one explicit start (--a/--b) is one trajectory: give 0")
    else:
        if lambda0 is None:
            raise ConfigError("--lambda0", "missing: give --lambda0 (and --d, --seed, --init), or --a and --b")
        grid.update({"lambda0": lambda0, "d": 10 if d is None else d})
        raw["init"] = init or "sphere"
        raw["trajectories"] = last + 1
    raw["grid"] = grid
    raw["data"] = {"n": 100 if n is None else n}
    raw["max_steps"] = 100_000 if max_steps is None else max_steps
    raw["loss_tol"] = 1e-10 if loss_tol is None else loss_tol
    names = {"grid.batch_size": "--batch-size", "grid.label_noise": "--label-noise", "data.n": "--n"}
    try:
        config = parse_config(raw)
    except ConfigError as error:
        key = names.get(error.key, "--" + error.key.split(".")[-1].replace("_", "-"))
        raise ConfigError(key, error.problem) from None
    (cell,) = list(expand_grid(config))
    return config, cell


def _cli_start(config: Any, cell: Any, trajectory: int) -> Any:
    from lin2net.analysis.trace import start_from_vectors, sweep_initialization

    if config.explicit is not None:
        return start_from_vectors(config.explicit.a, config.explicit.b, cell.phi)
    return sweep_initialization(
        eta=cell.eta,
        lambda0=cell.lambda0,
        phi=cell.phi,
        d=cell.d,
        seed=config.seed,
        init=config.init,
        trajectory=trajectory,
    )


def _sweep_trajectory(
    out: Path, cell_id: str, trajectory: int, max_steps: int | None, loss_tol: float | None
) -> tuple[Any, float, Any, Any, Any]:
    """(start, eta, stop rule, config, cell) of trajectory ``trajectory`` of cell
    ``cell_id`` in the sweep in ``out``."""
    from lin2net.analysis.trace import TRACE_MAX_STEPS, start_from_vectors, sweep_initialization
    from lin2net.dynamics.gd.cell import stop_rule
    from lin2net.store.outdir import read_resolved_config
    from lin2net.sweep.config import parse_config
    from lin2net.sweep.grid import expand_grid

    config = parse_config(read_resolved_config(out))
    cells = {cell.cell_id: cell for cell in expand_grid(config)}
    cell = cells.get(cell_id.strip())
    if cell is None:
        shown = printable(_clip(cell_id, 40))
        problem = f"no cell {shown!r} in the grid of {out}; list the ids with: lin2net cells {out}"
        raise ConfigError("--cell", problem)
    if not 0 <= trajectory < config.trajectories:
        problem = f"must be in 0 .. {config.trajectories - 1} (the cell's trajectories), got {trajectory}"
        raise ConfigError("--trajectory", problem)
    rule = stop_rule(config)
    steps = rule.max_steps if max_steps is None else max_steps
    if steps > TRACE_MAX_STEPS:
        problem = f"OUT's max_steps is {steps} and a trace keeps every step: give --max-steps <= {TRACE_MAX_STEPS}"
        raise ConfigError("--max-steps", problem)
    rule = replace(rule, max_steps=steps, loss_tol=rule.loss_tol if loss_tol is None else loss_tol)
    if config.explicit is not None:
        start = start_from_vectors(config.explicit.a, config.explicit.b, cell.phi)
    else:
        start = sweep_initialization(
            eta=cell.eta,
            lambda0=cell.lambda0,
            phi=cell.phi,
            d=cell.d,
            seed=config.seed,
            init=config.init,
            trajectory=trajectory,
        )
    return start, cell.eta, rule, config, cell


def _sgd_trace(config: Any, cell: Any, trajectory: int, rule: Any, start: Any, eta: float) -> Any:
    """Trajectory ``trajectory`` of a cell of an SGD sweep, re-simulated on the
    sweep's own batches and noise (lin2net.dynamics.sgd.cell) under ``rule``."""
    from lin2net.analysis.trace import sgd_trace
    from lin2net.dynamics.sgd.cell import trace_sgd_trajectory

    config = replace(config, max_steps=rule.max_steps, loss_tol=rule.loss_tol)
    return sgd_trace(start, trace_sgd_trajectory(config, cell, trajectory), eta)


def main() -> None:
    app(prog_name="lin2net")
