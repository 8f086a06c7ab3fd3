"""The one driver: its two record modes agree, and the stop rule is the documented one."""

from __future__ import annotations

import numpy as np

from lin2net.dynamics.driver import run
from lin2net.dynamics.gd.reference import GD, FullState, GDParams, ReducedState
from lin2net.dynamics.protocol import Observation, Status, StopRule, stop_status


def test_every_step_mode_ends_on_the_final_rows_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    eps0, lam0 = -rng.uniform(0.2, 0.9, 7), rng.uniform(1.0, 3.0, 7)
    params = GDParams(rng.uniform(0.05, 0.9, 7), np.ones(7))
    rule = StopRule(1e-12, 500)
    final = run(GD(), ReducedState(eps0, lam0), params, rule)
    every = run(GD(), ReducedState(eps0, lam0), params, rule, record="every")
    assert every.history is not None
    for name in final.results.__dataclass_fields__:
        assert np.array_equal(getattr(final.results, name), getattr(every.results, name), equal_nan=True), name
    for row in range(7):
        columns = every.history.trajectory(row)
        steps = int(final.results.steps[row])
        assert columns["t"].tolist() == list(range(steps + 1))
        assert columns["eps"][-1] == final.results.eps_T[row]
        assert columns["log_q_ratio"][-1] == final.results.log_q_ratio[row]


def test_the_stop_rule_orders_converged_diverged_max_steps() -> None:
    eps = np.array([1e-7, np.inf, 2.0, 0.5, 0.5])
    lam = np.array([1.0, 1.0, 1.0, 1e31, 1.0])
    obs = Observation(eps, lam, 0.5 * eps * eps, lam, lam)
    rule = StopRule(1e-12, 10)
    assert stop_status(obs, 1e-12, rule, 3).tolist() == [Status.CONVERGED, Status.DIVERGED, -1, Status.DIVERGED, -1]
    assert stop_status(obs, 1e-12, rule, 10).tolist()[2] == Status.MAX_STEPS


def test_vectors_and_reduced_state_agree_through_the_driver() -> None:
    a, b = np.array([[0.3, -1.2, 0.5]]), np.array([[0.9, 0.4, -0.2]])
    params = GDParams(np.array([0.3]), np.array([1.0]))
    rule = StopRule(1e-20, 2000)
    full = run(GD(), FullState(a, b), params, rule).results
    eps0, lam0 = np.einsum("nd,nd->n", a, b) - 1.0, (a * a + b * b).sum(axis=1)
    reduced = run(GD(), ReducedState(eps0, lam0), params, rule).results
    assert full.status[0] == reduced.status[0] == Status.CONVERGED
    assert abs(int(full.steps[0]) - int(reduced.steps[0])) <= 1
    assert np.isclose(full.log_q_ratio[0], reduced.log_q_ratio[0], rtol=1e-9)
