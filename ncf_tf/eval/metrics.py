"""Leave-one-out top-K metrics: HR@K and NDCG@K (paper, sec. 4.1), and more.

For each test user the held-out item is ranked against its sampled negatives
by predicted score. With ``rank`` the 0-based position of the held-out item
among ``n`` candidates (itself and ``n - 1`` competing negatives):

    HR@K        = 1[rank < K]
    NDCG@K      = 1[rank < K] * log(2) / log(rank + 2)
    precision@K = 1[rank < K] / K
    recall@K    = 1[rank < K]                  (equals HR@K)
    MAP@K       = 1[rank < K] / (rank + 1)     (AP@K with one relevant item)
    MRR         = 1 / (rank + 1)               (not cut at K)
    AUC         = 1 - rank / (n - 1)           (negatives scored strictly below; not cut at K)

The paper reports HR and NDCG; the rest are for users of recommender
libraries, with Cornac's conventions: MRR and AUC see the whole candidate list
(RecBole's MRR@K is cut at K), precision@K divides by K even with fewer
candidates, and a tie gets no AUC credit (not sklearn's half), as it gets no
hit: a model that scores every item the same has AUC = 0 and HR = 0. The
forms for several held-out items per user are in :mod:`ncf_tf.eval.full_ranking`.

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


def average_precision(rank: np.ndarray, k: int) -> np.ndarray:
    """Per-user AP@k with one relevant item: ``1[rank < k] / (rank + 1)``; its mean is MAP@k."""
    return np.where(rank < k, 1.0 / (np.asarray(rank) + 1.0), 0.0)


def auc(rank: np.ndarray, num_candidates) -> np.ndarray:
    """Per-user AUC ``1 - rank / (n - 1)``, ``n`` = ``num_candidates`` (target
    included; scalar or ``(n_users,)``, each at least 2)."""
    rank = np.asarray(rank)
    negatives = np.broadcast_to(np.asarray(num_candidates), rank.shape) - 1
    if (negatives < 1).any():
        raise ValueError("AUC needs at least one negative per user (num_candidates >= 2)")
    if (rank > negatives).any():
        raise ValueError("a rank exceeds the number of negatives")
    return 1.0 - rank / negatives


METRICS = {
    "hr": lambda rank, n, k: hit_ratio(rank, k),
    "ndcg": lambda rank, n, k: ndcg(rank, k),
    "map": lambda rank, n, k: average_precision(rank, k),
    "precision": lambda rank, n, k: (rank < k) / float(k),
    "recall": lambda rank, n, k: hit_ratio(rank, k),
    "mrr": lambda rank, n, k: 1.0 / (np.asarray(rank) + 1.0),
    "auc": lambda rank, n, k: auc(rank, n),
}
"""Every metric by name, as a function ``(rank, num_candidates, k) -> (n_users,)``."""

METRIC_NAMES = tuple(METRICS)


def check_positive(name: str, value) -> None:
    """ValueError unless ``value`` is a positive integer, naming the argument ``name``."""
    if not (isinstance(value, (int, np.integer)) and value > 0):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_names(names) -> tuple[str, ...]:
    """The metric names as a tuple; ValueError naming an unknown one."""
    names = tuple(names)
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}, expected one of {', '.join(METRICS)}")
    return names


def ranking_metrics(ranks: np.ndarray, num_candidates, k: int,
                    names=METRIC_NAMES) -> dict[str, float]:
    """``{name: mean over users}`` of the named metrics (keys of :data:`METRICS`)
    of ``(n_users,)`` 0-based ranks; NaN for no users. ``num_candidates``
    (scalar or per user) is only for AUC, ``k`` is not for MRR and AUC."""
    check_positive("k", k)
    names = check_names(names)
    ranks = np.asarray(ranks)
    if len(ranks) == 0:
        return {name: float("nan") for name in names}
    return {name: float(METRICS[name](ranks, num_candidates, k).mean()) for name in names}
