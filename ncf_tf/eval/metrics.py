"""Leave-one-out top-K metrics: HR@K and NDCG@K (paper, sec. 4.1).

For each test user the held-out item is ranked against its sampled negatives
by predicted score. With ``rank`` the 0-based position of the held-out item:

    HR@K   = 1[rank < K]
    NDCG@K = 1[rank < K] * log(2) / log(rank + 2)

Two protocol choices, both about what the authors' evaluator does implicitly:

* Ties count against the held-out item: ``rank`` is the number of *distinct*
  negatives scoring greater than **or equal to** it. The original breaks ties
  by dict order; a model that scores every item the same must get HR = 0 here,
  not 1.
* A negative equal to the held-out item (156 lines of the authors' ml-1m file)
  is not a competitor: the original keys scores by item id, so the duplicate
  collapses into the held-out item. For the same reason a negative listed
  twice on one line competes once. Such entries are masked out.
"""

from __future__ import annotations

import numpy as np


def ranks(target_scores: np.ndarray, negative_scores: np.ndarray,
          competing: np.ndarray | None = None) -> np.ndarray:
    """0-based pessimistic rank of each target among its negatives.

    Args:
        target_scores: ``(n,)`` score of each held-out item.
        negative_scores: ``(n, m)`` scores of its negatives.
        competing: optional ``(n, m)`` bool, False for negatives that must be
            ignored (duplicates of the held-out item or of another negative).

    Returns:
        ``(n,)`` int64 number of competing negatives scoring >= the target.
    """
    beats = negative_scores >= target_scores[:, None]
    if competing is not None:
        beats &= competing
    return beats.sum(axis=1)


def hit_ratio(rank: np.ndarray, k: int) -> np.ndarray:
    """Per-user HR@k from 0-based ranks."""
    return (rank < k).astype(np.float64)


def ndcg(rank: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG@k from 0-based ranks (one relevant item)."""
    return np.where(rank < k, np.log(2.0) / np.log(rank + 2.0), 0.0)
