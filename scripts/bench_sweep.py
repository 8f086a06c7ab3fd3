"""Sweep-level benchmarks: end-to-end time against the kernel's own time, files,
memory, and reading through the query engine. Used by ``scripts/bench.py``;
run alone with ``python3 scripts/bench_sweep.py [--quick]``.

Every ratio compares two things measured in the same run on the same machine:

* research grid (``configs/research.yaml``, 3 600 cells × 500): the sweep's
  time in process (``run_sweep``, numba already loaded) and the CLI's wall
  time, against the compiled kernel alone on the same trajectories (initial
  conditions prepared beforehand, one kernel call per shard);
* Figure 3 (``configs/figure3.yaml``): the same, time beyond the kernel;
* a 10⁵-cell grid of 100 trajectories: files written, time against the
  kernel, peak RSS of the CLI process;
* the smoke sweep with default options against ``--workers 1``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lin2net.dynamics.gd.cell import per_trajectory, stop_rule  # noqa: E402
from lin2net.dynamics.gd.kernel import integrate_compiled  # noqa: E402
from lin2net.dynamics.initialization import shard_initial_conditions  # noqa: E402
from lin2net.store.shards import SHARD_ROWS, form_shards  # noqa: E402
from lin2net.sweep.config import SweepConfig, load_config, parse_config  # noqa: E402
from lin2net.sweep.grid import expand_grid  # noqa: E402
from lin2net.sweep.runner import run_sweep  # noqa: E402

Row = tuple[str, str]


def target(value: float, bound: float, at_most: bool = True) -> str:
    """``; target ≤ bound: met`` (or missed), for a figure an issue sets a bar for."""
    met = value <= bound if at_most else value >= bound
    return f"; target {'≤' if at_most else '≥'} {bound:g}: {'met' if met else 'MISSED'}"


def median_time(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def kernel_time(config: SweepConfig, repeats: int) -> tuple[float, float]:
    """Median seconds of the compiled kernel alone on every trajectory of the
    grid (one call per shard, as the sweep makes them), and Σ T."""
    rule = stop_rule(config)
    n = config.trajectories
    prepared = []
    for shard in form_shards(expand_grid(config), n, SHARD_ROWS):
        initial = shard_initial_conditions(config, shard.cells)
        eta, phi = per_trajectory(shard.cells, n, "eta"), per_trajectory(shard.cells, n, "phi")
        if shard.part is not None:  # a part of a cell larger than a shard: only its trajectories
            rows = slice(*shard.part)
            initial = replace(initial, **{f.name: getattr(initial, f.name)[rows] for f in fields(initial)})
            eta, phi = eta[rows], phi[rows]
        prepared.append((initial, eta, phi))
    steps = 0.0

    def run() -> None:
        nonlocal steps
        steps = 0.0
        for initial, eta, phi in prepared:
            result = integrate_compiled(initial.eps0, initial.lam0, eta, phi, rule, s0=initial.s0, p0=initial.p0)
            steps += float(result.steps.sum())

    run()  # warm: numba's cache loaded
    return median_time(run, repeats), steps


def sweep_time(config: SweepConfig, repeats: int) -> float:
    """Median seconds of ``run_sweep`` in this process into a fresh directory."""

    def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            run_sweep(config, Path(tmp) / "run")

    return median_time(run, repeats)


def cli(*args: str | Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "lin2net", *map(str, args)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def cli_sweep_time(config_path: Path, repeats: int, *options: str) -> float:
    """Median wall seconds of ``python3 -m lin2net sweep`` into a fresh directory, start-up included."""

    def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cli("sweep", config_path, "-o", f"{tmp}/run", "--quiet", *options)

    return median_time(run, repeats)


def startup_time(repeats: int) -> float:
    """Interpreter start and the imports a sweep needs (lin2net, numba's cached kernel)."""
    code = "import lin2net.cli, lin2net.dynamics.gd.kernel, lin2net.sweep.runner"
    return median_time(lambda: subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True), repeats)


def end_to_end_rows(name: str, config_path: Path, repeats: int, bound: float) -> list[Row]:
    """Kernel alone, sweep in process and CLI wall; ``bound``: the target for the
    in-process sweep / kernel (start-up is reported apart)."""
    config = load_config(config_path)
    kernel, steps = kernel_time(config, repeats)
    in_process = sweep_time(config, repeats)
    wall = cli_sweep_time(config_path, repeats)
    cells = len(expand_grid(config))
    return [
        (
            f"{name} ({cells} cells × {config.trajectories}): kernel alone",
            f"{kernel:.2f} s ({steps / kernel:.3g} traj-steps/s)",
        ),
        (
            f"{name}: sweep in process (numba loaded) / kernel",
            f"{in_process:.2f} s = {in_process / kernel:.2f}×{target(in_process / kernel, bound)}",
        ),
        (f"{name}: `lin2net sweep` wall, start-up included / kernel", f"{wall:.2f} s = {wall / kernel:.2f}×"),
    ]


# 10⁵ grid points of 100 trajectories, with the research grid's ranges and
# stop rule, so that a trajectory costs what it costs there (about 950 steps);
# only the grid is finer.
MANY_CELLS = {
    "name": "many-cells",
    "seed": 0,
    "trajectories": 100,
    "grid": {
        "eta": {"geomspace": [0.01, 0.9, 50]},
        "lambda0": {"geomspace": [0.05, 5.0, 50]},
        "phi": {"linspace": [0.5, 2.0, 40]},
        "d": 10,
    },
    "loss_tol": 1e-10,
    "max_steps": 20000,
}

RSS_PROBE = """\
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


Measured = TypeVar("Measured")


def probed_sweep(raw: dict[str, Any], measure: Callable[[Path], Measured]) -> tuple[float, float, Measured]:
    """``lin2net sweep`` of the config ``raw`` in a fresh process and a temporary OUT:
    its wall (start-up included), its peak RSS in MiB and ``measure(OUT)``."""
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(raw))
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "lin2net", "sweep", str(path), "-o", str(out), "--quiet"]
        started = time.perf_counter()
        probe = subprocess.run(
            [sys.executable, "-c", RSS_PROBE, *command], cwd=ROOT, check=True, capture_output=True, text=True
        )
        wall = time.perf_counter() - started
        return wall, int(probe.stdout.split()[-1]) / 1024, measure(out)  # ru_maxrss: KiB on Linux


def output_bytes(out: Path) -> tuple[int, int]:
    """Bytes of every file in OUT, and of its summary files."""
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return size, sum(f.stat().st_size for f in (out / "summaries").glob("*.parquet"))


def many_cells_rows(repeats: int) -> list[Row]:
    """10⁵ cells × 100 trajectories: files, time against the kernel, peak RSS."""

    config = parse_config(MANY_CELLS)
    kernel, _ = kernel_time(config, 1)
    wall, rss, files = probed_sweep(MANY_CELLS, lambda out: len(list((out / "shards").glob("*.parquet"))))
    cells = len(expand_grid(config))
    return [
        (f"10⁵-cell grid ({cells} cells × 100): shard files", f"{files}{target(files, 100)}"),
        (
            "10⁵-cell grid: `lin2net sweep` wall / kernel",
            f"{wall:.2f} s / {kernel:.2f} s = {wall / kernel:.2f}×{target(wall / kernel, 1.3)}",
        ),
        ("10⁵-cell grid: peak RSS of the sweep process", f"{rss:.0f} MiB{target(rss, 1024)}"),
    ]


def smoke_rows(repeats: int) -> list[Row]:
    config = ROOT / "configs" / "smoke.yaml"
    default = cli_sweep_time(config, repeats)
    one = cli_sweep_time(config, repeats, "--workers", "1")
    return [
        (
            "smoke sweep wall: default options / `--workers 1`",
            f"{default:.2f} s / {one:.2f} s = {default / one:.2f}×{target(default / one, 1.0)}",
        )
    ]


def sweep_rows(quick: bool) -> list[Row]:
    repeats = 1 if quick else 3
    rows: list[Row] = []
    rows.append(("interpreter start + imports of a sweep (lin2net, numba kernel)", f"{startup_time(repeats):.2f} s"))
    research, figure3 = ROOT / "configs" / "research.yaml", ROOT / "configs" / "figure3.yaml"
    rows += end_to_end_rows("research", research, repeats, bound=1.25)
    rows += end_to_end_rows("figure3", figure3, repeats, bound=1.25)
    if not quick:
        rows += many_cells_rows(repeats)
    rows += smoke_rows(repeats)  # the read commands: scripts/bench_reads.py
    return rows


# Summary mode (keep: summary): grid points of 10⁵ trajectories each, as the
# 10⁴ × 10⁵ target has, with trajectories of about 200 steps (η·λ0 from 0.3 to
# 1.2, loss_tol 1e-4) so that 10⁷ trajectories take about 15 s of kernel CPU.
SUMMARY_TRAJECTORIES = 100_000


def summary_mode_config(cells: int, loss_tol: float = 1e-4) -> dict[str, object]:
    return {
        "name": "summary-mode",
        "seed": 0,
        "trajectories": SUMMARY_TRAJECTORIES,
        "grid": {"eta_lambda0": {"geomspace": [0.3, 1.2, cells]}, "lambda0": 1.0, "phi": 1.0, "d": 1},
        "loss_tol": loss_tol,
        "max_steps": 1000,
        "keep": "summary",
    }


SUMMARY_RUNS = ((1_000_000, 1e-4), (10_000_000, 1e-4))
"""(trajectories, loss_tol): two sizes, for the growth with N."""


def summary_cpu_row(run: tuple[int, float]) -> Row:
    """CPU seconds per trajectory of the per-cell summaries (one thread) against
    the kernel's (all threads, summed): less sensitive to other load than walls."""
    from lin2net.analysis.cell_summary import summary_table
    from lin2net.dynamics.cells import simulate_cells

    total, loss_tol = run
    config = parse_config(summary_mode_config(max(1, total // SUMMARY_TRAJECTORIES), loss_tol))
    simulate_cells(config, expand_grid(config)[:1])  # numba's cache loaded before timing
    kernel_cpu = summary_cpu = 0.0
    for shard in form_shards(expand_grid(config), config.trajectories, SHARD_ROWS):
        started = time.process_time()
        initial, results = simulate_cells(config, shard.cells)
        kernel_cpu += time.process_time() - started
        started = time.thread_time()
        summary_table(shard.cells, config.trajectories, initial, results)
        summary_cpu += time.thread_time() - started
    n = total / 1e9
    return (
        f"summary mode, {total:.0e} trajectories: CPU per trajectory, summaries / kernel (with initializations)",
        f"{summary_cpu / n:.0f} ns / {kernel_cpu / n:.0f} ns = {summary_cpu / kernel_cpu:.2f}",
    )


def summary_mode_rows(runs: tuple[tuple[int, float], ...] = SUMMARY_RUNS) -> list[Row]:
    """``lin2net sweep --keep summary`` on N trajectories (10⁵ per grid point):
    CLI wall (start-up included) against the kernel alone on the same
    trajectories, bytes written to OUT (and per 10⁴ grid points), peak RSS."""

    rows: list[Row] = []
    measured: list[tuple[float, float]] = []
    for total, loss_tol in runs:
        cells = max(1, total // SUMMARY_TRAJECTORIES)
        raw = summary_mode_config(cells, loss_tol)
        config = parse_config(raw)
        kernel, steps = kernel_time(config, 1)
        wall, rss, (size, summaries) = probed_sweep(raw, output_bytes)
        n = cells * SUMMARY_TRAJECTORIES
        name = f"summary mode, {cells} grid points × 10⁵ = {n:.0e} trajectories ({steps / n:.0f} steps each)"
        name += f", loss_tol {loss_tol:g}"
        rows += [
            (f"{name}: kernel alone", f"{kernel:.2f} s ({steps / kernel:.3g} traj-steps/s)"),
            (
                f"{name}: `lin2net sweep --keep summary` wall / kernel",
                f"{wall:.2f} s = {wall / kernel:.2f}×{target(wall / kernel, 1.3)}",
            ),
            (
                f"{name}: bytes in OUT (summaries {summaries / cells:.0f} B per grid point)",
                f"{size / 1e6:.2f} MB; at 10⁴ grid points: {summaries / cells * 1e4 / 1e6:.0f} MB"
                f"{target(summaries / cells * 1e4 / 1e6, 200)}",
            ),
            (f"{name}: peak RSS of the sweep process", f"{rss:.0f} MiB{target(rss, 1024)}"),
        ]
        measured.append((kernel, wall))
    rows.append(summary_cpu_row(runs[0]))
    if len(measured) >= 2:
        (k0, w0), (k1, w1) = measured[0], measured[-1]
        rows.append(
            (
                "summary mode: growth of the wall with N against the kernel's (start-up cancels out)",
                f"({w1:.2f} − {w0:.2f}) s / ({k1:.2f} − {k0:.2f}) s = {(w1 - w0) / (k1 - k0):.2f}×"
                f"{target((w1 - w0) / (k1 - k0), 1.3)}",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repetition, no 10⁵-cell grid")
    parser.add_argument(
        "--summary-mode", action="store_true", help="only the keep: summary runs (10⁶ and 10⁷ trajectories, ~60 s CPU)"
    )
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = summary_mode_rows() if args.summary_mode else sweep_rows(args.quick)
    print(f"load average at start {load:.2f}; threads {np.__name__} {os.cpu_count()} cores")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")


if __name__ == "__main__":
    main()
