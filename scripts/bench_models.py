"""Traj-steps/s of GD on each model family: the batched NumPy path against a
one-trajectory-at-a-time NumPy loop and against ``jax.jit(jax.vmap(step))`` in a
Python loop over steps (the plain jax loop a user writes), same machine, one run.

One GD step is θ ← θ − η∇L(θ) on a batch of trajectories θ of shape (n, D):

* ``batched``: the family's model (:mod:`lin2net.dynamics.deep.model`,
  :mod:`lin2net.dynamics.vector.model`, :mod:`lin2net.dynamics.relu.model`) on all n
  rows at once, ``model.gradient(θ)`` per step (the step of the sweep's dynamics);
* ``one-at-a-time``: the same model called on one row (1, D) at a time, the
  reference loop a NumPy user writes first;
* ``jax``: ``jax.jit(jax.vmap(step))`` of the same loss written in jax.numpy with
  autodiff, float64, called once per step from Python (compile time excluded);
* ``driver``: the sweep's whole path (:func:`lin2net.dynamics.driver.run` of
  :class:`lin2net.dynamics.parameter_vector.ParameterVectorDynamics`), which also
  measures the sharpness (top Hessian eigenvalue) at every state: what a sweep costs.

    python scripts/bench_models.py            # about 30 s
    python scripts/bench_models.py --steps 400 --trajectories 1024

jax is optional (``pip install -e '.[bench]'``); without it the jax column says
"jax not installed". Timings are wall clock on a possibly shared machine: compare
the columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from lin2net.dynamics.deep.model import DeepModel
from lin2net.dynamics.driver import run
from lin2net.dynamics.parameter_vector import ParameterVectorDynamics, run_parameters, start_state
from lin2net.dynamics.protocol import StopRule
from lin2net.dynamics.relu.model import ReluModel
from lin2net.dynamics.vector.data import make_data, parse_vector_data
from lin2net.dynamics.vector.model import VectorModel

ETA = 0.02


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def models(depth: int, width: int, inputs: int, n_data: int) -> dict[str, tuple[Any, Any]]:
    """name → (the family's NumPy model, its loss of one θ (D,) in jax.numpy, or None)."""
    spec = parse_vector_data({"n": n_data, "x": "whitened"}, inputs)
    x, y = make_data(spec, inputs, 1.0, 0)
    out: dict[str, tuple[Any, Any]] = {
        f"deep N={depth} d={width}": (DeepModel(depth, width, 1.0), ("deep", depth, width)),
        f"vector d={width} m={inputs} n={n_data}": (VectorModel(width, inputs, x, y), ("vector", x, y)),
        f"relu d={width} m={inputs} n={n_data}": (ReluModel(width, inputs, x, y), ("relu", x, y)),
    }
    return out


def jax_loss(spec: tuple[Any, ...], width: int, inputs: int) -> Callable[[Any], Any]:
    import jax.numpy as jnp

    kind = spec[0]
    if kind == "deep":
        _, depth, d = spec
        shapes = [(d, 1), *([(d, d)] * (depth - 2)), (1, d)]

        def deep(theta: Any) -> Any:
            f, start = jnp.ones((1, 1)), 0
            for rows, cols in shapes:
                f = theta[start : start + rows * cols].reshape(rows, cols) @ f
                start += rows * cols
            return 0.5 * (f[0, 0] - 1.0) ** 2

        return deep
    _, x, y = spec
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def vector(theta: Any) -> Any:
        a, b = theta[: width * inputs].reshape(width, inputs), theta[width * inputs :]
        return 0.5 * jnp.mean((xj @ (a.T @ b) - yj) ** 2)

    def relu(theta: Any) -> Any:
        a, b = theta[: width * inputs].reshape(width, inputs), theta[width * inputs :]
        return 0.5 * jnp.mean((jnp.maximum(xj @ a.T, 0.0) @ b - yj) ** 2)

    return vector if kind == "vector" else relu


def gd_step(grad: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """θ ↦ θ − η∇L(θ) for one trajectory (jax vmaps it over the batch)."""

    def step(theta: Any) -> Any:
        return theta - ETA * grad(theta)

    return step


def rate(trajectories: int, steps: int, seconds: float) -> float:
    return trajectories * steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trajectories", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--reference-trajectories", type=int, default=16, help="rows the one-at-a-time loop runs")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--inputs", type=int, default=4)
    parser.add_argument("--data", type=int, default=64)
    args = parser.parse_args()
    n, steps = args.trajectories, args.steps
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        have_jax = True
    except ImportError:
        have_jax = False
    print(f"CPU: {cpu_name()}; numpy {np.__version__}; jax {jax.__version__ if have_jax else 'not installed'}")
    print(f"GD, η = {ETA}: {n} trajectories × {steps} steps (one-at-a-time: {args.reference_trajectories} rows)")
    header = f"{'model':<26} {'D':>4} {'batched':>11} {'one-at-a-time':>14} {'jax jit(vmap)':>14} {'driver':>10}"
    print(header + "   (traj-steps/s; batched/jax)")
    for name, (model, spec) in models(args.depth, args.width, args.inputs, args.data).items():
        rng = np.random.default_rng(0)
        theta0 = rng.standard_normal((n, model.size))
        theta0 *= np.sqrt(1.0) / np.linalg.norm(theta0, axis=1, keepdims=True)

        theta = theta0.copy()
        began = time.perf_counter()
        for _ in range(steps):
            theta = theta - ETA * model.gradient(theta)
        batched = rate(n, steps, time.perf_counter() - began)
        batched_end = theta

        k = args.reference_trajectories
        began = time.perf_counter()
        for row in range(k):
            one = theta0[row : row + 1].copy()
            for _ in range(steps):
                one = one - ETA * model.gradient(one)
            assert np.allclose(one, batched_end[row : row + 1], rtol=1e-9, atol=1e-12)
        reference = rate(k, steps, time.perf_counter() - began)

        jax_text = "not installed"
        if have_jax:
            import jax.numpy as jnp

            loss = jax_loss(spec, args.width, args.inputs)
            step = jax.jit(jax.vmap(gd_step(jax.grad(loss))))
            state = jnp.asarray(theta0)
            step(state).block_until_ready()  # compile outside the clock
            began = time.perf_counter()
            for _ in range(steps):
                state = step(state)
            state.block_until_ready()
            jax_rate = rate(n, steps, time.perf_counter() - began)
            assert np.allclose(np.asarray(state), batched_end, rtol=1e-8, atol=1e-11), "jax and NumPy disagree"
            jax_text = f"{jax_rate:14.3g}"

        short = max(1, steps // 10)
        dynamics = ParameterVectorDynamics(model)
        began = time.perf_counter()
        run(dynamics, start_state(model, theta0.copy()), run_parameters(ETA, n), StopRule(1e-300, short))
        driver = rate(n, short, time.perf_counter() - began)
        ratio = f"{batched / jax_rate:.2f}" if have_jax else "-"
        print(f"{name:<26} {model.size:>4} {batched:11.3g} {reference:14.3g} {jax_text:>14} {driver:10.3g}   {ratio}")


if __name__ == "__main__":
    main()
