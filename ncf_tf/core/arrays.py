"""Distinct values of large integer arrays by a sort and one pass: numpy 2's
``np.unique`` takes a hash-based path, much slower on tens of millions."""

from __future__ import annotations

import numpy as np


def starts_of_runs(values: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: where a run of equal values of the sorted ``values`` starts."""
    start = np.ones(len(values), dtype=bool)
    np.not_equal(values[1:], values[:-1], out=start[1:])
    return start


def ends_of_runs(values: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: where a run of equal values of the sorted ``values`` ends."""
    end = np.ones(len(values), dtype=bool)
    np.not_equal(values[1:], values[:-1], out=end[:-1])
    return end


def distinct_sorted(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)``: the distinct values in increasing order."""
    values = np.sort(values)
    return values[starts_of_runs(values)]


def count_distinct(values: np.ndarray) -> int:
    """``len(np.unique(values))`` for non-negative integers."""
    if len(values) and 0 <= values.min() and values.max() < 4 * len(values) + 1024:
        return int(np.count_nonzero(np.bincount(values)))
    return len(distinct_sorted(values))
