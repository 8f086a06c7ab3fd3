"""Read benchmarks: lin2net's read commands against the plain DuckDB query a
user writes, on the fine grid. Used by ``scripts/bench.py`` (its read rows);
run alone with ``python3 scripts/bench_reads.py [--repeats N] [--out DIR]``.

The fine grid: 2 Φ × 2 d × 25 η × 25 λ(0) cells of 800 trajectories (2·10⁶
rows), the research grid's ranges and stop rule. It is swept once (``--out``
keeps it for later runs). Then, interleaved in each repetition, each in a
fresh process, start-up included:

* the plain query, ``python -c`` with ``import duckdb`` and
  :data:`PLAIN_QUERY` over ``OUT/**/*.parquet`` (``fetchall``);
* ``lin2net summarize OUT --format csv`` (stdout to /dev/null);
* ``lin2net check OUT`` (the terminal report, to /dev/null);
* ``lin2net plot OUT -o FILE.png`` (the default view, Figure 3: median
  Q(T)/Q(0) and T over η and λ(0), one panel pair per Φ and d);
* ``lin2net summarize OUT --format csv --verify`` (every file checked in full:
  what the first read after a sweep pays, and what ``--verify`` costs);
* the statistics behind ``plot`` alone (``sweep_grid``, no drawing);

and, in one process, the CPU time (all DuckDB threads) of the summary's
query against the plain query, median of the repetitions.

Before the timed runs each command runs once, so OUT's record of verified
files (``OUT/.verified.json``) is written and the files are in the page cache
for both sides. Each figure is the median of the repetitions; the ratios
divide medians measured in this same run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

Row = tuple[str, str]

FINE_GRID = """\
name: fine
seed: 0
trajectories: 800
grid:
  eta: {geomspace: [0.01, 0.9, 25]}
  lambda0: {geomspace: [0.05, 5.0, 25]}
  phi: [0.5, 2.0]
  d: [1, 10]
init: sphere
loss_tol: 1.0e-10
max_steps: 20000
"""

PLAIN_QUERY = (
    "select eta, lambda0, phi, d, count(*), avg((status='converged')::int), quantile_cont(steps, .5), "
    "quantile_cont(q_ratio, .5), quantile_cont(sharpness_T, .5) from read_parquet('OUT/**/*.parquet') group by all"
)
PLAIN = "import sys, duckdb; duckdb.sql(sys.argv[1]).fetchall()"
PLOT_DATA = "import sys; from lin2net.analysis.plotting import sweep_grid; sweep_grid(sys.argv[1])"
QUERY_CPU = """\
import statistics, sys, time, duckdb
from lin2net.analysis.summary import _cell_keys, _summary_keys, summary_query
from lin2net.dynamics import registry
from lin2net.store.opened import open_output
opened = open_output(sys.argv[1])
keys, order, algorithm = _summary_keys(opened, None)
group, carried = _cell_keys(keys)
ours = summary_query(registry.get(algorithm).summary_values).sql(opened.sql_source(), group, order, carried)
times = {"plain": [], "summary": []}
for _ in range(int(sys.argv[3])):
    for name, sql in (("plain", sys.argv[2]), ("summary", ours)):
        started = time.process_time()
        duckdb.sql(sql).fetchall()
        times[name].append(time.process_time() - started)
print(statistics.median(times["plain"]), statistics.median(times["summary"]))
"""

BARS = {"summarize": 1.5, "check": 2.0}  # at most this many times the plain query (issue 19)
PLOT_BAR = 3.0  # seconds


def target(value: float, bound: float) -> str:
    return f"; target ≤ {bound:g}: {'met' if value <= bound else 'MISSED'}"


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def lin2net(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "lin2net", *map(str, args)]


def fine_grid(out: Path) -> Path:
    """The fine grid swept into ``out`` (kept if it is already there)."""
    config = out.parent / "fine.yaml"
    config.write_text(FINE_GRID)
    subprocess.run(lin2net("sweep", config, "-o", out, "--quiet"), cwd=ROOT, check=True)
    return out


def read_rows(repeats: int, out: Path | None = None) -> list[Row]:
    """The read rows of scripts/bench.py (see module doc)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = fine_grid(out if out is not None else Path(tmp) / "fine")
        figure = Path(tmp) / "figure3.png"
        commands = {
            "plain": [sys.executable, "-c", PLAIN, PLAIN_QUERY.replace("OUT", str(out))],
            "summarize": lin2net("summarize", out, "--format", "csv"),
            "check": lin2net("check", out),
            "plot": lin2net("plot", out, "-o", figure),
            "verify": lin2net("summarize", out, "--format", "csv", "--verify"),
            "plot data": [sys.executable, "-c", PLOT_DATA, str(out)],
        }
        for command in commands.values():  # OUT's record written, page cache warm
            wall(command)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeats):
            for name, command in commands.items():
                times[name].append(wall(command))
        done = subprocess.run(
            [sys.executable, "-c", QUERY_CPU, str(out), commands["plain"][-1], str(repeats)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        plain_cpu, summary_cpu = map(float, done.stdout.split())
    median = {name: statistics.median(values) for name, values in times.items()}
    plain = median["plain"]
    rows: list[Row] = [
        (
            "fine grid (2 Φ × 2 d × 25 η × 25 λ0 × 800 = 2·10⁶ rows): plain DuckDB query, fresh `python -c`",
            f"{plain:.2f} s",
        )
    ]
    for name in ("summarize", "check"):
        ratio = median[name] / plain
        shown = "`lin2net summarize --format csv`" if name == "summarize" else "`lin2net check`"
        rows.append(
            (f"fine grid: {shown} / plain query", f"{median[name]:.2f} s = {ratio:.2f}×{target(ratio, BARS[name])}")
        )
    rows.append(
        ("fine grid: `lin2net plot` (Figure 3 view)", f"{median['plot']:.2f} s{target(median['plot'], PLOT_BAR)}")
    )
    rows.append(
        ("fine grid: plot's statistics alone (`sweep_grid`, fresh `python -c`)", f"{median['plot data']:.2f} s")
    )
    rows.append(
        (
            "fine grid: CPU time of the summary query / the plain query (one process, DuckDB only)",
            f"{summary_cpu:.2f} s / {plain_cpu:.2f} s = {summary_cpu / plain_cpu:.2f}×",
        )
    )
    rows.append(
        (
            "fine grid: `lin2net summarize --format csv --verify` (every file checked in full) / plain query",
            f"{median['verify']:.2f} s = {median['verify'] / plain:.2f}×",
        )
    )
    return rows


def import_rows(repeats: int) -> list[Row]:
    """Start-up: the imports of ``lin2net.cli`` (``-X importtime``) and ``lin2net --help``."""
    totals = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import lin2net.cli"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        last = [line for line in done.stderr.splitlines() if line.rstrip().endswith("| lin2net.cli")][-1]
        totals.append(int(last.split("|")[1]) / 1e6)
    help_wall = statistics.median(wall(lin2net("--help")) for _ in range(repeats))
    return [
        ("imports of `lin2net.cli` (`python -X importtime`, cumulative)", f"{statistics.median(totals):.2f} s"),
        ("`lin2net --help` wall (interpreter start included)", f"{help_wall:.2f} s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="sweep the fine grid here (resumed if there)")
    args = parser.parse_args()
    rows = import_rows(args.repeats) + read_rows(args.repeats, args.out)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")


if __name__ == "__main__":
    main()
