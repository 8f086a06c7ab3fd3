"""Where the GD kernel's time per step goes: its lane loop with one part left out at a time.

Builds variants of the step loop of :mod:`lin2net.dynamics.gd.kernel` (a copy
of it with switches, compiled here, not cached; what a variant without a part
computes is not a row) and times each on one thread, interleaved, in CPU time
(``time.process_time``, so other jobs on the machine count less), on 10⁴
trajectories of the long workload of ``scripts/bench_threads.py`` (η = 0.001,
λ0 = 1, Φ = 1, d = 10, |ε| <= 1e-6: about 6 700 steps each). The variants:

* the kernel's loop as it is (four vector registers per lane quantity: 32
  lanes with AVX-512), and the same loop on two registers' worth (16 lanes);
* without the sharpness (its running maximum and the edge-of-stability count);
* without the double-double Q product; without its big-factor check;
* without the per-step stop test (only t < max_steps; the test at each refill
  stays, so a trajectory runs up to 15 steps past its T, and counts them);
* without Σε²; without max |ε|.

Prints the best of ``--repeats`` rates and each one's ratio to the whole loop.
``--asm`` prints instead the instructions of the step loop as compiled (the
innermost loop with the square root) and of the yardstick's (its smallest
vector loop, ``numba_lanes.py`` in a ``shared/yardstick`` folder above the
checkout), by mnemonic.
Usage: ``python3 scripts/bench_gd_parts.py [--repeats N] [--trajectories N] [--asm]``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lin2net.dynamics.gd.kernel import (  # noqa: E402
    LANES,
    STEPS_PER_REFILL,
    _eta_sharpness,
    _map_step,
    _replay_log_q,
    converged_bound,
)
from lin2net.kernels.kit import (  # noqa: E402
    claim_next,
    exact_factor,
    log_product,
    renormalize,
    running,
    stop_status,
    times_factor,
)

BIG_FACTOR = 2.0**60
LOSS_TOL, MAX_STEPS, THRESHOLD = 5e-13, 100_000, 1e6


def variant(
    lanes: int = LANES,
    sharpness: bool = True,
    q_product: bool = True,
    big_check: bool = True,
    stop_test: bool = True,
    sum_eps2: bool = True,
    max_abs: bool = True,
) -> Callable[..., None]:
    """The kernel's lane loop (one thread) with the parts switched off left out (constants at compile time)."""
    quantities = 13
    EPS, S, P, ETA, PHI, T, QHI, QLO, QEXP, SUM, MXS, MXA, EOS = (k * lanes for k in range(quantities))

    @njit(nogil=True, error_model="numpy")
    def run(counter: Any, eps0: Any, s0: Any, p0: Any, eta_rows: Any, phi_rows: Any, converged_eps: float,
            status: Any, steps: Any, out: Any) -> None:  # fmt: skip
        n = eps0.shape[0]
        lane = np.zeros(quantities * lanes)
        lane[T : T + lanes] = MAX_STEPS
        lane[QHI : QHI + lanes] = 1.0
        lane[MXS : MXS + lanes] = -np.inf
        row = np.full(lanes, -1, dtype=np.int64)
        following, claimed_end, active = 0, 0, 0
        for j in range(lanes):
            following, claimed_end = claim_next(counter, following, claimed_end, n)
            if following < n:
                lane[EPS + j], lane[S + j], lane[P + j] = eps0[following], s0[following], p0[following]
                lane[ETA + j], lane[PHI + j], lane[T + j] = eta_rows[following], phi_rows[following], 0.0
                row[j] = following
                following += 1
                active += 1
        while active > 0:
            for _ in range(STEPS_PER_REFILL):
                for j in range(lanes):
                    eps, s, p = lane[EPS + j], lane[S + j], lane[P + j]
                    eta, phi, tj = lane[ETA + j], lane[PHI + j], lane[T + j]
                    lam = 0.5 * (s + p)
                    a = abs(eps)
                    if stop_test:
                        go = (a > converged_eps) & (a <= THRESHOLD) & (abs(lam) <= THRESHOLD) & (tj < MAX_STEPS)
                    else:
                        go = tj < MAX_STEPS
                    if sharpness:
                        eta_sharp = _eta_sharpness(eps, lam, eta, phi)
                        m = lane[MXS + j]
                        lane[MXS + j] = eta_sharp if eta_sharp > m else m
                        count = lane[EOS + j]
                        lane[EOS + j] = count + 1.0 if (go & (eta_sharp > 2.0)) else count
                    if sum_eps2:
                        lane[SUM + j] += eps * eps if go else 0.0
                    if max_abs:
                        mx = lane[MXA + j]
                        lane[MXA + j] = a if (go & (a > mx)) else mx
                    u = eta * eps
                    if q_product:
                        x = u * u if go else 0.0
                        factor, error = exact_factor(x)
                        if big_check:
                            factor = math.nan if x > BIG_FACTOR else factor
                        product, lo = times_factor(lane[QHI + j], lane[QLO + j], factor, error)
                        lane[QLO + j] = lo
                        lane[QHI + j] = product
                    eps_next, s_fixed, p_fixed = _map_step(eps, s, p, lam, u, eta, phi)
                    lane[EPS + j] = eps_next if go else eps
                    lane[S + j] = s_fixed if go else s
                    lane[P + j] = p_fixed if go else p
                    lane[T + j] = tj + 1 if go else tj
            for j in range(lanes):
                lane[QHI + j], lane[QLO + j], lane[QEXP + j] = renormalize(lane[QHI + j], lane[QLO + j], lane[QEXP + j])
                lam = 0.5 * (lane[S + j] + lane[P + j])
                if row[j] < 0 or running(lane[EPS + j], lam, lane[T + j], LOSS_TOL, MAX_STEPS, THRESHOLD):
                    continue
                r = row[j]
                status[r] = stop_status(lane[EPS + j], lam, LOSS_TOL, THRESHOLD)
                steps[r] = np.int64(lane[T + j])
                hi = abs(lane[QHI + j])
                if hi != hi:
                    out[0, r] = _replay_log_q(eps0[r], s0[r], p0[r], eta_rows[r], phi_rows[r], steps[r])
                else:
                    out[0, r] = log_product(hi, abs(lane[QLO + j]), lane[QEXP + j])
                out[1, r] = lane[SUM + j] + lane[MXS + j] + lane[MXA + j] + lane[EOS + j]
                following, claimed_end = claim_next(counter, following, claimed_end, n)
                lane[QHI + j], lane[QLO + j], lane[QEXP + j] = 1.0, 0.0, 0.0
                lane[SUM + j] = lane[MXA + j] = lane[EOS + j] = 0.0
                lane[MXS + j] = -np.inf
                if following < n:
                    lane[EPS + j], lane[S + j], lane[P + j] = eps0[following], s0[following], p0[following]
                    lane[ETA + j], lane[PHI + j], lane[T + j] = eta_rows[following], phi_rows[following], 0.0
                    row[j] = following
                    following += 1
                else:
                    lane[EPS + j] = lane[S + j] = lane[P + j] = 0.0
                    row[j], lane[T + j] = -1, float(MAX_STEPS)
                    active -= 1

    return run  # type: ignore[no-any-return]


VARIANTS: dict[str, dict[str, Any]] = {
    f"the kernel's loop ({LANES} lanes)": {},
    f"the same on {LANES // 2} lanes (two registers per quantity)": {"lanes": LANES // 2},
    "without the sharpness (max eta*S, eos count)": {"sharpness": False},
    "without the double-double Q product": {"q_product": False},
    "without the Q big-factor check": {"big_check": False},
    "without the stop test (t < max_steps only)": {"stop_test": False},
    "without the sum of eps^2": {"sum_eps2": False},
    "without max abs(eps)": {"max_abs": False},
}


def loops(asm: str) -> list[list[str]]:
    """The instruction mnemonics of every loop (a label and a later jump back to it) in ``asm``."""
    lines = asm.splitlines()
    labels = {line[:-1]: k for k, line in enumerate(lines) if re.match(r"^\.LBB\d+_\d+:$", line)}
    found = []
    for k, line in enumerate(lines):
        jump = re.match(r"\s+j\w+\s+(\.LBB\d+_\d+)", line)
        if jump and jump.group(1) in labels and labels[jump.group(1)] < k:
            body = [item.split()[0] for item in lines[labels[jump.group(1)] + 1 : k + 1]]
            found.append([op for op in body if not op.startswith(".")])
    return found


def print_loop(name: str, body: list[str]) -> None:
    counts = Counter(body)
    print(
        f"{name}: {len(body)} instructions per vector and step: "
        + ", ".join(f"{n} {op}" for op, n in counts.most_common())
    )


def asm_counts(kernel: Any, count: Callable[[Any, int], float]) -> None:
    count(kernel, 64)
    ours = min((body for body in loops(kernel.inspect_asm(kernel.signatures[0])) if "vsqrtpd" in body), key=len)
    print_loop("lin2net's step loop", ours)
    yardstick = next(
        (base / "shared" / "yardstick" for base in ROOT.parents if (base / "shared/yardstick").is_dir()), None
    )
    if yardstick is None:
        return
    sys.path.insert(0, str(yardstick))
    from numba_lanes import integrate

    a, b, n = np.full((64, 1), 0.5), np.full((64, 1), 0.5), 64
    integrate(a, b, 0.001, 1.0, 1e-6, 10, np.zeros(n, np.int64), np.zeros(n, np.int8), np.zeros(n), np.zeros(n),
              64, 16, 1024)  # fmt: skip
    vector = [body for body in loops(integrate.inspect_asm(integrate.signatures[0])) if "vmulpd" in body]
    print_loop("the yardstick's step loop", min(vector, key=len))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trajectories", type=int, default=10_000)
    parser.add_argument("--asm", action="store_true", help="count the step loops' instructions instead")
    args = parser.parse_args()
    n, d = args.trajectories, 10
    rng = np.random.default_rng(0)
    z = rng.standard_normal((n, 2 * d))
    z *= np.sqrt(1.0 / (z * z).sum(axis=1, keepdims=True))
    a, b = z[:, :d], z[:, d:]
    eps0 = (a * b).sum(axis=1) - 1.0
    s0, p0 = ((a + b) ** 2).sum(axis=1), ((a - b) ** 2).sum(axis=1)
    eta, phi = np.full(n, 0.001), np.ones(n)
    converged_eps = converged_bound(LOSS_TOL)
    kernels = {name: variant(**switches) for name, switches in VARIANTS.items()}
    if args.asm:
        kernels = {name: kernels[name] for name in list(kernels)[:1]}

    def rate(kernel: Callable[..., None], count: int) -> float:
        status, steps, out = np.empty(count, np.int8), np.empty(count, np.int64), np.empty((2, count))
        started = time.process_time()
        kernel(np.zeros(2, np.int64), eps0[:count], s0[:count], p0[:count], eta[:count], phi[:count], converged_eps,
               status, steps, out)  # fmt: skip
        return float(steps.sum()) / (time.process_time() - started)

    if args.asm:
        asm_counts(next(iter(kernels.values())), rate)
        return
    for kernel in kernels.values():  # compile
        rate(kernel, 64)
    rates: dict[str, list[float]] = {name: [] for name in kernels}
    for _ in range(args.repeats):
        for name, kernel in kernels.items():
            rates[name].append(rate(kernel, n))
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[0]
    print(f"{n} trajectories, eta = 0.001 (about 6 700 steps each), one thread, CPU time, best of {args.repeats}; "
          f"load average {load}")  # fmt: skip
    whole = max(rates[next(iter(rates))])
    print("| lane loop | traj-steps/s | / whole loop |")
    print("|---|---|---|")
    for name, measured in rates.items():
        print(f"| {name} | {max(measured):.3g} | {max(measured) / whole:.2f} |")


if __name__ == "__main__":
    main()
