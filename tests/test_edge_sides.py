"""theorems.edge_sides (the fast comparison with the edge-of-stability step) equals
comparing with edge_of_stability_eta itself, at the edge and one ulp off it."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from lin2net.theory import theorems

positive = st.floats(min_value=0.0, max_value=1e150, allow_nan=False, allow_subnormal=True)


@given(positive, positive, st.integers(min_value=-3, max_value=3), st.floats(min_value=0.0, max_value=1e150))
def test_edge_sides_equal_the_comparison_with_hypot(lam0: float, phi: float, ulps: int, other: float) -> None:
    with np.errstate(all="ignore"):
        edge = float(theorems.edge_of_stability_eta(lam0, phi))
    etas = [other, edge]
    near = edge
    for _ in range(abs(ulps)):
        near = float(np.nextafter(near, np.inf if ulps > 0 else 0.0))
    etas.append(near)
    eta = np.array(etas)
    with np.errstate(all="ignore"):
        below, above = theorems.edge_sides(eta, lam0, phi)
    assert below.tolist() == (eta < edge).tolist()
    assert above.tolist() == (eta > edge).tolist()
