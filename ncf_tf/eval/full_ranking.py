"""Full-ranking evaluation: each held-out item against the whole catalogue.

The paper ranks a held-out item against 99 sampled negatives (sec. 4.1),
which can reorder models (Krichene and Rendle, KDD 2020). Here every
held-out item of a user is ranked against all items but the user's training
items, which are neither candidates nor competitors. With H_u the held-out
items of user u, ``pos(h)`` the 0-based position of h among the candidates,
``j(h)`` its 0-based order among H_u (best first) and N_u the candidates
not held out:

    HR@K        = 1[min_{h in H_u} pos(h) < K]
    recall@K    = |{h in H_u : pos(h) < K}| / |H_u|
    NDCG@K      = sum_{h in H_u, pos(h) < K} 1 / log2(pos(h) + 2)
                  / sum_{j < min(K, |H_u|)} 1 / log2(j + 2)
    precision@K = |{h in H_u : pos(h) < K}| / K
    MAP@K       = sum_{h in H_u, pos(h) < K} (j(h) + 1) / (pos(h) + 1) / min(K, |H_u|)
    MRR         = 1 / (min_{h in H_u} pos(h) + 1)                 (not cut at K)
    AUC         = 1 - sum_{h in H_u} (pos(h) - j(h)) / (|H_u| N_u)  (not cut at K)

The paper's are HR and NDCG; the rest are for users of recommender libraries
(MAP@K normalised by min(K, |H_u|) as RecBole does). With one held-out item
per user, each is that of :mod:`ncf_tf.eval.metrics` with ``n`` = N_u + 1.

Ties count against the held-out items, as in :mod:`ncf_tf.eval.metrics`,
and held-out items tied with each other take consecutive positions in any
order (the metrics do not depend on it), so the j-th best held-out item has

    pos = j + |{c candidate, c not in H_u : score(c) >= score(h)}|

NaN scores count as -inf (a diverged model must not win). A held-out item that
is also a training item stays a held-out item (it is ranked, not excluded).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ncf_tf.eval import metrics as M
from ncf_tf.eval.leave_one_out import ScoreFn

ScoreAllFn = Callable[[np.ndarray], np.ndarray]
"""``score_all(users) -> (len(users), num_items)`` scores; higher is better."""

# (user, item) scores of a block of users at most, unless a batch size is given.
_BLOCK_ENTRIES = 1 << 22


DEFAULT_NAMES = ("hr", "ndcg", "recall")   # of per_user_metrics


@dataclasses.dataclass(frozen=True)
class FullRankingEvaluation:
    """Mean HR@k, NDCG@k and recall@k, and the positions they come from.

    Attributes:
        k: the cut-off of ``hr``, ``ndcg`` and ``recall`` (means over :attr:`users`).
        users: ``(n,)`` evaluated users (those with a held-out item), sorted.
        indptr: ``(n + 1,)``: ``positions[indptr[j]:indptr[j + 1]]`` are the
            positions of ``users[j]``'s held-out items, increasing.
        num_candidates: ``(n,)`` all items but each user's training items
            (its held-out items included); AUC needs it.
    """

    k: int
    hr: float
    ndcg: float
    recall: float
    users: np.ndarray
    indptr: np.ndarray
    positions: np.ndarray
    num_candidates: np.ndarray | None = None

    def per_user(self, k: int, names=DEFAULT_NAMES) -> dict[str, np.ndarray]:
        """``{name: (n,)}`` per-user values at cut-off k (default hr, ndcg, recall)."""
        return per_user_metrics(self.indptr, self.positions, k, names, self.num_candidates)

    def metrics(self, names=M.METRIC_NAMES, k: int | None = None) -> dict[str, float]:
        """Means over users of the named metrics at cut-off ``k`` (default
        :attr:`k`); NaN for no users."""
        return _means(self.per_user(self.k if k is None else k, M.check_names(names)))

    def at(self, k: int) -> dict[str, float]:
        """Mean ``{"hr", "ndcg", "recall"}`` at another cut-off, from the same positions."""
        return _means(self.per_user(k))


def _means(values: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(v.mean()) if len(v) else float("nan") for name, v in values.items()}


def per_user_metrics(indptr: np.ndarray, positions: np.ndarray, k: int,
                     names=DEFAULT_NAMES,
                     num_candidates: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``{name: (n,)}`` float64: the named metrics (module docstring) of each user.

    Args:
        indptr, positions, num_candidates: as in :class:`FullRankingEvaluation`.
        k: the cut-off of HR, NDCG, recall, precision and MAP.
        names: keys of :data:`ncf_tf.eval.metrics.METRICS`.

    Raises:
        ValueError: a bad ``k`` or name, a user without a held-out item, or
            AUC without ``num_candidates`` or for a user with no other candidate.
    """
    M.check_positive("k", k)
    names = M.check_names(names)
    sizes = np.diff(indptr)
    if (sizes <= 0).any():
        raise ValueError("every user needs at least one held-out item")
    n = len(sizes)
    owner = np.repeat(np.arange(n), sizes)
    within = np.arange(len(positions)) - np.repeat(indptr[:-1], sizes)   # j(h)
    hit = positions < k
    hits = np.bincount(owner, hit, minlength=n)
    out = {}
    for name in names:
        if name == "hr":
            out[name] = (hits > 0).astype(np.float64)
        elif name == "recall":
            out[name] = hits / sizes
        elif name == "precision":
            out[name] = hits / float(k)
        elif name == "ndcg":
            gains = np.where(hit, 1.0 / np.log2(np.minimum(positions, k) + 2.0), 0.0)
            # Ideal DCG: the first min(K, |H_u|) positions all held-out.
            discounts = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))
            out[name] = np.bincount(owner, gains, minlength=n) / discounts[
                np.minimum(sizes, k) - 1]
        elif name == "map":
            precisions = np.where(hit, (within + 1.0) / (positions + 1.0), 0.0)
            out[name] = np.bincount(owner, precisions, minlength=n) / np.minimum(sizes, k)
        elif name == "mrr":
            out[name] = 1.0 / (positions[indptr[:-1]] + 1.0)
        elif name == "auc":
            if num_candidates is None:
                raise ValueError("AUC needs the number of candidates of each user")
            negatives = np.asarray(num_candidates) - sizes
            if (negatives < 1).any():
                raise ValueError("AUC needs a candidate that is not held out for every user")
            ahead = np.bincount(owner, positions - within, minlength=n)
            out[name] = 1.0 - ahead / (sizes * negatives)
    return out


def held_out_positions(scores: np.ndarray, held_out: sp.csr_matrix,
                       exclude: sp.spmatrix | None = None) -> np.ndarray:
    """Positions of the held-out items of a block of users, from their scores.

    Args:
        scores: ``(b, num_items)`` scores of the block's users.
        held_out: ``(b, num_items)`` CSR, non-zero at each held-out item,
            canonical (sorted indices, no duplicates, no explicit zeros).
        exclude: optional ``(b, num_items)`` sparse, non-zero at items that are
            not candidates (the users' training items).

    Returns:
        ``(held_out.nnz,)`` int64 0-based positions, grouped by row like
        ``held_out``'s entries and increasing within each row.
    """
    scores = np.asarray(scores, dtype=np.float64)
    num_rows, num_items = scores.shape
    if held_out.shape != scores.shape:
        raise ValueError(f"scores of shape {scores.shape} for held-out items of shape "
                         f"{held_out.shape}")
    scores = np.where(np.isnan(scores), -np.inf, scores)
    competing = np.ones(scores.shape, dtype=bool)
    if exclude is not None:
        competing[sp.csr_matrix(exclude).nonzero()] = False
    rows = np.repeat(np.arange(num_rows), np.diff(held_out.indptr))
    competing[rows, held_out.indices] = False   # held-out items do not compete
    target = scores[rows, held_out.indices]

    # in chunks of entries: bounded (entries, num_items) work
    ahead = np.empty(len(rows), np.int64)
    chunk = max(1, _BLOCK_ENTRIES // max(num_items, 1))
    for lo in range(0, len(rows), chunk):
        r = rows[lo:lo + chunk]
        beats = (scores[r] >= target[lo:lo + chunk, None]) & competing[r]
        ahead[lo:lo + chunk] = beats.sum(axis=1)

    # Best held-out item first within each row: the j-th of them is preceded
    # by j held-out items, whatever the order among tied ones.
    order = np.lexsort((-target, rows))
    within = np.arange(len(rows)) - held_out.indptr[:-1][rows[order]]
    return within + ahead[order]


class FullRankingEvaluator:
    """Ranks each user's held-out items against all items but the excluded ones.

    Args:
        held_out: ``(num_users, num_items)`` sparse, non-zero at each held-out
            (user, item); users without one are not evaluated.
        exclude: optional sparse of the same shape, non-zero at each user's
            items that are not candidates (the training items).
        k: the cut-off K of HR@K, NDCG@K and recall@K.
        batch_size: users scored per call (default: blocks of 2^22 scores).

    Raises:
        ValueError: ``k`` or ``batch_size`` is not positive, or the shapes differ.
    """

    def __init__(self, held_out: sp.spmatrix, exclude: sp.spmatrix | None = None,
                 k: int = 10, batch_size: int | None = None):
        M.check_positive("k", k)
        if batch_size is not None:
            M.check_positive("batch_size", batch_size)
        held_out = sp.csr_matrix(held_out, dtype=np.float64, copy=True)
        held_out.sum_duplicates()
        held_out.eliminate_zeros()
        held_out.sort_indices()
        if exclude is not None:
            exclude = sp.csr_matrix(exclude, dtype=np.float64, copy=True)
            exclude.eliminate_zeros()
            if exclude.shape != held_out.shape:
                raise ValueError(f"exclude has shape {exclude.shape}, but held_out has "
                                 f"{held_out.shape}")
        self.k = int(k)
        self.held_out = held_out
        self.exclude = exclude
        self.num_items = held_out.shape[1]
        self.users = np.flatnonzero(np.diff(held_out.indptr) > 0)
        self.batch_size = int(batch_size) if batch_size is not None else max(
            1, _BLOCK_ENTRIES // max(self.num_items, 1))

    @classmethod
    def from_pairs(cls, users: np.ndarray, items: np.ndarray, shape: tuple[int, int],
                   exclude: sp.spmatrix | None = None, **kwargs) -> "FullRankingEvaluator":
        """From ``(n,)`` held-out users and items; a repeated pair counts once."""
        users, items = np.asarray(users), np.asarray(items)
        held_out = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=shape)
        return cls(held_out, exclude, **kwargs)

    @classmethod
    def for_dataset(cls, dataset, k: int = 10,
                    batch_size: int | None = None) -> "FullRankingEvaluator":
        """The data set's test items, ranked against all but the training items."""
        return cls.from_pairs(dataset.test_users, dataset.test_items, dataset.train.shape,
                              exclude=dataset.train, k=k, batch_size=batch_size)

    def evaluate_all(self, score_all: ScoreAllFn) -> FullRankingEvaluation:
        """Scores blocks of users with ``score_all(users) -> (n, num_items)``."""
        parts = []
        for lo in range(0, len(self.users), self.batch_size):
            users = self.users[lo:lo + self.batch_size]
            scores = np.asarray(score_all(users), dtype=np.float64)
            if scores.shape != (len(users), self.num_items):
                raise ValueError(f"score_all returned shape {scores.shape} for {len(users)} "
                                 f"users, expected {(len(users), self.num_items)}")
            exclude = self.exclude[users] if self.exclude is not None else None
            parts.append(held_out_positions(scores, self.held_out[users], exclude))
        positions = np.concatenate(parts) if parts else np.empty(0, np.int64)
        indptr = np.concatenate([[0], np.cumsum(np.diff(self.held_out.indptr)[self.users])])
        mean = _means(per_user_metrics(indptr, positions, self.k))
        return FullRankingEvaluation(self.k, mean["hr"], mean["ndcg"], mean["recall"],
                                     self.users, indptr, positions, self.num_candidates())

    def num_candidates(self) -> np.ndarray:
        """``(len(users),)`` candidates of each evaluated user: all items but its
        training items that are not held out."""
        if self.exclude is None:
            return np.full(len(self.users), self.num_items, np.int64)
        excluded = self.exclude[self.users] != 0
        kept = excluded.multiply(self.held_out[self.users] != 0)   # excluded, but held out
        counts = np.asarray(excluded.sum(axis=1) - kept.sum(axis=1), np.int64).ravel()
        return self.num_items - counts

    def evaluate(self, score_fn: ScoreFn) -> FullRankingEvaluation:
        """Scores every (user, item) of a block of users with one ``score_fn`` call."""
        return self.evaluate_all(score_all_from_pairs(score_fn, self.num_items))


def score_all_from_pairs(score_fn: ScoreFn, num_items: int) -> ScoreAllFn:
    """``score_all`` that scores ``users x range(num_items)`` with one pair call."""
    def score_all(users: np.ndarray) -> np.ndarray:
        users = np.asarray(users)
        pair_users = np.repeat(users, num_items).astype(np.int32)
        pair_items = np.tile(np.arange(num_items, dtype=np.int32), len(users))
        return np.asarray(score_fn(pair_users, pair_items)).reshape(len(users), num_items)
    return score_all
