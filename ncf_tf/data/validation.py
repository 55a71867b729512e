"""A validation split carved out of the training file, for model selection.

The paper tunes on "one interaction for each user as the validation data"
(sec. 4.1); choosing on the test set inflates the reported numbers. The
validation negatives are uniform among the items the user has in neither file
(a test item scored as a negative would reward ranking the user's future item low).
Which interaction is held out (``how``):

* ``"latest"``: the user's latest, as the test item was chosen: by
  ``train_timestamps`` (NaN is the oldest), ties broken by ``train_lines``,
  the earlier line being the later interaction (the files list each user's
  lines latest first). ml-1m users often rate many movies within one second,
  and the rebuilt ml-1m training file has placeholder timestamps (all 0)
  after user 188, so the line order is often the only record of time. Item id
  order would be biased: the authors' largest ids are the most obscure movies.
* ``"random"``: one drawn uniformly with the rng, the paper's wording.

A user with a single training interaction, or whose only candidate is the
test item (never held out), has no validation line.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import scipy.sparse as sp

from ncf_tf.core.arrays import ends_of_runs
from ncf_tf.data.loader import Dataset

How = Literal["latest", "random"]
HOWS = ("latest", "random")

# (user, item) cells given random keys at a time in the negative draw. Part of
# the rng's consumption: another size gives another split for one seed.
_NEGATIVE_BLOCK_ENTRIES = 1 << 22


def validation_split(dataset: Dataset, rng: np.random.Generator, how: How = "latest",
                     num_negatives: int = 99) -> Dataset:
    """Holds out one training interaction per user as a validation set.

    Args:
        dataset: the loaded data set; its test set only restricts the
            validation items and negatives.
        rng: draws the negatives and, for ``how="random"``, the held-out items.
        how: ``"latest"`` or ``"random"`` (see the module docstring).
        num_negatives: negatives per validation line (99 in the paper).

    Returns:
        A Dataset of the same shape named ``"<name>-validation-<how>"``: its
        ``test_*`` are the validation lines (in user order), its ``train*``
        the remaining training interactions.

    Raises:
        ValueError: ``how`` is unknown; ``how="latest"`` without timestamps
            or line numbers; ``num_negatives`` < 1 or larger than the number
            of items some validation user never interacted with.
    """
    if how not in HOWS:
        raise ValueError(f"how must be one of {', '.join(HOWS)}, got {how!r}")
    if not (isinstance(num_negatives, (int, np.integer)) and not isinstance(num_negatives, bool)
            and num_negatives >= 1):
        raise ValueError(f"num_negatives must be a positive integer, got {num_negatives!r}")
    if how == "latest" and dataset.train_timestamps is None and dataset.train_lines is None:
        raise ValueError(f"how='latest' needs timestamps or line numbers, but data set "
                         f"{dataset.name!r} has neither; use how='random'")

    train = dataset.train.tocsr()
    num_users, num_items = train.shape
    counts = np.diff(train.indptr)
    rows = np.repeat(np.arange(num_users), counts)
    cols = train.indices.astype(np.int64)

    # Candidates: not the user's test item, of users with >= 2 interactions.
    test_keys = dataset.test_users.astype(np.int64) * num_items + dataset.test_items
    candidate = np.flatnonzero(~np.isin(rows * num_items + cols, test_keys) & (counts[rows] >= 2))
    # Each user's last candidate by (user, key) is held out: the latest, or the
    # one with the largest uniform random key.
    keys = []   # lexsort's last key is the primary one
    if how == "random":
        keys.append(rng.random(len(candidate)))
    if how == "latest" and dataset.train_lines is not None:
        keys.append(-dataset.train_lines[candidate])   # an earlier line is later in time
    if how == "latest" and dataset.train_timestamps is not None:
        time = dataset.train_timestamps[candidate]
        keys.append(np.where(np.isnan(time), -np.inf, time))
    order = candidate[np.lexsort(keys + [rows[candidate]])]
    by_user = rows[order]
    last = ends_of_runs(by_user)
    users, positions = by_user[last], order[last]

    keep = np.ones(train.nnz, dtype=bool)
    keep[positions] = False
    new_train = sp.csr_matrix(
        (train.data[keep], train.indices[keep], np.concatenate([[0], np.cumsum(
            np.bincount(rows[keep], minlength=num_users))])),
        shape=train.shape)
    timestamps = None if dataset.train_timestamps is None else dataset.train_timestamps[keep]
    lines = None if dataset.train_lines is None else dataset.train_lines[keep]

    # Everything the user interacted with: the training file and the test file.
    seen = sp.csr_matrix((np.ones(train.nnz), train.indices, train.indptr), shape=train.shape)
    test = sp.csr_matrix((np.ones(len(dataset.test_users)),
                          (dataset.test_users, dataset.test_items)), shape=train.shape)
    negatives = sample_unseen((seen + test).tocsr(), users, num_negatives, rng)

    return dataclasses.replace(
        dataset, name=f"{dataset.name}-validation-{how}", train=new_train,
        test_users=users.astype(np.int32), test_items=cols[positions].astype(np.int32),
        test_negatives=negatives.astype(np.int32), files=dict(dataset.files),
        train_timestamps=timestamps, train_lines=lines)


def sample_unseen(seen: sp.csr_matrix, users: np.ndarray, num_negatives: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Distinct items drawn uniformly from those each user has not interacted with.

    Every item gets a uniform random key, interacted items key 2 (above any
    draw); the ``num_negatives`` smallest keys of a row are a uniformly random
    subset of the unseen items.

    Args:
        seen: ``(num_users, num_items)`` sparse, non-zero where the user
            interacted with the item.
        users: ``(n,)`` users to draw for, in this order.

    Returns:
        ``(n, num_negatives)`` int64, each row in increasing order of key;
        ValueError when a user has fewer unseen items.
    """
    seen = sp.csr_matrix(seen, copy=True)
    seen.sum_duplicates()
    seen.eliminate_zeros()
    num_items = seen.shape[1]
    unseen = num_items - np.diff(seen.indptr)[users]
    if len(users) and unseen.min() < num_negatives:
        user = int(users[np.argmin(unseen)])
        raise ValueError(f"num_negatives {num_negatives}: user {user} has only "
                         f"{unseen.min()} of {num_items} items never interacted with")
    negatives = np.empty((len(users), num_negatives), np.int64)
    block = max(1, _NEGATIVE_BLOCK_ENTRIES // max(num_items, 1))
    for first in range(0, len(users), block):
        part = users[first:first + block]
        keys = rng.random((len(part), num_items))
        keys[seen[part].nonzero()] = 2.0
        chosen = np.argpartition(keys, num_negatives - 1, axis=1)[:, :num_negatives]
        chosen_keys = np.take_along_axis(keys, chosen, axis=1)
        # Sorted by key: argpartition's order depends on the numpy version.
        negatives[first:first + len(part)] = np.take_along_axis(
            chosen, np.argsort(chosen_keys, axis=1, kind="stable"), axis=1)
    return negatives
