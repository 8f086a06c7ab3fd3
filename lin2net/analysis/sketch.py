"""A mergeable quantile sketch with relative accuracy α (DDSketch, Masson et al. 2019).

A value x > 0 falls in bucket k = ⌈log_γ x⌉, γ = (1 + α)/(1 − α), i.e. in
(γ^(k−1), γ^k]; the bucket stands for x̂ = 2γ^k/(γ + 1), and every x in it
satisfies |x̂ − x| ≤ α·x. Negative values use their own buckets of |x|;
zeros, +∞ and −∞ are counted apart; NaN is ignored. A sketch is only counts
per bucket, so two sketches with the same α merge by adding counts, and the
merge of the sketches of two samples *is* the sketch of their union (the
order of merging never matters).

Quantiles: :func:`quantile` returns, for q ∈ [0, 1], the representative of
the bucket holding the order statistic of rank ⌊q·(n − 1)⌋ (0-based; NumPy's
``np.quantile(x, q, method='lower')``), so its relative error against that
order statistic is at most α (plus rounding of a few ulps at bucket edges).

Sketches are stored as bytes (:func:`encode`, :func:`decode`): nonzero bucket
keys as differences (mostly 1) and their counts, little-endian int64, which
Parquet's compression shrinks to a few hundred bytes for a typical cell.

Pure functions over an immutable :class:`Sketch` (optax style): no I/O.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

DEFAULT_ALPHA = 0.005  # 0.5 % relative accuracy
FORMAT = 1
_HEADER = struct.Struct("<Bdqqqqq")  # format, alpha, zeros, +inf, -inf, positive buckets, negative buckets

IntArray = NDArray[np.int64]


class Sketch(NamedTuple):
    """Counts per bucket: ``positive_keys`` (sorted, distinct) with
    ``positive_counts`` for x > 0, the same for |x| of x < 0, and the
    counts of zeros and infinities."""

    alpha: float
    positive_keys: IntArray
    positive_counts: IntArray
    negative_keys: IntArray
    negative_counts: IntArray
    zeros: int = 0
    positive_infinite: int = 0
    negative_infinite: int = 0

    @property
    def total(self) -> int:
        """Values in the sketch (NaN not counted)."""
        return int(
            self.positive_counts.sum()
            + self.negative_counts.sum()
            + self.zeros
            + self.positive_infinite
            + self.negative_infinite
        )


def gamma(alpha: float) -> float:
    """γ = (1 + α)/(1 − α): the ratio of consecutive bucket bounds."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return (1.0 + alpha) / (1.0 - alpha)


def empty(alpha: float = DEFAULT_ALPHA) -> Sketch:
    none = np.zeros(0, dtype=np.int64)
    gamma(alpha)  # validates alpha
    return Sketch(alpha, none, none.copy(), none.copy(), none.copy())


def _buckets(magnitudes: NDArray[np.float64], log_gamma: float) -> tuple[IntArray, IntArray]:
    """Sorted distinct keys ⌈log_γ x⌉ of positive finite ``magnitudes``, with counts."""
    if magnitudes.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    keys = np.ceil(np.log(magnitudes) / log_gamma).astype(np.int64)
    low = int(keys.min())
    dense = np.bincount(keys - low)
    present = np.flatnonzero(dense)
    return (present + low).astype(np.int64), dense[present].astype(np.int64)


def sketch(values: ArrayLike, alpha: float = DEFAULT_ALPHA) -> Sketch:
    """The sketch of ``values`` (NaN ignored)."""
    log_gamma = math.log(gamma(alpha))
    x = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(x)
    positive_infinite = int(np.count_nonzero(x == np.inf))
    negative_infinite = int(np.count_nonzero(x == -np.inf))
    x = x[finite]
    zeros = int(np.count_nonzero(x == 0.0))
    positive_keys, positive_counts = _buckets(x[x > 0.0], log_gamma)
    negative_keys, negative_counts = _buckets(-x[x < 0.0], log_gamma)
    return Sketch(
        alpha,
        positive_keys,
        positive_counts,
        negative_keys,
        negative_counts,
        zeros,
        positive_infinite,
        negative_infinite,
    )


def _add(keys: Iterable[IntArray], counts: Iterable[IntArray]) -> tuple[IntArray, IntArray]:
    all_keys, all_counts = np.concatenate(list(keys)), np.concatenate(list(counts))
    if all_keys.size == 0:
        return all_keys.astype(np.int64), all_counts.astype(np.int64)
    distinct, where = np.unique(all_keys, return_inverse=True)
    summed = np.zeros(distinct.size, dtype=np.int64)
    np.add.at(summed, where, all_counts)
    return distinct.astype(np.int64), summed


def merge(*sketches: Sketch) -> Sketch:
    """The sketch of the union of the samples behind ``sketches`` (same α)."""
    if not sketches:
        raise ValueError("merge needs at least one sketch")
    alpha = sketches[0].alpha
    if any(s.alpha != alpha for s in sketches):
        raise ValueError("sketches with different alpha do not merge")
    if len(sketches) == 1:
        return sketches[0]
    positive = _add((s.positive_keys for s in sketches), (s.positive_counts for s in sketches))
    negative = _add((s.negative_keys for s in sketches), (s.negative_counts for s in sketches))
    return Sketch(
        alpha,
        *positive,
        *negative,
        zeros=sum(s.zeros for s in sketches),
        positive_infinite=sum(s.positive_infinite for s in sketches),
        negative_infinite=sum(s.negative_infinite for s in sketches),
    )


def value_at_rank(s: Sketch, rank: int) -> float:
    """The representative of the value of 0-based ``rank`` in sorted order
    (−∞, negatives, zeros, positives, +∞); NaN for an empty sketch."""
    n = s.total
    if n == 0:
        return math.nan
    rank = min(max(int(rank), 0), n - 1)
    g = gamma(s.alpha)
    if rank < s.negative_infinite:
        return -math.inf
    rank -= s.negative_infinite
    negative_total = int(s.negative_counts.sum())
    if rank < negative_total:
        # largest magnitude first
        cumulative = np.cumsum(s.negative_counts[::-1])
        key = int(s.negative_keys[::-1][int(np.searchsorted(cumulative, rank, side="right"))])
        return -2.0 * g**key / (g + 1.0)
    rank -= negative_total
    if rank < s.zeros:
        return 0.0
    rank -= s.zeros
    positive_total = int(s.positive_counts.sum())
    if rank < positive_total:
        cumulative = np.cumsum(s.positive_counts)
        key = int(s.positive_keys[int(np.searchsorted(cumulative, rank, side="right"))])
        return 2.0 * g**key / (g + 1.0)
    return math.inf


def quantile(s: Sketch, q: float) -> float:
    """The q-quantile, within relative error α of ``np.quantile(x, q, method='lower')``."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    n = s.total
    return value_at_rank(s, math.floor(q * (n - 1))) if n else math.nan


def encode(s: Sketch) -> bytes:
    """Bytes of a sketch: a header, then keys (first absolute, then
    differences) and counts of the positive and the negative buckets."""
    header = _HEADER.pack(
        FORMAT,
        s.alpha,
        s.zeros,
        s.positive_infinite,
        s.negative_infinite,
        s.positive_keys.size,
        s.negative_keys.size,
    )
    parts = [header]
    for keys, counts in ((s.positive_keys, s.positive_counts), (s.negative_keys, s.negative_counts)):
        deltas = np.diff(keys, prepend=np.int64(0)) if keys.size else keys
        parts += [deltas.astype("<i8").tobytes(), counts.astype("<i8").tobytes()]
    return b"".join(parts)


def decode(data: bytes) -> Sketch:
    """The sketch :func:`encode` wrote; ValueError for bytes that are not one."""
    if len(data) < _HEADER.size:
        raise ValueError("too short for a sketch")
    version, alpha, zeros, plus, minus, n_positive, n_negative = _HEADER.unpack_from(data)
    if version != FORMAT:
        raise ValueError(f"sketch format {version}, this lin2net reads {FORMAT}")
    if n_positive < 0 or n_negative < 0 or len(data) != _HEADER.size + 16 * (n_positive + n_negative):
        raise ValueError("sketch length does not match its header")
    words = np.frombuffer(data, dtype="<i8", offset=_HEADER.size).astype(np.int64)
    positive_keys = np.cumsum(words[:n_positive])
    positive_counts = words[n_positive : 2 * n_positive]
    rest = words[2 * n_positive :]
    negative_keys, negative_counts = np.cumsum(rest[:n_negative]), rest[n_negative:]
    gamma(alpha)
    return Sketch(alpha, positive_keys, positive_counts, negative_keys, negative_counts, zeros, plus, minus)
