"""Benchmark of lin2net's integrators; prints one Markdown table.

Measured in one run, each a median over repetitions:

* W1 (stable): 100 000 trajectories, d = 10, η = 0.1, λ0 = 1, Φ = 1, sphere
  init, stop at |ε| <= 1e-6 (loss_tol = 5e-13), max_steps = 1e5;
* W2 (edge of stability): 20 000 trajectories, η = 0.95, λ0 = 2, otherwise as W1;
  on each, trajectory-steps per second (steps actually executed, Σ T) of
  the compiled kernel (all threads and one), of the batched NumPy full-vector
  integrator (FullState) and the batched NumPy reduced reference, and of a
  naive per-trajectory Python loop on a small subsample;
* an external bare SIMD-lanes kernel of the same map without diagnostics (the
  "yardstick", not part of this repository: ``--yardstick PATH`` names it, and
  a ``shared/yardstick/numba_lanes.py`` in a folder above the checkout is found
  by default; skipped with a note when absent) on the same workloads in
  subprocesses, and the ratio compiled / yardstick (best and median of the
  repetitions, all threads, and one thread each); the CPU model and its vector
  width (AVX-512 / AVX2 from /proc/cpuinfo, and the width numba compiles for:
  ``NUMBA_CPU_NAME=haswell`` measures an AVX2 build on an AVX-512 machine, for
  both the kernel and the yardstick);
* the sweep, file and memory rows of ``scripts/bench_sweep.py`` (end to end
  against the kernel on the research grid and Figure 3, a 10⁵-cell grid, the
  smoke sweep with default options against ``--workers 1``) and CLI start-up;
* the read rows of ``scripts/bench_reads.py``: on the fine grid (2·10⁶ rows),
  ``lin2net summarize --format csv`` and ``lin2net check`` against the plain
  DuckDB query a user writes, and ``lin2net plot`` of Figure 3, each in a
  fresh process, start-up included, with the bars of issue 19; the imports of
  ``lin2net.cli``;
* peak RSS of one cell of 10⁶ trajectories at d = 100, through the CLI in a
  fresh subprocess;
* compile time: first call in a fresh process with an empty numba cache
  (cold) and again with that cache filled (warm);
* the SGD kernel against the GD kernel (``scripts/bench_sgd.py``).

Usage: ``python3 scripts/bench.py`` (a few minutes), ``--quick`` (under a minute),
``--kernel-only`` (W1/W2 and the yardstick only), ``--reads-only`` (the read
rows only). On a shared machine the
timings vary from run to run: compare the ratios, which are measured in the
same run, and repeat.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lin2net.dynamics.gd.cell import stop_rule  # noqa: E402
from lin2net.dynamics.gd.kernel import LANES, available_threads, integrate_compiled, vector_width  # noqa: E402
from lin2net.dynamics.gd.reference import FullState, ReducedState, StopRule, integrate  # noqa: E402
from lin2net.dynamics.initialization import initial_blocks, initial_conditions  # noqa: E402
from lin2net.sweep.config import SweepConfig, parse_config  # noqa: E402
from lin2net.sweep.grid import expand_grid  # noqa: E402


@dataclass(frozen=True)
class Workload:
    name: str
    trajectories: int
    eta: float
    lambda0: float


WORKLOADS = (Workload("W1 stable", 100_000, 0.1, 1.0), Workload("W2 edge of stability", 20_000, 0.95, 2.0))
LOSS_TOL = 5e-13  # |ε| <= 1e-6
MAX_STEPS = 100_000
# Default place of the external yardstick: a shared/yardstick folder in a folder
# above the checkout (a git worktree one level further down finds it one level up).
YARDSTICK = next(
    (
        base / "shared" / "yardstick" / "numba_lanes.py"
        for base in ROOT.parents
        if (base / "shared" / "yardstick").is_dir()
    ),
    ROOT.parent / "shared" / "yardstick" / "numba_lanes.py",
)


def run_times(run: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def median_time(run: Callable[[], object], repeats: int) -> float:
    return statistics.median(run_times(run, repeats))


def yardstick_rates(workload: Workload, repeats: int, threads: int | None = None) -> list[float]:
    """Trajectory-steps per second of the bare yardstick kernel, one subprocess per repetition."""
    command = [sys.executable, str(YARDSTICK), "--n", str(workload.trajectories), "--d", "10"]
    command += ["--eta", str(workload.eta), "--lam0", str(workload.lambda0), "--phi", "1.0", "--tol", "1e-6"]
    command += ["--max-steps", str(MAX_STEPS), "--seed", "0"]
    env = dict(os.environ) if threads is None else {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
    rates = []
    for _ in range(repeats):
        done = subprocess.run(command, cwd=YARDSTICK.parent, env=env, check=True, capture_output=True, text=True)
        rates.append(float(json.loads(done.stdout.splitlines()[-1])["steps_per_s"]))
    return rates


def python_loop(eps0: np.ndarray, s0: np.ndarray, p0: np.ndarray, eta: float, phi: float, rule: StopRule) -> int:
    """The reference semantics, one trajectory and one step at a time in plain Python.
    Returns the steps executed."""
    total = 0
    for e, s, p in zip(eps0.tolist(), s0.tolist(), p0.tolist(), strict=True):
        log_q = sum_eps2 = max_abs_eps = 0.0
        max_eta_sharp = -math.inf
        eos = t = 0
        while True:
            lam = 0.5 * (s + p)
            disc = lam * lam + 8.0 * e * (e + phi) + 4.0 * e * e
            eta_sharp = eta * 0.5 * (lam + math.sqrt(max(disc, 0.0)))
            max_eta_sharp = max(max_eta_sharp, eta_sharp)
            if 0.5 * e * e <= rule.loss_tol:
                break
            if not (abs(e) <= rule.divergence_threshold and abs(lam) <= rule.divergence_threshold):
                break
            if t >= rule.max_steps:
                break
            eos += eta_sharp > 2.0
            u = eta * e
            x = u * u
            log_q += math.log1p(-x) if x < 1.0 else (math.log(x - 1.0) if x > 1.0 else -math.inf)
            sum_eps2 += e * e
            max_abs_eps = max(max_abs_eps, abs(e))
            s, p = s + s * (u * (u - 2.0)), p + p * (u * (u + 2.0))
            e = e + e * (u * (eta * (e + phi)) - eta * lam)
            if 4.0 * abs(e) >= max(s, p):
                e = 0.25 * (s - p) - phi
            elif s >= p:
                s = p + 4.0 * (e + phi)
            else:
                p = s - 4.0 * (e + phi)
            t += 1
        total += t
    return total


def workload_config(workload: Workload) -> SweepConfig:
    return parse_config(
        {
            "trajectories": workload.trajectories,
            "grid": {"eta": workload.eta, "lambda0": workload.lambda0, "phi": 1.0, "d": 10},
            "init": "sphere",
            "loss_tol": LOSS_TOL,
            "max_steps": MAX_STEPS,
        }
    )


def bench_workload(
    workload: Workload, repeats: int, numpy_share: float, python_trajectories: int, kernel_only: bool = False
) -> dict[str, float]:
    config = workload_config(workload)
    cell = expand_grid(config)[0]
    rule = stop_rule(config)
    initial = initial_conditions(config, cell)
    phi = cell.phi
    rates: dict[str, float] = {}

    def compiled(threads: int | None = None) -> object:
        return integrate_compiled(
            initial.eps0, initial.lam0, cell.eta, phi, rule, threads, s0=initial.s0, p0=initial.p0
        )

    result = integrate_compiled(initial.eps0, initial.lam0, cell.eta, phi, rule, s0=initial.s0, p0=initial.p0)  # warm
    steps = float(result.steps.sum())
    all_threads = [steps / seconds for seconds in run_times(compiled, repeats)]
    one_thread = [steps / seconds for seconds in run_times(lambda: compiled(1), repeats)]
    rates["compiled"], rates["compiled_best"] = statistics.median(all_threads), max(all_threads)
    rates["compiled_1"], rates["compiled_1_best"] = statistics.median(one_thread), max(one_thread)
    if YARDSTICK.exists():
        yard, yard_1 = yardstick_rates(workload, repeats), yardstick_rates(workload, repeats, threads=1)
        rates["yardstick"], rates["yardstick_best"] = statistics.median(yard), max(yard)
        rates["yardstick_1"], rates["yardstick_1_best"] = statistics.median(yard_1), max(yard_1)
    if kernel_only:
        return rates

    n_numpy = max(1, int(workload.trajectories * numpy_share))
    block = next(initial_blocks(config, cell))
    a, b = block.a[:n_numpy], block.b[:n_numpy]
    full_steps = float(integrate(FullState(a, b), cell.eta, phi, rule).steps.sum())
    rates["numpy_full"] = full_steps / median_time(lambda: integrate(FullState(a, b), cell.eta, phi, rule), repeats)
    eps0, lam0, s0, p0 = initial.eps0[:n_numpy], initial.lam0[:n_numpy], initial.s0[:n_numpy], initial.p0[:n_numpy]
    reduced_steps = float(integrate(ReducedState(eps0, lam0, s0, p0), cell.eta, phi, rule).steps.sum())
    rates["numpy_reduced"] = reduced_steps / median_time(
        lambda: integrate(ReducedState(eps0, lam0, s0, p0), cell.eta, phi, rule), repeats
    )

    eps_py, s_py, p_py = (column[:python_trajectories] for column in (initial.eps0, initial.s0, initial.p0))
    python_steps = python_loop(eps_py, s_py, p_py, cell.eta, phi, rule)
    rates["python"] = python_steps / median_time(lambda: python_loop(eps_py, s_py, p_py, cell.eta, phi, rule), repeats)
    rates["n_compiled"], rates["n_numpy"], rates["n_python"] = workload.trajectories, n_numpy, python_trajectories
    rates["mean_steps"] = steps / workload.trajectories
    return rates


def cli_startup_time(repeats: int) -> float:
    """Median wall seconds of ``python3 -m lin2net --help``: interpreter and CLI imports."""
    command = [sys.executable, "-m", "lin2net", "--help"]
    return median_time(lambda: subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL), repeats)


MEMORY_CONFIG = """\
name: memory
trajectories: 1000000
grid: {eta: 0.1, lambda0: 1.0, phi: 1.0, d: 100}
init: sphere
loss_tol: 5.0e-13
"""

RSS_PROBE = """\
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_mib() -> float:
    """Peak RSS of ``lin2net sweep`` on one 10⁶ × d=100 cell; the probe is a fresh
    process so RUSAGE_CHILDREN sees that sweep only."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "memory.yaml"
        config.write_text(MEMORY_CONFIG)
        sweep = [sys.executable, "-m", "lin2net", "sweep", str(config), "-o", f"{tmp}/run", "--quiet"]
        probe = subprocess.run(
            [sys.executable, "-c", RSS_PROBE, *sweep], cwd=ROOT, check=True, capture_output=True, text=True
        )
        return int(probe.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


FIRST_CALL = """\
import time
started = time.perf_counter()
import numpy as np
from lin2net.dynamics.gd.kernel import integrate_compiled
from lin2net.dynamics.gd.reference import StopRule
integrate_compiled(np.full(64, -0.5), np.ones(64), 0.1, 1.0, StopRule(1e-10, 100))
print(time.perf_counter() - started)
"""


def compile_times() -> tuple[float, float]:
    """Seconds to import and make the first call, with an empty numba cache, then with it filled."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        times = []
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, "-c", FIRST_CALL], cwd=ROOT, env=env, check=True, capture_output=True, text=True
            )
            times.append(float(done.stdout.split()[-1]))
        return times[0], times[1]


def _rate(rates: dict[str, float], key: str) -> str:
    return f"{rates[key]:.3g} ({rates[key + '_best']:.3g})"


def _ratio(rates: dict[str, float], kernel: str, yardstick: str) -> str:
    median = rates[kernel] / rates[yardstick]
    best = rates[kernel + "_best"] / rates[yardstick + "_best"]
    verdict = "met" if median >= 0.7 else "MISSED"
    return f"{median:.2f} (best/best {best:.2f}); target ≥ 0.7: {verdict}"


def cpu_vector_extension() -> str:
    """The widest x86 vector extension in /proc/cpuinfo's flags: AVX-512, AVX2 or neither."""
    try:
        flags = next(
            line.split(":", 1)[1].split()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        return "vector width unknown"
    if "avx512f" in flags:
        return "AVX-512"
    return "AVX2" if "avx2" in flags else "no AVX2"


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and smaller baseline subsamples")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions per timing (default 5, quick 3)")
    parser.add_argument("--skip-sweep", action="store_true", help="skip the sweep, file and reading benchmarks")
    parser.add_argument("--skip-sgd", action="store_true", help="skip the SGD kernel against the GD kernel")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 10⁶-trajectory memory probe")
    parser.add_argument("--kernel-only", action="store_true", help="W1/W2 compiled kernel and yardstick only")
    parser.add_argument("--skip-reads", action="store_true", help="skip the read commands against the plain query")
    parser.add_argument("--reads-only", action="store_true", help="the read commands against the plain query only")
    parser.add_argument("--reads-out", type=Path, default=None, help="keep the fine grid of the read rows here")
    parser.add_argument("--yardstick", type=Path, default=None, help="the external bare kernel numba_lanes.py")
    args = parser.parse_args()
    if args.yardstick is not None:
        global YARDSTICK
        YARDSTICK = args.yardstick
    repeats = args.repeats or (3 if args.quick else 5)
    numpy_share = 0.1 if args.quick else 1.0
    python_trajectories = 50 if args.quick else 200

    load = os.getloadavg()[0]
    rows: list[tuple[str, str]] = []
    if args.reads_only:
        args.skip_sweep = args.skip_memory = args.skip_sgd = True
    for workload in WORKLOADS if not args.reads_only else ():
        r = bench_workload(workload, repeats, numpy_share, python_trajectories, args.kernel_only)
        tag = workload.name.split()[0]
        rows += [
            (f"{tag}: compiled, {available_threads()} threads [traj-steps/s], median (best)", _rate(r, "compiled")),
            (f"{tag}: compiled, 1 thread [traj-steps/s], median (best)", _rate(r, "compiled_1")),
        ]
        if "yardstick" in r:
            rows += [
                (f"{tag}: bare yardstick, {available_threads()} threads [traj-steps/s]", _rate(r, "yardstick")),
                (f"{tag}: bare yardstick, 1 thread [traj-steps/s]", _rate(r, "yardstick_1")),
                (f"{tag}: compiled / yardstick, {available_threads()} threads", _ratio(r, "compiled", "yardstick")),
                (f"{tag}: compiled / yardstick, 1 thread", _ratio(r, "compiled_1", "yardstick_1")),
            ]
        else:
            rows.append((f"{tag}: bare yardstick", f"skipped: {YARDSTICK} not found"))
        if args.kernel_only:
            continue
        rows += [
            (
                f"{tag}: trajectories compiled / NumPy / Python loop (mean T)",
                f"{r['n_compiled']:.0f} / {r['n_numpy']:.0f} / {r['n_python']:.0f} ({r['mean_steps']:.0f} steps)",
            ),
            (f"{tag}: NumPy batched full-vector (FullState) [traj-steps/s]", f"{r['numpy_full']:.3g}"),
            (f"{tag}: NumPy batched reduced (reference) [traj-steps/s]", f"{r['numpy_reduced']:.3g}"),
            (f"{tag}: Python per-trajectory loop [traj-steps/s]", f"{r['python']:.3g}"),
            (f"{tag}: compiled / NumPy full-vector", f"{r['compiled'] / r['numpy_full']:.0f}×"),
            (f"{tag}: compiled / NumPy reduced", f"{r['compiled'] / r['numpy_reduced']:.0f}×"),
            (f"{tag}: compiled / Python loop", f"{r['compiled'] / r['python']:.0f}×"),
        ]
    if args.kernel_only:
        args.skip_sweep = args.skip_memory = True
    if not args.skip_sweep:
        from scripts.bench_sweep import sweep_rows

        rows += sweep_rows(args.quick)
        rows.append(("CLI start-up, `python3 -m lin2net --help` (no numba)", f"{cli_startup_time(repeats):.2f} s"))
    if not args.skip_reads and not args.kernel_only:
        from scripts.bench_reads import import_rows, read_rows

        rows += import_rows(repeats) + read_rows(repeats, args.reads_out)
    if not args.skip_memory:
        rows.append(("peak RSS, one cell of 10⁶ trajectories at d = 100 (CLI sweep)", f"{peak_rss_mib():.0f} MiB"))
    if not args.kernel_only and not args.reads_only:
        cold, warm = compile_times()
        rows += [
            ("import + first call, empty numba cache (compile)", f"{cold:.2f} s"),
            ("import + first call, cache filled (load)", f"{warm:.2f} s"),
        ]

    target = f", NUMBA_CPU_NAME={os.environ['NUMBA_CPU_NAME']}" if "NUMBA_CPU_NAME" in os.environ else ""
    print(
        f"lin2net benchmark: {cpu_model()} ({cpu_vector_extension()}), kernel compiled for {vector_width()}-bit "
        f"vectors ({LANES} lanes{target}), "
        f"{os.cpu_count()} cores, numba threads {available_threads()}, "
        f"Python {platform.python_version()}, NumPy {np.__version__}; load average at start {load:.2f}; "
        f"medians of {repeats} repetitions\n"
    )
    width = max(len(name) for name, _ in rows)
    print(f"| {'measurement':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    if not args.skip_sgd and not args.kernel_only:
        # The SGD kernel against the GD kernel, measured in this same run by its own script.
        command = [
            sys.executable,
            str(ROOT / "scripts" / "bench_sgd.py"),
            *(["--trajectories", "5000"] if args.quick else []),
        ]
        print("\nSGD kernel against the GD kernel (`python3 scripts/bench_sgd.py`, same run):\n")
        print(subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout)


if __name__ == "__main__":
    main()
