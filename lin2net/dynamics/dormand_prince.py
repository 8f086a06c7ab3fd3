"""The Dormand–Prince 5(4) embedded Runge–Kutta pair (scipy's ``RK45``) on a batch of rows.

For y' = F(y) and a step h, seven stages k_1 … k_7 (k_i = F(y + h Σ_j a_ij k_j))
give the fifth-order solution y_new = y + h Σ b_i k_i and, with the embedded
fourth-order weights b̂, the local error estimate h Σ (b_i − b̂_i) k_i. Since
b_7 = 0 and the last row of A is b, k_7 = F(y_new): the next step's first stage
("first same as last"). Every row of the batch has its own step size; what
counts as an acceptable error (the weight each row's error is divided by) and
when to stop are the caller's: the deep family follows its flow's path to a
target, the data families flow to rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from lin2net.theory.closed_forms import FloatArray

Field = Callable[[FloatArray], FloatArray]  # F: a (k, D) batch of rows to their velocities

A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
E = tuple(b5 - b4 for b5, b4 in zip(B5, B4, strict=True))  # fifth- minus fourth-order weights


class Attempt(NamedTuple):
    """One attempted step of every row: ``new`` the fifth-order solution, ``error``
    the local error estimate (fifth minus fourth order), ``last`` = F(new)."""

    new: FloatArray
    error: FloatArray
    last: FloatArray


def attempt(field: Field, y: FloatArray, h: FloatArray, first: FloatArray) -> Attempt:
    """One Dormand–Prince step of each row of ``y`` (k, D) with its step ``h`` (k,),
    given ``first`` = F(y); terms with a zero weight are skipped (so a non-finite
    stage only spoils the results that use it)."""
    step = h[:, None]
    stages = [first]
    for i in range(1, 7):
        increment = sum(a * k for a, k in zip(A[i], stages, strict=False) if a)
        stages.append(field(y + step * increment))
    new = y + step * sum(b * k for b, k in zip(B5, stages, strict=True) if b)
    error = step * sum(e * k for e, k in zip(E, stages, strict=True) if e)
    return Attempt(new, error, stages[6])


def error_ratio(error: FloatArray, weight: FloatArray) -> FloatArray:
    """Each row's RMS of error/weight (NaN or inf where the step blew up): a step
    with ratio ≤ 1 is accepted."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ratio: FloatArray = np.sqrt(np.mean((error / weight) ** 2, axis=1))
    return ratio


def next_step(h: FloatArray, ratio: FloatArray) -> FloatArray:
    """The next step size, h·0.9·ratio^(−1/5) (the error of a fifth-order step
    scales as h⁵), changed by a factor of 0.1 to 5 at most; 0.1 h where the
    ratio is not finite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(np.isfinite(ratio), 0.9 * np.power(np.maximum(ratio, 1e-10), -0.2), 0.1)
    grown: FloatArray = h * np.clip(factor, 0.1, 5.0)
    return grown
