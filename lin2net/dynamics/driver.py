"""The one driver: any dynamics (:mod:`lin2net.dynamics.protocol`) to its stopping time.

:func:`run` advances a batch of trajectories in lock-step and retires each one
at its own stopping time T (:func:`lin2net.dynamics.protocol.stop_status`):

* ``converged`` at the first t with ½ε(t)² <= loss_tol;
* ``diverged`` at the first t where ε or λ is non-finite or exceeds the threshold;
* ``max_steps`` when t reaches max_steps.

Retired trajectories leave the working set, so the work done is proportional to
the steps the trajectories actually need. Along the way the observers
(:mod:`lin2net.dynamics.observers`) accumulate log Q(T)/Q(0), Σ ε², max |ε|,
max η·S, the steps with η·S > 2 and, where the dynamics has one, the final
window's sums.

Two record modes: ``final`` returns one row per trajectory (what a sweep
writes); ``every`` also keeps every state t = 0…T of every trajectory (what
``trace`` shows), from the same loop, so a trace never disagrees with a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from lin2net.dynamics.observers import Diagnostics, LogQ, Window
from lin2net.dynamics.protocol import RUNNING, Dynamics, FloatArray, Status, StopRule, stop_status, take

IntArray = NDArray[np.int64]


@dataclass
class TrajectoryResults:
    """Per-trajectory outcome, every array of shape (n,), in input order."""

    status: NDArray[np.int8]
    steps: IntArray
    eps_T: FloatArray
    lambda_T: FloatArray
    sharpness_T: FloatArray
    log_q_ratio: FloatArray
    sum_eps2: FloatArray
    max_eta_sharpness: FloatArray
    eos_steps: IntArray
    max_abs_eps: FloatArray

    @classmethod
    def empty(cls, n: int) -> TrajectoryResults:
        nan = np.full(n, np.nan)
        return cls(
            status=np.full(n, -1, dtype=np.int8),
            steps=np.zeros(n, dtype=np.int64),
            eps_T=nan.copy(),
            lambda_T=nan.copy(),
            sharpness_T=nan.copy(),
            log_q_ratio=nan.copy(),
            sum_eps2=nan.copy(),
            max_eta_sharpness=nan.copy(),
            eos_steps=np.zeros(n, dtype=np.int64),
            max_abs_eps=nan.copy(),
        )

    @property
    def q_ratio(self) -> FloatArray:
        """Q(T)/Q(0) = Π_{t<T} |1 − u_t²| (0 where it underflows, inf past overflow)."""
        with np.errstate(over="ignore"):
            ratio: FloatArray = np.exp(self.log_q_ratio)
        return ratio


@dataclass
class History:
    """Every state of every trajectory (record mode ``every``): one entry per t, each
    holding the rows of the trajectories still running at t (``rows``: their input
    positions), their observation, log Q(t)/Q(0), and the extras of the step taken
    from t (absent on a trajectory's last state)."""

    rows: list[IntArray] = field(default_factory=list)
    values: list[dict[str, FloatArray]] = field(default_factory=list)
    step_rows: list[IntArray] = field(default_factory=list)
    extras: list[dict[str, FloatArray]] = field(default_factory=list)

    def trajectory(self, row: int) -> dict[str, FloatArray]:
        """Columns over t = 0…T of trajectory ``row``: ``t``, the observation's fields,
        ``log_q_ratio`` and the step extras (NaN on the last state: no step from it)."""
        columns: dict[str, list[float]] = {"t": []}
        names = list(dict.fromkeys(name for extras in self.extras for name in extras))  # in the step's order
        for t, (rows, values) in enumerate(zip(self.rows, self.values, strict=True)):
            where = np.flatnonzero(rows == row)
            if where.size == 0:
                break
            columns["t"].append(t)
            for name, value in values.items():
                columns.setdefault(name, []).append(float(value[int(where[0])]))
            stepped = np.flatnonzero(self.step_rows[t] == row) if t < len(self.step_rows) else where[:0]
            for name in names:
                extra = self.extras[t].get(name) if stepped.size else None
                columns.setdefault(name, []).append(np.nan if extra is None else float(extra[int(stepped[0])]))
        return {
            name: np.array(values, dtype=np.int64 if name == "t" else np.float64) for name, values in columns.items()
        }


@dataclass
class Run:
    """What :func:`run` returns: the final rows, the window means (shape (5, n),
    None without a window) and, in record mode ``every``, the history."""

    results: TrajectoryResults
    window: FloatArray | None
    history: History | None


def run(
    dynamics: Dynamics, state: Any, params: Any, rule: StopRule, *, record: Literal["final", "every"] = "final"
) -> Run:
    """Run every trajectory of ``state`` (a NamedTuple of per-trajectory arrays) with
    per-trajectory ``params`` to its stopping time (see module doc)."""
    state = dynamics.start(state, params)
    n = len(params[0])
    out = TrajectoryResults.empty(n)
    first = dynamics.window(rule)
    window_out = np.full((5, n), np.nan) if first is not None else None
    index = np.arange(n)  # original position of each trajectory in the working set
    tolerance = np.broadcast_to(np.asarray(dynamics.tolerance(params, rule), dtype=np.float64), (n,))
    log_q = LogQ.zeros(n)
    diagnostics = Diagnostics.start(n)
    window = Window.zeros(n) if first is not None else None
    history = History() if record == "every" else None
    t = 0
    # Overflow is an expected outcome (divergence), recorded in `status`.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while index.size:
            obs = dynamics.observe(state, params)
            diagnostics = diagnostics.see(obs)
            measured = None
            if window is not None and first is not None and t > first:
                product = log_q.value()
                measured = dynamics.measured_log_q(state, product)
                window = window.add(obs, product if measured is None else measured)
            status = stop_status(obs, tolerance, rule, t)
            if history is not None:
                product = log_q.value()
                current = dynamics.measured_log_q(state, product) if measured is None else measured
                history.rows.append(index)
                history.values.append({**obs._asdict(), "log_q_ratio": product if current is None else current})
            done = status != RUNNING
            if done.any():
                rows = index[done]
                out.status[rows] = status[done]
                out.steps[rows] = t
                out.eps_T[rows] = obs.eps[done]
                out.lambda_T[rows] = obs.lam[done]
                out.sharpness_T[rows] = obs.sharpness[done]
                final_total = LogQ(log_q.total[done], log_q.error[done]).value()
                final_measured = dynamics.measured_log_q(take(state, done), final_total)
                out.log_q_ratio[rows] = final_total if final_measured is None else final_measured
                out.sum_eps2[rows] = diagnostics.sum_eps2[done]
                out.max_eta_sharpness[rows] = diagnostics.max_eta_sharpness[done]
                out.eos_steps[rows] = diagnostics.eos_steps[done]
                out.max_abs_eps[rows] = diagnostics.max_abs_eps[done]
                if window is not None and window_out is not None:
                    window_out[:, rows] = window.take(done).means()
                running = ~done
                if not running.any():
                    break
                state, params, obs = take(state, running), take(params, running), take(obs, running)
                index, tolerance = index[running], tolerance[running]
                log_q, diagnostics = take(log_q, running), take(diagnostics, running)
                window = None if window is None else window.take(running)
            state, step = dynamics.step(state, params, t, obs)
            if history is not None:
                history.step_rows.append(index)
                history.extras.append(step.extras)
            diagnostics = diagnostics.stepped(obs)
            log_q = log_q.add(step.u)
            t += 1
    return Run(out, window_out, history)


def concatenate(parts: list[TrajectoryResults]) -> TrajectoryResults:
    """Join results of consecutive blocks of trajectories."""
    names = TrajectoryResults.__dataclass_fields__
    return TrajectoryResults(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in names})


__all__ = ["History", "Run", "Status", "TrajectoryResults", "concatenate", "run"]
