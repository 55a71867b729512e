"""The negative-sampling instance generator shared by GMF, MLP and NeuMF.

Each epoch, as the authors' code (paper, sec. 3.1.1, equation 7's log loss):
every training positive (u, i) once, label 1, and for each ``num_neg`` items j
uniform over all items, redrawn while (u, j) is a training positive, label 0
(test items are *not* excluded). All negatives are drawn in one pass and only
the collisions redrawn: the law of the original's one-at-a-time loop.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from ncf_tf.data.membership import membership

# Records per bucket of shuffle_records: 128 KiB of 8-byte records, in L2 cache.
BUCKET_SIZE = 1 << 14
MAX_BUCKETS = 256   # bucket numbers are one byte: one radix pass lays them out


def shuffle_records(records: np.ndarray, rng: np.random.Generator,
                    bucket_size: int = BUCKET_SIZE) -> np.ndarray:
    """A copy of the 1-d array ``records`` in uniformly random order.

    Rao-Sandelius shuffle: every record draws one of at most 256 buckets of
    about ``bucket_size``, uniformly and independently; the buckets are laid
    out one after another and each is shuffled on its own, in cache. Exactly
    uniform: the bucket draws do not depend on the records and every order
    within a bucket is equally likely, so the law of the output is invariant
    under relabelling the records, and only the uniform law is.
    """
    n = len(records)
    buckets = min(MAX_BUCKETS, -(-n // bucket_size))
    if buckets <= 1:
        out = records.copy()
        rng.shuffle(out)
        return out
    bucket = rng.integers(0, buckets, size=n, dtype=np.uint8)
    out = records[np.argsort(bucket, kind="stable")]
    counts = np.bincount(bucket, minlength=buckets)
    ends = np.cumsum(counts)
    for start, end in zip(ends - counts, ends):
        rng.shuffle(out[start:end])
    return out


@dataclasses.dataclass(frozen=True)
class Instances:
    """One epoch of training instances, each array of shape ``(n,)``."""

    users: np.ndarray   # int32, >= 0
    items: np.ndarray   # int32, >= 0
    labels: np.ndarray  # float32, 1 for positives, 0 for negatives

    def __len__(self) -> int:
        return len(self.users)

    def shuffled(self, rng: np.random.Generator) -> "Instances":
        """The same instances in a uniformly random order drawn from ``rng``."""
        pairs = np.empty((len(self), 2), np.int32)
        pairs[:, 0] = self.items
        positive = (self.labels == 1).view(np.uint8).astype(np.int32)
        np.bitwise_or(self.users, np.left_shift(positive, 31), out=pairs[:, 1])
        return _shuffled_records(pairs, rng)


def _shuffled_records(pairs: np.ndarray, rng: np.random.Generator) -> Instances:
    """The instances of ``(n, 2)`` int32 records (item; user, >= 0, with the
    label in its sign bit), each row shuffled as one 8-byte record."""
    n = len(pairs)
    pairs = shuffle_records(pairs.view(np.int64).reshape(n), rng).view(np.int32).reshape(n, 2)
    return Instances(pairs[:, 1] & np.int32(0x7FFFFFFF), pairs[:, 0].copy(),
                     (pairs[:, 1] < 0).astype(np.float32))


class NegativeSampler:
    """Draws exact uniform negatives for the positives of the CSR matrix ``train``,
    ``num_neg`` per positive.

    Raises:
        ValueError: ``num_neg`` < 0, or more than the items some user has not
            interacted with.
    """

    def __init__(self, train: sp.csr_matrix, num_neg: int):
        if num_neg < 0:
            raise ValueError(f"num_neg must be >= 0, got {num_neg}")
        train = train.tocsr()
        (self.num_users, self.num_items), self.num_neg = train.shape, num_neg
        coo = train.tocoo()
        self.pos_users = coo.row.astype(np.int32)
        self.pos_items = coo.col.astype(np.int32)
        available = self.num_items - np.diff(train.indptr)
        if num_neg > 0 and num_neg > available.min():
            user = int(np.argmin(available))
            raise ValueError(
                f"num_neg={num_neg}: user {user} can be paired with only "
                f"{available[user]} items that are not training positives "
                f"(of {self.num_items}); num_neg must not exceed that")
        self.positives = membership(self.pos_users, self.pos_items, self.num_users,
                                    self.num_items)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (users[k], items[k]) is a training positive."""
        return self.positives.contains(users, items)

    def negatives(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One uniform non-positive item for each entry of ``users``."""
        items = rng.integers(0, self.num_items, size=len(users), dtype=np.int32)
        redraw = np.flatnonzero(self.is_positive(users, items))
        while len(redraw):
            items[redraw] = rng.integers(0, self.num_items, size=len(redraw), dtype=np.int32)
            redraw = redraw[self.is_positive(users[redraw], items[redraw])]
        return items

    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``num_neg`` rounds of one negative for every positive: (users, items)."""
        neg_users = np.tile(self.pos_users, self.num_neg)
        return neg_users, self.negatives(neg_users, rng)

    def epoch(self, rng: np.random.Generator) -> Instances:
        """``sample(rng).shuffled(rng)``, written straight into the shuffle records."""
        num_pos = len(self.pos_users)
        neg_users, neg_items = self._draw(rng)
        pairs = np.empty((num_pos * (1 + self.num_neg), 2), np.int32)
        pairs[:num_pos, 0] = self.pos_items
        pairs[num_pos:, 0] = neg_items
        pairs[:num_pos, 1] = self.pos_users | np.int32(-2**31)   # label 1
        pairs[num_pos:, 1] = neg_users
        return _shuffled_records(pairs, rng)

    def sample(self, rng: np.random.Generator) -> Instances:
        """All positives (label 1), then ``num_neg`` rounds of one negative
        (label 0) for every positive; callers shuffle (:meth:`Instances.shuffled`)."""
        neg_users, neg_items = self._draw(rng)
        num_pos = len(self.pos_users)
        labels = np.zeros(num_pos * (1 + self.num_neg), np.float32)
        labels[:num_pos] = 1.0
        return Instances(np.concatenate([self.pos_users, neg_users]),
                         np.concatenate([self.pos_items, neg_items]), labels)
