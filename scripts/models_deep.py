"""The deep family's science (docs/models.md, "The deep family"): sweeps, numbers and figures.

    python scripts/models_deep.py            # writes docs/figures/deep_*.png, prints every number

The sweeps are ``lin2net sweep`` runs (through :func:`lin2net.run`, the same
code path; the config of each is printed), with ``model: {family: deep}``:

* SWEEP: depth ∈ {2, 3, 4} × d ∈ {1, 2} × η ∈ geomspace(0.02, 1.5, 12) ×
  λ(0) ∈ {0.5, 2, 5}, Φ = 1, 12 sphere starts each, loss_tol 1e-10, max_steps 3000.

From its rows: (1) sharpness_T / lambda_gf of converged runs (does GD end
flatter than gradient flow?), (2) q_ratio against η·λ(0) (does GD shrink the
imbalance?), (3) the converged fraction against η·λ_GF(0) (where does
convergence stop?), and the depth-2 theorems' statements measured at depth 3–4.

The Kreisler figure follows single GD trajectories (lin2net.dynamics.deep.reference)
and evaluates λ_GF(θ_t) at every state (exact root find for d = 1, the path ODE
for d = 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import lin2net  # noqa: E402
from lin2net.dynamics.deep.model import DeepModel  # noqa: E402
from lin2net.dynamics.deep.reference import trajectory  # noqa: E402
from lin2net.dynamics.protocol import StopRule  # noqa: E402

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"
DEPTHS = (2, 3, 4)
WIDTHS = (1, 2)
SWEEP = {
    "model": {"family": "deep"},
    "grid": {
        "eta": {"geomspace": [0.02, 1.5, 12]},
        "lambda0": [0.5, 2.0, 5.0],
        "phi": 1.0,
        "d": list(WIDTHS),
        "depth": list(DEPTHS),
    },
    "init": "sphere",
    "trajectories": 12,
    "seed": 0,
    "loss_tol": 1e-10,
    "max_steps": 3000,
}
KREISLER_RATIOS = (0.5, 1.5, 1.95, 2.2, 2.6)


def sweep_rows() -> pd.DataFrame:
    print("config:", json.dumps(SWEEP))
    rows: pd.DataFrame = lin2net.run(SWEEP).to_pandas()
    rows["eta_lgf"] = rows["eta"] * rows["lambda_gf"]
    rows["eta_lam0"] = rows["eta"] * rows["lambda_init"]
    rows["flat"] = rows["sharpness_T"] / rows["lambda_gf"]
    return rows


def theorem1(rows: pd.DataFrame) -> pd.DataFrame:
    """The depth-2 Theorem 1 (docs/math.md §6) evaluated as stated on every row:
    regime η < min{1/(2|ε0|), 2/√(λ0² + 4Φ²)}, bounds exp(−√η ε0²/Φ) < Q(∞)/Q(0) < exp(−η² Σ ε_t²)."""
    phi = rows["phi"]
    regime = rows["eta"] < np.minimum(1 / (2 * rows["eps0"].abs()), 2 / np.sqrt(rows["lambda_init"] ** 2 + 4 * phi**2))
    lower = np.exp(-np.sqrt(rows["eta"]) * rows["eps0"] ** 2 / phi)
    upper = np.exp(-(rows["eta"] ** 2) * rows["sum_eps2"])
    ok = rows["status"] == "converged"
    out = pd.DataFrame(
        {
            "regime": regime & ok,
            "lower_holds": lower < rows["q_ratio"],
            "upper_holds": rows["q_ratio"] < upper,
        }
    )
    return out


def science_numbers(rows: pd.DataFrame) -> dict[str, object]:
    numbers: dict[str, object] = {}
    thm = theorem1(rows)
    for (depth, d), group in rows.groupby(["depth", "d"]):
        key = f"depth={depth},d={d}"
        conv = group[group["status"] == "converged"]
        eta_s_t = conv["eta"] * conv["sharpness_T"]
        t1 = thm.loc[group.index]
        in_regime = t1[t1["regime"]]
        below = group[group["eta_lgf"] < 2]
        above = group[group["eta_lgf"] >= 2]
        bins = np.array([0, 0.5, 1, 1.5, 2, 2.5, 3, 4, 1e9])
        conv_by_bin = (
            group.assign(bin=pd.cut(group["eta_lgf"], bins)).groupby("bin", observed=True)["status"]
            .apply(lambda s: round(float((s == "converged").mean()), 3)).to_dict()
        )
        numbers[key] = {
            "runs": len(group),
            "converged": len(conv),
            # (1) flatter than GF
            "conv_flatter_frac": round(float((conv["flat"] < 1).mean()), 4),
            "conv_flat_le_1e-4_frac": round(float((conv["flat"] <= 1 + 1e-4).mean()), 4),
            "flat_median_below2": round(float(conv[conv["eta_lgf"] < 2]["flat"].median()), 4),
            "flat_min": round(float(conv["flat"].min()), 4),
            "flat_median_above2": round(float(conv[conv["eta_lgf"] >= 2]["flat"].median()), 4)
            if (conv["eta_lgf"] >= 2).any()
            else None,
            "eta_S_T_max_conv": round(float((conv["eta"] * conv["sharpness_T"]).max()), 4),
            "eta_S_T_median_conv_above2": round(float(eta_s_t[conv["eta_lgf"] >= 2].median()), 4)
            if (conv["eta_lgf"] >= 2).any()
            else None,
            # converged although η·S_T > 2: a step that happened to land within loss_tol
            "converged_past_eos": int((conv["eta"] * conv["sharpness_T"] > 2.001).sum()),
            # (2) imbalance
            "q_ratio_le_1_frac_conv": round(float((conv["q_ratio"] <= 1).mean()), 4),
            "q_ratio_median_by_eta_lam0": {
                f"{lo}-{hi}": round(float(conv[(conv.eta_lam0 >= lo) & (conv.eta_lam0 < hi)]["q_ratio"].median()), 4)
                for lo, hi in ((0, 0.1), (0.1, 0.3), (0.3, 1), (1, 3), (3, 10))
                if ((conv.eta_lam0 >= lo) & (conv.eta_lam0 < hi)).any()
            },
            # (3) convergence
            "converged_frac_eta_lgf_below2": round(float((below["status"] == "converged").mean()), 4),
            "converged_frac_eta_lgf_above2": round(float((above["status"] == "converged").mean()), 4)
            if len(above)
            else None,
            "status_above2": above["status"].value_counts().to_dict(),
            "not_converged_below2": [
                {"status": row.status, "eta*sharpness0": round(row.eta * row.sharpness0, 3), "eps0": round(row.eps0, 3)}
                for row in below[below["status"] != "converged"].itertuples()
            ],
            "converged_by_eta_lgf": {str(k): v for k, v in conv_by_bin.items()},
            # depth-2 Theorem 1 as stated
            "thm1_regime_runs": int(len(in_regime)),
            "thm1_lower_holds": round(float(in_regime["lower_holds"].mean()), 4) if len(in_regime) else None,
            "thm1_upper_holds": round(float(in_regime["upper_holds"].mean()), 4) if len(in_regime) else None,
        }
    return numbers


def figure_sweep(rows: pd.DataFrame) -> None:
    conv = rows[rows["status"] == "converged"]
    colors = {1: "tab:blue", 2: "tab:orange"}
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, depth in zip(axes, DEPTHS, strict=True):
        for d in WIDTHS:
            part = conv[(conv.depth == depth) & (conv.d == d)]
            ax.scatter(part["eta_lgf"], part["flat"], s=5, alpha=0.5, color=colors[d], label=f"d = {d}")
        ax.axhline(1, color="k", lw=0.8)
        ax.plot(np.linspace(0.01, 4, 200), 2 / np.linspace(0.01, 4, 200), "r--", lw=0.8, label="η·S_T = 2")
        ax.set(xscale="log", title=f"depth {depth}", xlabel="η·λ_GF(0)", ylim=(0, 1.3))
    axes[0].set_ylabel("sharpness_T / λ_GF(0)  (converged runs)")
    axes[0].legend()
    fig.suptitle("Does GD end flatter than gradient flow? (sweep config in scripts/models_deep.py)")
    fig.tight_layout()
    fig.savefig(FIGURES / "deep_flatter.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, depth in zip(axes, DEPTHS, strict=True):
        for d in WIDTHS:
            part = conv[(conv.depth == depth) & (conv.d == d)]
            ax.scatter(part["eta_lam0"], part["q_ratio"], s=5, alpha=0.5, color=colors[d], label=f"d = {d}")
        ax.axhline(1, color="k", lw=0.8)
        ax.set(xscale="log", yscale="log", title=f"depth {depth}", xlabel="η·λ(0)")
    axes[0].set_ylabel("q_ratio = Q(T)/Q(0)  (converged runs)")
    axes[0].legend()
    fig.suptitle("Does GD shrink the imbalance? (sweep config in scripts/models_deep.py)")
    fig.tight_layout()
    fig.savefig(FIGURES / "deep_imbalance.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    bins = np.geomspace(0.01, 20, 25)
    centers = np.sqrt(bins[1:] * bins[:-1])
    for depth, style in zip(DEPTHS, ("-", "--", ":"), strict=True):
        for d in WIDTHS:
            part = rows[(rows.depth == depth) & (rows.d == d)]
            which = np.digitize(part["eta_lgf"], bins) - 1
            frac = [
                (part["status"][which == i] == "converged").mean() if (which == i).any() else np.nan
                for i in range(len(centers))
            ]
            ax.plot(centers, frac, style, color=colors[d], marker=".", label=f"depth {depth}, d = {d}")
    ax.axvline(2, color="r", lw=0.8)
    ax.set(xscale="log", xlabel="η·λ_GF(0)", ylabel="fraction converged", title="Where does convergence stop?")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIGURES / "deep_convergence.png", dpi=110)
    plt.close(fig)


def kreisler() -> dict[str, object]:
    """λ_GF(θ_t) along GD from positive scalar starts (depth 3, 4) and from one d = 2 start."""
    numbers: dict[str, object] = {}
    rule = StopRule(loss_tol=1e-10, max_steps=1500)
    starts = {
        (3, 1): np.array([[0.4, 1.3, 0.7]]),
        (4, 1): np.array([[0.5, 1.2, 0.9, 1.4]]),
        (3, 2): np.array([[0.5, -0.2, 0.8, 0.1, -0.3, 0.6, 0.9, 0.4]]),
    }
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, ((depth, d), start) in zip(axes, starts.items(), strict=True):
        model = DeepModel(depth, d, 1.0)
        gfs0 = model.gradient_flow_sharpness(start)[0]
        for ratio in KREISLER_RATIOS:
            eta = ratio / gfs0
            states = trajectory(model, start, eta, rule)
            gfs = model.gradient_flow_sharpness(states)
            increase = float(np.max(np.diff(gfs) / gfs[:-1])) if len(gfs) > 1 else 0.0
            converged = bool(0.5 * model.residual(states[-1:])[0] ** 2 <= rule.loss_tol)
            numbers[f"depth={depth},d={d},eta*lgf0={ratio}"] = {
                "T": len(states) - 1,
                "converged": converged,
                "eta*lgf_T": round(float(eta * gfs[-1]), 4),
                "max_relative_increase": float(f"{increase:.2e}"),
            }
            ax.plot(np.arange(len(gfs)), eta * gfs, label=f"η·λ_GF(0) = {ratio}")
        ax.axhline(2, color="r", lw=0.8, ls="--")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set(xlim=(0, 2 * rule.max_steps), title=f"depth {depth}, d = {d}, start {np.round(start[0], 2).tolist()}")
        ax.set_xlabel("t")
        ax.title.set_fontsize(7 if d > 1 else 9)
    axes[0].set_ylabel("η·λ_GF(θ_t)")
    axes[0].legend(fontsize=7)
    fig.suptitle("GFS sharpness along GD (Kreisler et al. 2023): Φ = 1, loss_tol 1e-10, max_steps 1500")
    fig.tight_layout()
    fig.savefig(FIGURES / "deep_kreisler.png", dpi=110)
    plt.close(fig)
    return numbers


def main() -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    rows = sweep_rows()
    figure_sweep(rows)
    print(json.dumps({"sweep": science_numbers(rows), "kreisler": kreisler()}, indent=1, default=str))


if __name__ == "__main__":
    main()
