"""SGD kernel against the GD kernel, measured in the same run; prints one Markdown table.

Workload W1-like: trajectories of the W1 cell of scripts/bench.py (d = 10,
η = 0.1, λ0 = 1, Φ = 1, sphere init), stopped at |ε| <= 1e-6 (loss_tol =
5e-13). GD runs ``lin2net.dynamics.gd.kernel.integrate_compiled``; SGD runs
``lin2net.dynamics.sgd.kernel.integrate_sgd_compiled`` on the same starts (ε0, S0, P0) for
several data sets and batch sizes, random numbers included. A noisy SGD
trajectory never converges, so the label-noise rows use max_steps = 2000
(rates are per executed step either way). Each figure is trajectory-steps per
second (Σ T / wall time, median of ``--repeats``), and the GD/SGD ratio of
the rates (median over alternating GD, SGD pairs: robust to a machine whose load
drifts during the run). Below the table: the cost of one more batch element, in
GD steps.

Usage: ``python3 scripts/bench_sgd.py`` (about a minute), ``--trajectories``,
``--threads`` (default: all numba threads).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lin2net.dynamics.gd.kernel import available_threads, integrate_compiled  # noqa: E402
from lin2net.dynamics.gd.reference import StopRule  # noqa: E402
from lin2net.dynamics.initialization import initial_conditions  # noqa: E402
from lin2net.dynamics.sgd.data import DataSet, DataSpec, build_data  # noqa: E402
from lin2net.dynamics.sgd.kernel import integrate_sgd_compiled  # noqa: E402
from lin2net.dynamics.sgd.reference import SGDParameters  # noqa: E402
from lin2net.kernels.counter_rng import trajectory_keys  # noqa: E402
from lin2net.sweep.config import parse_config  # noqa: E402
from lin2net.sweep.grid import expand_grid  # noqa: E402

ETA, LAMBDA0, PHI, D = 0.1, 1.0, 1.0, 10
LOSS_TOL = 5e-13
# (label, data, batch size, label noise, sampling, max_steps)
CASES = (
    ("x ones, B = 1", DataSpec(n=1000, x="ones"), 1, 0.0, "without_replacement", 100_000),
    ("gaussian x, B = 1", DataSpec(n=1000), 1, 0.0, "without_replacement", 100_000),
    ("gaussian x, B = 8", DataSpec(n=1000), 8, 0.0, "without_replacement", 100_000),
    ("gaussian x, B = 8, with replacement", DataSpec(n=1000), 8, 0.0, "with_replacement", 100_000),
    ("gaussian x, B = 32", DataSpec(n=1000), 32, 0.0, "without_replacement", 100_000),
    ("gaussian x, B = n (full batch)", DataSpec(n=1000), 1000, 0.0, "without_replacement", 100_000),
    ("gaussian x, B = 1, label noise 0.1", DataSpec(n=1000), 1, 0.1, "without_replacement", 2_000),
    ("gaussian x, B = 8, label noise 0.1", DataSpec(n=1000), 8, 0.1, "without_replacement", 2_000),
)


def paired_rates(gd: Callable[[], int], sgd: Callable[[], int], repeats: int) -> tuple[float, float, float]:
    """Trajectory-steps per second of GD and SGD (medians), and the median of the
    per-pair ratios: the two runs alternate, so a load that drifts during the
    benchmark (a shared machine) hits both alike."""
    gd_rates, sgd_rates, ratios = [], [], []
    for _ in range(repeats):
        rates = []
        for run in (gd, sgd):
            started = time.perf_counter()
            total = run()
            rates.append(total / (time.perf_counter() - started))
        gd_rates.append(rates[0])
        sgd_rates.append(rates[1])
        ratios.append(rates[0] / rates[1])
    return statistics.median(gd_rates), statistics.median(sgd_rates), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=available_threads())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = parse_config(
        {"trajectories": args.trajectories, "grid": {"eta": ETA, "lambda0": LAMBDA0, "phi": PHI, "d": D}}
    )
    initial = initial_conditions(config, expand_grid(config)[0])
    n = initial.eps0.shape[0]
    keys = trajectory_keys(0, np.arange(n, dtype=np.int64))

    def gd(max_steps: int) -> int:
        rule = StopRule(LOSS_TOL, max_steps)
        results = integrate_compiled(
            initial.eps0, initial.lam0, ETA, PHI, rule, threads=args.threads, s0=initial.s0, p0=initial.p0
        )
        return int(results.steps.sum())

    gd(10)  # compile (or load the cache) outside the timing
    rows = []
    for label, spec, size, noise, sampling, max_steps in CASES:
        data = build_data(spec, 0)
        params = SGDParameters.broadcast(n, ETA, PHI, size, noise, keys)
        rule = StopRule(LOSS_TOL, max_steps)

        def sgd(
            rule: StopRule = rule, params: SGDParameters = params, sampling: str = sampling, data: DataSet = data
        ) -> int:
            results = integrate_sgd_compiled(
                initial.eps0,
                initial.lam0,
                params,
                data,
                sampling,
                rule,
                window=min(1000, rule.max_steps),
                threads=args.threads,
                s0=initial.s0,
                p0=initial.p0,
            )
            return int(results.steps.sum())

        def gd_run(max_steps: int = max_steps) -> int:
            return gd(max_steps)

        sgd()  # compile outside the timing
        rows.append((label, *paired_rates(gd_run, sgd, args.repeats)))
    print(f"{n} trajectories, d = {D}, η = {ETA}, λ0 = {LAMBDA0}, Φ = {PHI}, {args.threads} thread(s)\n")
    print("| SGD case | GD steps/s | SGD steps/s | SGD time per step / GD's |")
    print("|---|---|---|---|")
    for label, gd_rate, sgd_rate, ratio in rows:
        print(f"| {label} | {gd_rate:.3g} | {sgd_rate:.3g} | {ratio:.2f}x |")
    ratios = {label: row_ratio for label, _, _, row_ratio in rows}
    per_element = (ratios["gaussian x, B = 32"] - ratios["gaussian x, B = 8"]) / 24
    print(f"\neach further batch element (B = 8 → 32, without replacement) costs {per_element:.2f} GD steps")


if __name__ == "__main__":
    main()
