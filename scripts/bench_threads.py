"""The compiled GD kernel against the bare yardstick on long trajectories (issue 19 §1).

Three measurements, each against the yardstick (``numba_lanes.py`` in a
``shared/yardstick`` folder above the checkout, or ``--yardstick PATH``) on the
same workload in the same run; the yardstick's rate is its own report
(trajectory-steps over the wall time of its integration, compile and sampling
excluded):

* kernel (the default): 10⁵ trajectories, d = 10, η = 0.001, λ0 = 1, Φ = 1,
  |ε| <= 1e-6 (about 6 700 steps each), through ``integrate_compiled`` in this
  process on 1 and 2 threads, interleaved, best of ``--repeats``; the
  yardstick in subprocesses with NUMBA_NUM_THREADS=1 and 2;
* ``--cpu-time``: the same workload on one thread, both kernels in this
  process (the yardstick imported), interleaved, timed in CPU time
  (``time.process_time``): the per-thread ratio, less moved by other jobs on a
  shared machine than wall time;
* ``--cli``: one grid point of 10⁶ such trajectories through ``lin2net sweep``
  on all threads, wall time of the command (start-up, initial conditions,
  table and file included), against the yardstick on the same 10⁶ on all
  threads;
* ``--fine-grid``: the fine grid of ``scripts/bench_reads.py`` (2 Φ × 2 d ×
  25 η × 25 λ0 × 800 trajectories, loss_tol 1e-10, max_steps 20 000) through
  ``lin2net sweep``, wall time of the command, against the yardstick run on
  every grid point of it (800 trajectories a call, split into one block per
  thread; the sum of its integration times). The yardstick stops diverging
  trajectories at |ε| > 1e6, lin2net at its default 1e30: each side's rate
  counts its own steps.

Prints trajectory-steps per second and the ratios, the CPU and the load
average. Usage: ``python3 scripts/bench_threads.py [--cpu-time] [--cli] [--fine-grid] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lin2net.dynamics.gd.kernel import LANES, integrate_compiled  # noqa: E402
from lin2net.dynamics.protocol import StopRule  # noqa: E402
from lin2net.kernels.kit import available_threads  # noqa: E402
from scripts.bench_reads import FINE_GRID  # noqa: E402

N, D, ETA, LAM0, PHI = 100_000, 10, 0.001, 1.0, 1.0
CLI_N = 1_000_000
RULE = StopRule(loss_tol=5e-13, max_steps=100_000, divergence_threshold=1e6)
# The default place of the yardstick: a shared/yardstick folder in a folder above the checkout.
YARDSTICK = next(
    (base / "shared" / "yardstick" / "numba_lanes.py" for base in ROOT.parents if (base / "shared/yardstick").is_dir()),
    ROOT.parent / "shared" / "yardstick" / "numba_lanes.py",
)

LONG_CELL = f"""\
name: long
seed: 0
trajectories: {CLI_N}
grid:
  eta: [{ETA}]
  lambda0: [{LAM0}]
  phi: [{PHI}]
  d: [{D}]
init: sphere
loss_tol: {RULE.loss_tol}
max_steps: {RULE.max_steps}
divergence_threshold: {RULE.divergence_threshold}
"""

# The yardstick on every grid point of a sweep config, in one process: prints the
# summed steps and integration wall time as JSON. argv: yardstick folder, config.
YARDSTICK_GRID = """\
import json, math, sys, time
sys.path.insert(0, sys.argv[1])
import numba, numpy as np, yaml
from common import init_ab
from numba_lanes import integrate
config = yaml.safe_load(open(sys.argv[2]))
grid, n = config["grid"], config["trajectories"]
def axis(value):
    if isinstance(value, dict):
        start, stop, count = value["geomspace"]
        return list(np.geomspace(start, stop, count))
    return value if isinstance(value, list) else [value]
tol = math.sqrt(2.0 * config["loss_tol"])
block = -(-n // numba.get_num_threads())
steps = wall = 0.0
first = True
for phi in axis(grid["phi"]):
    for d in axis(grid["d"]):
        for eta in axis(grid["eta"]):
            for lam0 in axis(grid["lambda0"]):
                a, b = init_ab(n, d, lam0, 0)
                t = np.zeros(n, np.int64); status = np.zeros(n, np.int8)
                logq = np.zeros(n); lam_t = np.zeros(n)
                args = (eta, phi, tol, config["max_steps"], t, status, logq, lam_t, 64, 16, block)
                if first:  # compile outside the timed calls
                    integrate(a, b, *args)
                    first = False
                started = time.perf_counter()
                integrate(a, b, *args)
                wall += time.perf_counter() - started
                steps += float(t.sum())
print(json.dumps({"steps": steps, "wall_s": wall}))
"""


def load_average() -> str:
    with open("/proc/loadavg") as handle:
        return handle.read().split()[0]


def cpu_model() -> str:
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def sphere_start(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((n, 2 * D))
    z *= np.sqrt(LAM0 / (z * z).sum(axis=1, keepdims=True))
    return (z[:, :D] * z[:, D:]).sum(axis=1) - PHI, np.full(n, LAM0)


def kernel_rate(eps0: np.ndarray, lam0: np.ndarray, threads: int) -> float:
    started = time.perf_counter()
    results = integrate_compiled(eps0, lam0, ETA, PHI, RULE, threads=threads)
    return float(results.steps.sum()) / (time.perf_counter() - started)


def yardstick_rate(path: Path, n: int, threads: int | None) -> float:
    command = [sys.executable, str(path), "--n", str(n), "--d", str(D), "--eta", str(ETA), "--lam0", str(LAM0),
               "--phi", str(PHI), "--tol", "1e-6", "--max-steps", str(RULE.max_steps), "--seed", "0"]  # fmt: skip
    env = dict(os.environ) if threads is None else {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
    done = subprocess.run(command, cwd=path.parent, capture_output=True, text=True, check=True, env=env)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["steps_per_s"])


def sweep_rate(config_text: str, repeats: int) -> tuple[float, float, float]:
    """Best (steps/s, wall) of ``lin2net sweep`` on the config, and its steps."""
    import duckdb

    best_wall, steps = float("inf"), 0.0
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(config_text)
        # Fill numba's cache first (the first run after an edit of a kernel compiles it).
        warm = [sys.executable, "-m", "lin2net", "sweep", str(config), "-o", str(Path(tmp) / "warm"), "--quiet"]
        subprocess.run([*warm, "--set", "trajectories=64"], cwd=ROOT, check=True, capture_output=True)
        for k in range(repeats):
            out = Path(tmp) / f"out{k}"
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "lin2net", "sweep", str(config), "-o", str(out), "--quiet"],
                           cwd=ROOT, check=True, capture_output=True)  # fmt: skip
            best_wall = min(best_wall, time.perf_counter() - started)
            query = f"select sum(steps) from read_parquet('{out}/**/*.parquet')"
            steps = float(duckdb.sql(query).fetchall()[0][0])
    return steps / best_wall, best_wall, steps


def yardstick_grid_rate(path: Path, config_text: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(config_text)
        done = subprocess.run([sys.executable, "-c", YARDSTICK_GRID, str(path.parent), str(config)],
                              capture_output=True, text=True, check=True)  # fmt: skip
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["steps"] / report["wall_s"], report["steps"]


def kernel_rows(path: Path, repeats: int) -> None:
    eps0, lam0 = sphere_start(N)
    for threads in (1, 2):  # compile both kernels (or load them from the cache) first
        integrate_compiled(eps0[:640], lam0[:640], ETA, PHI, RULE, threads=threads)
    rates: dict[int, list[float]] = {1: [], 2: []}
    bare: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for threads in (1, 2):
            rates[threads].append(kernel_rate(eps0, lam0, threads))
            if path.is_file():
                bare[threads].append(yardstick_rate(path, N, threads))
    kernel = {t: max(r) for t, r in rates.items()}
    print(f"kernel, 10^5 trajectories of ~6 700 steps (best of {repeats}, interleaved with the yardstick):")
    print(f"  lin2net kernel: 1 thread {kernel[1]:.3g}, 2 threads {kernel[2]:.3g} traj-steps/s "
          f"({kernel[2] / kernel[1]:.2f}x)")  # fmt: skip
    if path.is_file():
        best = {t: max(r) for t, r in bare.items()}
        print(f"  yardstick:      1 thread {best[1]:.3g}, 2 threads {best[2]:.3g} traj-steps/s "
              f"({best[2] / best[1]:.2f}x)")  # fmt: skip
        print(f"  lin2net / yardstick: 1 thread {kernel[1] / best[1]:.2f}x, 2 threads {kernel[2] / best[2]:.2f}x")


def cpu_time_rows(path: Path, repeats: int) -> None:
    if not path.is_file():
        return
    sys.path.insert(0, str(path.parent))
    import numba
    from common import init_ab  # the yardstick's own initialization
    from numba_lanes import integrate

    numba.set_num_threads(1)
    a, b = init_ab(N, D, LAM0, 0)
    eps0, lam0 = (a * b).sum(axis=1) - PHI, np.full(N, LAM0)

    def yardstick(n: int) -> float:
        t, status, logq, lam_t = np.zeros(n, np.int64), np.zeros(n, np.int8), np.zeros(n), np.zeros(n)
        integrate(a[:n], b[:n], ETA, PHI, 1e-6, RULE.max_steps, t, status, logq, lam_t, 64, 16, 1024)
        return float(t.sum())

    def kernel(n: int) -> float:
        return float(integrate_compiled(eps0[:n], lam0[:n], ETA, PHI, RULE, threads=1).steps.sum())

    runs = {"lin2net kernel": kernel, "yardstick": yardstick}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run(640)  # compile (or load from the cache)
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.process_time()
            steps = run(N)
            rates[name].append(steps / (time.process_time() - started))
    best = {name: max(rate) for name, rate in rates.items()}
    print(f"one thread, CPU time, both in this process (best of {repeats}, interleaved):")
    print(f"  lin2net kernel {best['lin2net kernel']:.3g}, yardstick {best['yardstick']:.3g} traj-steps/s: "
          f"{best['lin2net kernel'] / best['yardstick']:.2f}x")  # fmt: skip


def cli_rows(path: Path, repeats: int) -> None:
    rate, wall, steps = sweep_rate(LONG_CELL, repeats)
    print(f"CLI, one grid point of 10^6 trajectories (eta = {ETA}), all threads (best of {repeats}):")
    print(f"  lin2net sweep: {wall:.2f} s wall for {steps:.3g} steps, start-up included: {rate:.3g} traj-steps/s")
    if path.is_file():
        bare = max(yardstick_rate(path, CLI_N, None) for _ in range(repeats))
        print(f"  yardstick:     {bare:.3g} traj-steps/s")
        print(f"  lin2net sweep / yardstick: {rate / bare:.2f}x (target >= 0.5)")


def fine_grid_rows(path: Path, repeats: int) -> None:
    rate, wall, steps = sweep_rate(FINE_GRID, repeats)
    print(f"fine grid, 2 phi x 2 d x 25 eta x 25 lambda0 x 800 trajectories, all threads (best of {repeats}):")
    print(f"  lin2net sweep: {wall:.2f} s wall for {steps:.3g} steps, start-up included: {rate:.3g} traj-steps/s")
    if path.is_file():
        bare, bare_steps = max(yardstick_grid_rate(path, FINE_GRID) for _ in range(repeats))
        print(f"  yardstick:     {bare:.3g} traj-steps/s ({bare_steps:.3g} steps, integration time only)")
        print(f"  lin2net sweep / yardstick: {rate / bare:.2f}x (target >= 0.4)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yardstick", type=Path, default=YARDSTICK, help="the bare kernel numba_lanes.py")
    parser.add_argument("--cli", action="store_true", help="one grid point of 10^6 trajectories through lin2net sweep")
    parser.add_argument("--fine-grid", action="store_true", help="the fine grid through lin2net sweep")
    parser.add_argument("--cpu-time", action="store_true", help="one thread, both kernels in this process, CPU time")
    parser.add_argument("--no-kernel", action="store_true", help="leave out the in-process kernel rows")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, {available_threads()} numba threads, {LANES} GD lanes; "
          f"load average at start {load_average()}")  # fmt: skip
    if not args.yardstick.is_file():
        print(f"yardstick not found at {args.yardstick} (--yardstick PATH): lin2net's rates only")
    if not args.no_kernel:
        kernel_rows(args.yardstick, args.repeats)
    if args.cpu_time:
        cpu_time_rows(args.yardstick, args.repeats)
    if args.cli:
        cli_rows(args.yardstick, args.repeats)
    if args.fine_grid:
        fine_grid_rows(args.yardstick, args.repeats)
    print(f"load average at the end {load_average()}")


if __name__ == "__main__":
    main()
