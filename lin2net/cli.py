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
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer._click import exceptions as click_errors
from typer.core import TyperCommand, TyperGroup

from lin2net import __version__
from lin2net.analysis.tables import AXIS_LABELS
from lin2net.dynamics import registry
from lin2net.errors import ConfigError, Lin2netError
from lin2net.store.outdir import MANIFEST_FILE, path_problem, record_owned_figure
from lin2net.sweep.config import MAX_PARAMETER, load_config

if TYPE_CHECKING:  # each command imports what it uses: `lin2net --help` and `summarize` load no numba or pandas
    from rich.progress import Progress

    from lin2net.store.opened import OpenedOutput
    from lin2net.sweep.grid import Cell
    from lin2net.sweep.runner import SweepPlan

stdout = Console()
stderr = Console(stderr=True)


def printable(text: str) -> str:
    """``text`` with control characters (and undecodable bytes) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; return the Exit to raise.
    Control characters from user input (a YAML key with a newline) are escaped.
    Written to the stream directly: an error line never depends on the
    terminal's width (``COLUMNS=0`` would make rich print nothing)."""
    stream = stderr.file
    stream.write(f"error: {printable(message)}\n")
    stream.flush()
    return typer.Exit(code)


def _usable_columns() -> None:
    """Ignore a ``COLUMNS`` that is not a positive integer (``COLUMNS=0``): rich
    would print every line at width 0, that is, print nothing."""
    columns = os.environ.get("COLUMNS")
    if columns is not None and not (columns.strip().isdigit() and int(columns) > 0):
        del os.environ["COLUMNS"]
    for console in (stdout, stderr):
        if console.width < 1:
            console.width = 80


def _check_environment() -> None:
    """Environment variables that would make a library raise deep inside a run."""
    threads = os.environ.get("NUMBA_NUM_THREADS")
    if threads is not None and not (threads.strip().isdigit() and int(threads) > 0):
        raise ConfigError("NUMBA_NUM_THREADS", f"must be a positive integer, got {threads!r} (or unset it)")


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
        # An OSError without strerror is a library's own (llvmlite that cannot
        # load under a low memory limit): its message is the only explanation.
        reason = exc.strerror or _clip(" ".join(str(exc).split()), 200) or exc.__class__.__name__
        hint = " (is the memory limit, ulimit -v, too low?)" if "shared object" in reason else ""
        raise fail(f"{where}{reason}{hint}", 2 if exc.strerror else 1) from None
    except MemoryError:
        raise fail(
            "out of memory (is the memory limit, ulimit -v, too low? lin2net sweep --dry-run shows a "
            "sweep's peak memory)",
            1,
        ) from None


def check_path(option: str, path: Path) -> Path:
    """Refuse, in one line, a path the file system cannot take (see
    :func:`lin2net.store.outdir.path_problem`)."""
    problem = path_problem(path)
    if problem is not None:
        raise ConfigError(option, f"{problem}: {_clip(printable(str(path)), 80)}")
    return path


def check_output_file(option: str, path: Path, out: Path | None = None) -> Path:
    """:func:`check_path`, and the directory to write ``path`` in exists: checked
    before any work, so a typo in -o is not found only after computing. With
    ``out`` (the sweep read), ``path`` may not be inside OUT's own folders
    (``shards/``: a file there breaks every reader's glob and the next sweep)
    nor be one of the files lin2net keeps in OUT (config.yaml, manifest.json, ...)."""
    check_path(option, path)
    parent = Path(path).parent
    if not parent.is_dir():
        shown = _clip(printable(str(parent)), 80)
        raise ConfigError(option, f"cannot write {_clip(printable(str(path)), 80)}: {shown} is not a directory")
    if out is not None:
        from lin2net.store.outdir import OWN_FILES, SHARDS_DIR

        try:
            folder, root = parent.resolve(), Path(out).resolve()
        except (OSError, RuntimeError):
            return path
        shown = _clip(printable(str(path)), 80)
        if folder == root / SHARDS_DIR or root / SHARDS_DIR in folder.parents:
            raise ConfigError(option, f"cannot write {shown} inside {out}/{SHARDS_DIR}, which holds only shard files")
        if folder == root and Path(path).name in OWN_FILES:
            raise ConfigError(option, f"cannot write {shown}: lin2net keeps its own {Path(path).name} there")
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

    # typer turns a KeyboardInterrupt into a silent exit 130: Ctrl-C while the
    # options are parsed, or while a command imports before its own handling,
    # is one line here, as at any other moment.
    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            _usable_columns()
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
        except typer.Abort as abort:
            if isinstance(abort.__cause__, KeyboardInterrupt):  # Ctrl-C outside a sweep's own handling
                fail("interrupted", 130)
                code = 130
            else:
                fail("aborted", 1)
                code = 1
        except KeyboardInterrupt:
            fail("interrupted", 130)
            code = 130
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


class KeepChoice(StrEnum):
    rows = "rows"
    summary = "summary"
    both = "both"


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
            help="Trajectories per shard file: whole cells, a larger cell in parts [default: 262144; 8192 for NumPy].",
        ),
    ] = None,
    keep: Annotated[
        KeepChoice | None,
        typer.Option(
            "--keep",
            help="What to write per grid point: trajectory rows, a summary (OUT/summaries/), or both "
            "[default: the config's keep, else rows].",
        ),
    ] = None,
) -> None:
    """Run every cell of a grid not yet done in OUT; results in shard files OUT/shards/*.parquet.

    Example: lin2net sweep configs/smoke.yaml -o runs/smoke --set max_steps=5000 --workers 2
    """
    from lin2net.sweep.runner import plan_sweep, run_sweep

    with user_errors():
        _check_environment()
        check_path("CONFIG", config_path)
        if out is not None:
            check_path("--out", out)
        if keep is not None:  # an override like --set keep=...: recorded with the run's overrides
            sets = [*(sets or ()), f"keep={keep.value}"]
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
            *(_estimate_lines(plan) if plan.estimated_seconds is not None else []),
            *_memory_lines(plan),
        ]
    stdout.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def _estimate_lines(plan: SweepPlan) -> list[str]:
    assert plan.estimated_seconds is not None
    pilot = plan.pilot
    cells = f" of {pilot.cells} cells spread over every axis" if pilot is not None and pilot.cells else ""
    lines = [
        f"estimated run time: {_human_seconds(plan.estimated_seconds)} "
        f"(scaled from a pilot of {plan.pilot_trajectories} of its trajectories{cells})"
    ]
    if pilot is not None and pilot.lower_bound:
        lines[0] = lines[0].replace("estimated run time: ", "estimated run time: at least ", 1)
        lines.append(f"  a lower bound: {pilot.lower_bound}; the sweep's trajectories may run longer")
    return lines


def _memory_lines(plan: SweepPlan) -> list[str]:
    memory = plan.memory
    if memory is None:
        return []
    held = f"shards of up to {memory.shard_rows} trajectories"
    line = f"peak memory: about {_human_bytes(memory.peak)} ({held})"
    available = plan.available_memory
    if available is None:
        return [line]
    if memory.peak > available:
        refused = f"warning: more than this machine allows ({_human_bytes(available)}): the sweep will refuse to run"
        return [line, refused]
    return [f"{line}; this machine allows {_human_bytes(available)}"]


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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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


VERIFY_HELP = "Verify every shard file in full (page CRCs, content checksums), even those OUT records as verified."


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
    verify: Annotated[bool, typer.Option("--verify", help=VERIFY_HELP)] = False,
    where: Annotated[str | None, typer.Option("--where", metavar="EXPR", help=WHERE_HELP)] = None,
) -> None:
    """Per-cell statistics of a sweep: fractions converged, medians and IQRs.

    Example: lin2net summarize runs/smoke --by eta --format csv -o eta.csv
    """
    from lin2net.analysis.summary import summary_rows
    from lin2net.analysis.tables import choose_format, export
    from lin2net.store.opened import open_output

    axes = [axis.strip() for item in by or [] for axis in item.split(",") if axis.strip()]
    with user_errors():
        check_path("OUT", out)
        if output is not None:
            check_output_file("--output", output, out)
        chosen = choose_format(fmt.value if fmt else None, output)
        opened = open_output(out, verify=verify)
        rows = summary_rows(opened, by=axes or None, where=[where] if where else [])
        grid = opened.resolved.get("grid", {})
    if not len(rows):
        raise fail(f"{out} holds no finished cells yet", 2)
    _note_missing_cells(opened, "summary")
    if chosen != "table":
        with user_errors():
            export(rows, chosen, output)
        return
    from lin2net.analysis.tables import print_table, terminal_table

    frame = rows.df()
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
            check_output_file("--output", output, out)
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


def _note_missing_cells(opened: OpenedOutput, what: str) -> None:
    """One line on stderr when OUT's grid has cells without a verified file."""
    if opened.complete:
        return
    missing, failed_ids, out = opened.missing, opened.failed, opened.path
    if missing:
        expected = len(opened.cells)
        failed = f", {len(failed_ids)} of them failed (see {out / MANIFEST_FILE})" if failed_ids else ""
        stderr.print(
            f"note: {len(missing)} of {expected} cells are missing from {out}{failed}; "
            f"the {what} covers the {expected - len(missing)} finished",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _note_summary_only(opened: OpenedOutput) -> None:
    """One line naming what check cannot do in an OUT without trajectory rows."""
    if opened.config.keep == "summary":
        stderr.print(
            f"note: {opened.path} keeps summaries only (keep: summary): check reports the per-cell counts the "
            "sweep kept; without rows it cannot show single trajectories' margins or recheck them with other "
            "tolerances",
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
    verify: Annotated[bool, typer.Option("--verify", help=VERIFY_HELP)] = False,
) -> None:
    """Check Theorem 1's bounds on Q(T)/Q(0) for every converged in-regime trajectory.

    Reports, per cell and overall, how many trajectories satisfy each bound and
    where a bound fails, with the worst margin in log Q; and what became of the
    trajectories in Theorem 2's two step-size regimes. Exits 0: it is a report.

    Example: lin2net check runs/smoke --format markdown -o check.md
    """
    from lin2net.analysis.check import check_sweep
    from lin2net.analysis.tables import choose_format, export, print_table, terminal_table
    from lin2net.store.opened import open_output

    with user_errors():
        check_path("OUT", out)
        if output is not None:
            check_output_file("--output", output, out)
        chosen = choose_format(fmt.value if fmt else None, output)
        opened = open_output(out, verify=verify)
        report = check_sweep(opened)
    _note_missing_cells(opened, "check")
    _note_summary_only(opened)
    sentences = [*report.notes, *report.sentences(), *report.theorem2_sentences()]
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


if TYPE_CHECKING:
    PlotAxis = str
else:  # the choices of --x and --y: every dynamics' axes, from the registry
    PlotAxis = StrEnum("PlotAxis", {name: name for name in registry.table_axes()})


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
    verify: Annotated[bool, typer.Option("--verify", help=VERIFY_HELP)] = False,
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
    from lin2net.store.opened import open_output

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
            check_output_file("--output", output, out)
        opened = open_output(out, verify=verify)
        if kind == PlotKind.line:
            if y is not None:
                raise ConfigError("--y", "not used with --kind line (the value is the vertical axis)")
            path = plot_lines(
                opened,
                output,
                x=str(x) if x else None,
                value=value,
                hue=str(hue) if hue else None,
                facet=str(facet) if facet else None,
                stat=stat.value,
                where=where,
                xscale=xscale.value if xscale else None,
                yscale=yscale.value if yscale else None,
            )
        else:
            for option, given in (("--hue", hue), ("--facet", facet)):
                if given is not None:
                    raise ConfigError(option, "only with --kind line (heatmaps facet over every other swept axis)")
            path = plot_sweep(
                opened,
                output,
                x=str(x) if x else None,
                y=str(y) if y else None,
                value=value,
                stat=stat.value,
                where=where,
                xscale=xscale.value if xscale else None,
                yscale=yscale.value if yscale else None,
            )
        # A figure written into OUT is recorded as lin2net's (name, size,
        # SHA-256): `sweep --overwrite` may then remove it, unchanged.
        record_owned_figure(out, path)
    _note_missing_cells(opened, "figure")
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
        trace_sweep,
        trace_trajectory,
        write_trace_table,
    )
    from lin2net.dynamics.protocol import StopRule
    from lin2net.theory.theorems import regime

    with user_errors(), _trace_options():
        if out is not None:
            check_path("OUT", out)
        for option, path in (("--output", output), ("--plot", plot_path)):
            if path is not None:
                check_output_file(option, path)
        if output is not None and output.suffix.lower() not in TABLE_SUFFIXES:
            raise ConfigError("--output", f"unknown table format {output.suffix or '(none)'!r}; use .parquet or .csv")
        if plot_path is not None:
            try:
                check_figure_path(plot_path)
            except ConfigError as exc:  # the check names -o, the option of `lin2net plot`
                raise ConfigError("--plot", exc.problem) from None
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
                config, cell = _sweep_cell(out, cell_id, index)
                result, start = trace_sweep(config, cell, index, max_steps, loss_tol)
                runs.append((index, start, result))
            info = _trace_info(config, cell, cell_id.strip())
        elif batch_size is not None:
            if eta is None:
                raise ConfigError("--eta", "missing: an SGD trace needs --eta, --batch-size and --lambda0 (or --a/--b)")
            config, cell = _sgd_cli_config(
                eta, lambda0, phi, d, seed, init, batch_size, label_noise, n, a, b, max_steps, loss_tol, max(indices)
            )
            for index in indices:
                result, start = trace_sweep(config, cell, index, max_steps, loss_tol)
                runs.append((index, start, result))
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
            # The limits a sweep config has (squares and products stay finite).
            for option, number in (("--eta", eta), ("--lambda0", lambda0), ("--phi", phi)):
                if number is not None and not abs(number) <= MAX_PARAMETER:
                    raise ConfigError(option, f"must be at most {MAX_PARAMETER:g}, got {number!r}")
            rule = StopRule(1e-10 if loss_tol is None else loss_tol, 100_000 if max_steps is None else max_steps)
            vec_a, vec_b = _floats("--a", a), _floats("--b", b)
            if (vec_a is None) != (vec_b is None):
                raise ConfigError("--a/--b", "give both --a and --b, or neither")
            if vec_a is not None and vec_b is not None:
                for option, given_value in (("--lambda0", lambda0), ("--d", d), ("--init", init)):
                    if given_value is not None:
                        raise ConfigError(option, "not used with --a/--b (the vectors fix the initialization)")
                squared_norm = math.fsum(v * v for v in (*vec_a, *vec_b) if math.isfinite(v) and abs(v) < 1e200)
                if any(abs(v) >= 1e200 for v in (*vec_a, *vec_b)) or squared_norm > MAX_PARAMETER:
                    problem = f"|a|² + |b|² must be at most {MAX_PARAMETER:g}, as in a sweep's init.explicit"
                    raise ConfigError("--a/--b", problem)
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
        if plot_path is not None and runs and runs[0][1] is None:
            from lin2net.analysis.plotting import plot_family_trace

            plot_family_trace([(index, result) for index, _, result in runs], plot_path, parameters=info)
        elif plot_path is not None:
            plot_trace([(index, result) for index, _, result in runs], plot_path, parameters=info)
    for index, start, result in runs:
        last = result.table.iloc[-1]
        if start is None:  # a model family's trajectory (θ ∈ R^D)
            stderr.print(
                (f"trajectory {index}: " if len(runs) > 1 else "")
                + f"{result.status.label} at T = {result.steps}: Q(T)/Q(0) = {last['q_ratio']:.6g}, "
                f"lambda(T) = {last['lambda']:.6g}, S(T) = {last['sharpness']:.6g}, "
                f"lambda_GF(0) = {result.lambda_gf:.6g}",
                highlight=False,
                soft_wrap=True,
            )
            continue
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


# The trace library names its parameters; the command names its options.
_TRACE_OPTIONS = {"a/b": "--a/--b", "max_steps": "--max-steps", "path": "--output"}


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
    info: dict[str, Any] = {"algorithm": "SGD" if config.user_algorithm == "sgd" else "GD"}
    if config.family != "shallow":
        info["model"] = config.family
    if cell_id:
        info["cell"] = cell_id
    info.update({"η": cell.eta, "λ(0)": cell.lambda0, "Φ": cell.phi, "d": cell.d, "init": cell.init})
    for name, label in (("depth", "N"), ("inputs", "m"), ("batch_size", "B")):
        if config.family != "shallow" and name in config.axes:
            info[label] = cell.value(name)
    if config.algorithm == "sgd":
        info.update({"B": cell.value("batch_size"), "σ": cell.value("label_noise"), "n": config.data.n})
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





@contextmanager
def _trace_options() -> Iterator[None]:
    """Re-raise the trace library's errors under the option that set the parameter."""
    try:
        yield
    except ConfigError as exc:
        if exc.key.startswith("-") or exc.key == "OUT":
            raise
        raise ConfigError(_TRACE_OPTIONS.get(exc.key, "--" + exc.key.replace("_", "-")), exc.problem) from None


def _sweep_cell(out: Path, cell_id: str, trajectory: int) -> tuple[Any, Any]:
    """(config, cell) of cell ``cell_id`` of the sweep in ``out``, checked to hold ``trajectory``."""
    from lin2net.store.opened import open_output

    opened = open_output(out)  # the config only: a trace recomputes the trajectory, it reads no shard
    config = opened.config
    cell = opened.grid.get(cell_id.strip())
    if cell is None:
        shown = printable(_clip(cell_id, 40))
        problem = f"no cell {shown!r} in the grid of {out}; list the ids with: lin2net cells {out}"
        raise ConfigError("--cell", problem)
    if not 0 <= trajectory < config.trajectories:
        problem = f"must be in 0 .. {config.trajectories - 1} (the cell's trajectories), got {trajectory}"
        raise ConfigError("--trajectory", problem)
    return config, cell


def main() -> None:
    app(prog_name="lin2net")
