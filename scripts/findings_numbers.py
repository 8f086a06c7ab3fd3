#!/usr/bin/env python3
"""Print the numbers of docs/findings.md that `lin2net check` does not print.

Usage (from the repository root, after the two sweeps):

    lin2net sweep configs/figure3.yaml -o runs/figure3
    lin2net sweep configs/smoke.yaml -o runs/smoke
    python3 scripts/findings_numbers.py

1. η = 1/Φ: the balanced two-step map x → x − 4x³ (x = ε/Φ), checked numerically,
   and |ε_T|·√T of the Figure 3 sweep's trajectories at η = 1 that hit max_steps.
2. Theorem 1's lower bound: its failures split by Q(0) < 2√η·Φ (the proof's
   missing hypothesis) and by λ(0) < 2√η·Φ (the one findings.md used to give).
3. docs/kernel.md: the rows in which the compiled kernel and the NumPy reference
   (integrator: reduced) differ, on the smoke grid with 50 trajectories per point.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lin2net.analysis.check import CHECK_COLUMNS, trajectory_margins  # noqa: E402
from lin2net.store.outdir import read_trajectories  # noqa: E402


def balanced_map(x: float) -> float:
    """One GD step of the balanced reduced map at η = 1/Φ, in x = ε/Φ (λ = 2(ε + Φ), Q = 0):
    x ← x(1 − 2(x + 1) + x(x + 1)) = −x − x² + x³."""
    return x * (-1.0 - x + x * x)


def equality_case(out: Path) -> None:
    x = 1e-3
    print(
        f"two-step map at eta = 1/Phi: (x - f(f(x)))/x^3 at x = {x:g}: {(x - balanced_map(balanced_map(x))) / x**3:.4f}"
    )
    table = read_trajectories(out, ["eta", "phi", "status", "steps", "eps_T"]).to_pandas()
    rows = table[(table.eta * table.phi == 1.0) & (table.status == "max_steps")]
    k = np.abs(rows.eps_T) * np.sqrt(rows.steps)
    print(
        f"{out}: {len(rows)} max_steps rows at eta = 1/Phi; |eps_T|*sqrt(T): median {k.median():.4f}, "
        f"quartiles {k.quantile(0.25):.3f}, {k.quantile(0.75):.3f}; steps to loss_tol 1e-10 at that rate: "
        f"{k.median() ** 2 / 2e-10:.3g}"
    )


def lower_bound(out: Path) -> None:
    table = read_trajectories(out, [*CHECK_COLUMNS, "q0"])
    margins = trajectory_margins(table)
    fails = margins["in_regime"] & ~margins["lower_holds"]
    eta, phi, lam0, eps0 = (table.column(c).to_numpy() for c in ("eta", "phi", "lambda0", "eps0"))
    q0 = np.abs(table.column("q0").to_numpy())
    limit = 2.0 * np.sqrt(eta) * phi
    small_q, small_lambda = q0 < limit, lam0 < limit
    in_regime = margins["in_regime"]
    lemma16 = q0 >= -2.0 * (eps0 + phi)  # Lemma 16 also needs Q(0) >= -2 a.b
    print(
        f"{out}: {int(in_regime.sum())} converged in-regime, {int(fails.sum())} lower-bound failures; "
        f"failures with Q(0) < 2 sqrt(eta) Phi: {int((fails & small_q).sum())}, with lambda(0) < 2 sqrt(eta) Phi: "
        f"{int((fails & small_lambda).sum())}; in-regime trajectories with Q(0) < 2 sqrt(eta) Phi: "
        f"{int((in_regime & small_q).sum())}; largest Q(0)/(2 sqrt(eta) Phi) of a failure: "
        f"{float((q0 / limit)[fails].max()) if fails.any() else float('nan'):.3f}; failures with Q(0) >= -2 a.b: "
        f"{int((fails & lemma16).sum())}"
    )


def kernel_differences() -> None:
    import tempfile

    from lin2net.sweep.config import parse_config, parse_yaml
    from lin2net.sweep.runner import run_sweep

    raw = parse_yaml((ROOT / "configs" / "smoke.yaml").read_text(encoding="utf-8"), source="smoke.yaml")
    raw["trajectories"] = 50
    frames = {}
    with tempfile.TemporaryDirectory() as temp:
        for integrator in ("compiled", "reduced"):
            out = Path(temp) / integrator
            run_sweep(parse_config({**raw, "integrator": integrator}), out, workers=1)
            frames[integrator] = (
                read_trajectories(out).to_pandas().sort_values(["cell_id", "trajectory"]).reset_index(drop=True)
            )
    compiled, reduced = frames["compiled"], frames["reduced"]
    for column in compiled.columns:
        if compiled[column].dtype.kind != "f":
            continue
        x, y = compiled[column].to_numpy(), reduced[column].to_numpy()
        same = (x == y) | (np.isnan(x) & np.isnan(y))
        if not same.all():
            with np.errstate(all="ignore"):
                relative = np.nanmax(np.abs(x - y)[~same] / np.abs(y)[~same])
            print(
                f"kernel vs reference: {column} differs in {int((~same).sum())} of {len(x)} rows, "
                f"at most {relative:.2g} relative"
            )


def main() -> None:
    figure3, smoke = ROOT / "runs" / "figure3", ROOT / "runs" / "smoke"
    equality_case(figure3)
    lower_bound(figure3)
    lower_bound(smoke)
    kernel_differences()


if __name__ == "__main__":
    main()
