"""The quantile sketch against np.quantile: relative error at most α, merges exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lin2net.analysis import sketch as sk

ALPHA = 0.005
SLACK = 1e-9  # rounding of log at bucket edges


def within(estimate: float, exact: float, alpha: float = ALPHA) -> bool:
    if math.isinf(exact) or exact == 0.0:
        return estimate == exact
    return abs(estimate - exact) <= alpha * (1 + SLACK) * abs(exact)


finite = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_subnormal=True)
samples = st.lists(finite, min_size=1, max_size=300)
quantiles = st.floats(min_value=0.0, max_value=1.0)


@given(samples, quantiles)
def test_quantile_within_alpha_of_numpy_lower(values: list[float], q: float) -> None:
    s = sk.sketch(values, ALPHA)
    exact = float(np.quantile(np.array(values), q, method="lower"))
    assert s.total == len(values)
    assert within(sk.quantile(s, q), exact)


@given(samples, samples, quantiles)
def test_merge_is_the_sketch_of_the_union(a: list[float], b: list[float], q: float) -> None:
    merged = sk.merge(sk.sketch(a), sk.sketch(b))
    union = sk.sketch(a + b)
    for field in ("positive_keys", "positive_counts", "negative_keys", "negative_counts"):
        np.testing.assert_array_equal(getattr(merged, field), getattr(union, field))
    assert (merged.zeros, merged.total) == (union.zeros, union.total)
    assert sk.quantile(merged, q) == sk.quantile(union, q)
    assert within(sk.quantile(merged, q), float(np.quantile(np.array(a + b), q, method="lower")))


@given(samples)
def test_encode_decode_round_trip(values: list[float]) -> None:
    s = sk.sketch([*values, math.inf, -math.inf, math.nan, 0.0])
    back = sk.decode(sk.encode(s))
    assert back.total == s.total == len(values) + 3
    assert (back.zeros, back.positive_infinite, back.negative_infinite) == (s.zeros, 1, 1)
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        assert sk.quantile(back, q) == sk.quantile(s, q)


@pytest.mark.parametrize("alpha", [0.001, 0.01, 0.05])
def test_large_lognormal_sample_every_percentile(alpha: float) -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.lognormal(0, 3, 20_000), -rng.lognormal(2, 1, 5_000), np.zeros(100)])
    s = sk.sketch(values, alpha)
    for q in np.linspace(0, 1, 101):
        assert within(sk.quantile(s, float(q)), float(np.quantile(values, q, method="lower")), alpha)


def test_infinities_sit_at_the_ends_and_nan_is_ignored() -> None:
    s = sk.sketch([1.0, 2.0, math.inf, -math.inf, math.nan])
    assert s.total == 4
    assert sk.quantile(s, 0.0) == -math.inf and sk.quantile(s, 1.0) == math.inf
    assert math.isnan(sk.quantile(sk.sketch([math.nan]), 0.5))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="alpha"):
        sk.sketch([1.0], alpha=1.5)
    with pytest.raises(ValueError, match="different alpha"):
        sk.merge(sk.sketch([1.0], 0.01), sk.sketch([1.0], 0.02))
    with pytest.raises(ValueError, match="length"):
        sk.decode(sk.encode(sk.sketch([1.0, 5.0]))[:-3])
