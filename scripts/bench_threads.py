"""Thread scaling of the compiled GD kernel against the bare yardstick (issue 19 §1).

One long-trajectory workload, 10⁵ trajectories at d = 10, η = 0.001, λ0 = 1,
Φ = 1, |ε| <= 1e-6 (about 6 700 steps each), run by lin2net's kernel
(``integrate_compiled``, in this process) on 1 and 2 threads, interleaved, and
by the yardstick (``../shared/yardstick/numba_lanes.py`` by default, or
``--yardstick PATH``) in subprocesses with NUMBA_NUM_THREADS=1 and 2. Prints
trajectory-steps per second and the ratios. Usage: ``python3 scripts/bench_threads.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lin2net.dynamics.gd.kernel import integrate_compiled  # noqa: E402
from lin2net.dynamics.protocol import StopRule  # noqa: E402
from lin2net.kernels.kit import LANES  # noqa: E402

N, D, ETA, LAM0, PHI = 100_000, 10, 0.001, 1.0, 1.0
RULE = StopRule(loss_tol=5e-13, max_steps=100_000, divergence_threshold=1e6)


def kernel_rate(eps0: np.ndarray, lam0: np.ndarray, threads: int) -> float:
    started = time.perf_counter()
    results = integrate_compiled(eps0, lam0, ETA, PHI, RULE, threads=threads)
    return float(results.steps.sum()) / (time.perf_counter() - started)


def yardstick_rate(path: Path, threads: int) -> float:
    command = [sys.executable, str(path), "--n", str(N), "--d", str(D), "--eta", str(ETA), "--lam0", str(LAM0),
               "--phi", str(PHI), "--tol", "1e-6", "--max-steps", "100000", "--seed", "0"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True,
                          env={**os.environ, "NUMBA_NUM_THREADS": str(threads)})  # fmt: skip
    return float(json.loads(done.stdout.strip().splitlines()[-1])["steps_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yardstick", type=Path, default=ROOT.parent / "shared" / "yardstick" / "numba_lanes.py")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    z = rng.standard_normal((N, 2 * D))
    z *= np.sqrt(LAM0 / (z * z).sum(axis=1, keepdims=True))
    eps0 = (z[:, :D] * z[:, D:]).sum(axis=1) - PHI
    lam0 = np.full(N, LAM0)
    for threads in (1, 2):  # compile both kernels (or load them from the cache) first
        integrate_compiled(eps0[:640], lam0[:640], ETA, PHI, RULE, threads=threads)
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(2):
        for threads in (1, 2):
            rates[threads].append(kernel_rate(eps0, lam0, threads))
    kernel = {t: max(r) for t, r in rates.items()}
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[0]
    print(f"CPU: {os.cpu_count()} cores, {LANES} lanes; load average at start {load}; best of 2 runs")
    print(f"lin2net kernel: 1 thread {kernel[1]:.3g}, 2 threads {kernel[2]:.3g} traj-steps/s "
          f"({kernel[2] / kernel[1]:.2f}x)")  # fmt: skip
    if args.yardstick.is_file():
        bare = {t: yardstick_rate(args.yardstick, t) for t in (1, 2)}
        ratio = bare[2] / bare[1]
        print(f"yardstick:      1 thread {bare[1]:.3g}, 2 threads {bare[2]:.3g} traj-steps/s ({ratio:.2f}x)")
        print(f"lin2net / yardstick: 1 thread {kernel[1] / bare[1]:.2f}x, 2 threads {kernel[2] / bare[2]:.2f}x")
    else:
        print(f"yardstick not found at {args.yardstick} (--yardstick PATH)")


if __name__ == "__main__":
    main()
