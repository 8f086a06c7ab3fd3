"""A toy third dynamics, in tests only: heavy-ball GD with a fixed momentum β.

It proves the protocol: one folder (:mod:`.dynamics`, :mod:`.cell`) and one
registry entry (:data:`ENTRY`, registered by the tests' fixture) run it through
``sweep``, ``summarize`` and ``trace``.
"""

from lin2net.dynamics.registry import Axis, Entry

ENTRY = Entry(
    name="momentum",
    description="heavy-ball GD with fixed momentum beta (a test's toy)",
    simulate="tests.toy_momentum.cell:simulate",
    trace="tests.toy_momentum.cell:trace",
    axes=(Axis("beta", "β", allow_zero=True),),
)
