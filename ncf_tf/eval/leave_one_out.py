"""Leave-one-out evaluation in one batched scoring pass.

The authors' evaluator calls ``predict`` once per test user. Here every
(user, item) pair of the test set -- the held-out item and its negatives --
is laid out as two flat arrays and scored by one ``score_fn`` call; the
metrics (:mod:`ncf_tf.eval.metrics`: tie and duplicate rules) come from the
``(num_test, 1 + m)`` score matrix.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ncf_tf.eval import metrics

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``score_fn(users, items) -> scores``, all of shape ``(n,)``; higher is better."""


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Mean HR@k / NDCG@k and the per-user 0-based ranks they come from.

    Attributes:
        k: the cut-off of ``hr`` and ``ndcg`` (means over the test lines).
        ranks: ``(n,)`` 0-based pessimistic rank of each held-out item.
        num_candidates: ``(n,)`` the held-out item and its competing
            negatives per line, for AUC; None when restored from a checkpoint.
    """

    k: int
    hr: float
    ndcg: float
    ranks: np.ndarray
    num_candidates: np.ndarray | None = None

    def at(self, k: int) -> tuple[float, float]:
        """(HR@k, NDCG@k) for another cut-off, from the same ranks."""
        return (float(metrics.hit_ratio(self.ranks, k).mean()),
                float(metrics.ndcg(self.ranks, k).mean()))

    def metrics(self, names=metrics.METRIC_NAMES, k: int | None = None) -> dict[str, float]:
        """Means of the named metrics (keys of :data:`ncf_tf.eval.metrics.METRICS`)
        at cut-off ``k`` (default :attr:`k`); ValueError for an unknown name, a
        bad ``k``, or AUC without :attr:`num_candidates`."""
        names = metrics.check_names(names)
        if "auc" in names and self.num_candidates is None:
            raise ValueError("AUC needs the number of candidates of each test line, which "
                             "this evaluation (restored from a checkpoint) does not have")
        return metrics.ranking_metrics(self.ranks, self.num_candidates,
                                       self.k if k is None else k, names)


class LeaveOneOutEvaluator:
    """Ranks each held-out item against its negatives.

    Args:
        users: ``(n,)`` test users.
        items: ``(n,)`` held-out items.
        negatives: ``(n, m)`` negatives of each test line.
        k: the cut-off K of HR@K and NDCG@K.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, negatives: np.ndarray, k: int = 10):
        metrics.check_positive("topk", k)
        self.k = k
        self.users = np.asarray(users).astype(np.int32)
        self.candidates = np.concatenate([items[:, None], negatives], axis=1).astype(np.int32)
        self.shape = self.candidates.shape
        # Duplicates of the held-out item or of a negative do not compete
        # (the authors' evaluator keys scores by item id; see metrics).
        self.competing = (negatives != items[:, None]) & ~repeats(negatives)
        self.num_candidates = 1 + self.competing.sum(axis=1)

    @classmethod
    def for_dataset(cls, dataset, k: int = 10) -> "LeaveOneOutEvaluator":
        return cls(dataset.test_users, dataset.test_items, dataset.test_negatives, k)

    @property
    def pair_users(self) -> np.ndarray:
        """``(n * (1 + m),)`` int32: each test user, once per candidate."""
        return np.repeat(self.users, self.shape[1])

    @property
    def pair_items(self) -> np.ndarray:
        """``(n * (1 + m),)`` int32: each line's held-out item, then its negatives."""
        return self.candidates.reshape(-1)

    @property
    def num_pairs(self) -> int:
        return self.shape[0] * self.shape[1]

    def _ranks(self, scores: np.ndarray, lines: slice) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1, self.shape[1])
        # A diverged model's NaN must not win: NaN >= x is False, which would
        # rank the held-out item first. As -inf it ties, and ties lose.
        scores = np.where(np.isnan(scores), -np.inf, scores)
        return metrics.ranks(scores[:, 0], scores[:, 1:], self.competing[lines])

    def _evaluation(self, rank: np.ndarray) -> Evaluation:
        return Evaluation(self.k, float(metrics.hit_ratio(rank, self.k).mean()),
                          float(metrics.ndcg(rank, self.k).mean()), rank,
                          self.num_candidates)

    def evaluate_scores(self, scores: np.ndarray) -> Evaluation:
        """Metrics from the scores of :attr:`pair_users` x :attr:`pair_items`."""
        return self._evaluation(self._ranks(scores, slice(None)))

    def evaluate(self, score_fn: ScoreFn) -> Evaluation:
        """Scores the test pairs with one ``score_fn`` call per block of at most
        :data:`BLOCK_PAIRS` pairs (memory stays bounded) and ranks them."""
        lines = max(1, BLOCK_PAIRS // self.shape[1])
        ranks = []
        for lo in range(0, self.shape[0], lines):
            block = slice(lo, lo + lines)
            users = np.repeat(self.users[block], self.shape[1])
            ranks.append(self._ranks(score_fn(users, self.candidates[block].reshape(-1)), block))
        # No test line: no call, and the NaN metrics of evaluate_scores.
        return self._evaluation(np.concatenate(ranks) if ranks
                                else self._ranks(np.empty(0), slice(0, 0)))


BLOCK_PAIRS = 1 << 24
"""Pairs scored per call of :meth:`LeaveOneOutEvaluator.evaluate` at most
(16.8M: pinterest-20's 5.5M in one call)."""


def repeats(rows: np.ndarray) -> np.ndarray:
    """``(n, m)`` bool: True where an entry equals an earlier one of its row
    (in blocks of rows, so that the sort order of 1M rows of 999 is never held whole)."""
    lines = max(1, BLOCK_PAIRS // max(1, rows.shape[1]))
    if rows.shape[0] > lines:
        return np.concatenate([repeats(rows[lo:lo + lines])
                               for lo in range(0, rows.shape[0], lines)])
    order = np.argsort(rows, axis=1, kind="stable")
    ordered = np.take_along_axis(rows, order, axis=1)
    repeated = np.zeros(rows.shape, dtype=bool)
    repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    out = np.empty_like(repeated)
    np.put_along_axis(out, order, repeated, axis=1)
    return out
