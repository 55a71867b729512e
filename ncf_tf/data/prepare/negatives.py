"""Test negatives: exact, seeded, vectorised (:func:`sample_test_negatives`), and
new ones for an existing data set (:func:`resample_negatives`, e.g. ``ml-1m-neg999``)."""

from __future__ import annotations

import os

import numpy as np

from ncf_tf.core.arrays import distinct_sorted
from ncf_tf.core.files import open_input
from ncf_tf.data import loader
from ncf_tf.data.prepare.common import (PrepareError, check_outputs, negative_chunks,
                                        repeats, write_group)

# Cells of the (user, item) table of a block of users drawn together.
BLOCK_CELLS = 1 << 24
NEGATIVE_SUFFIXES = loader.SUFFIXES   # the files a data set is read from


def _draw_block(first: int, positives: np.ndarray, taken: np.ndarray, skip: np.ndarray,
                num_items: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Rejection sampling for the ``len(taken) // num_items`` users from ``first``.

    Args:
        positives: sorted ``user * num_items + item`` keys of the block's
            interactions.
        taken: all-False bool scratch, one cell per (user, item) of the block
            (left all-False again).
        skip: ``(users,)`` bool: rows not to complete (drawn elsewhere).

    Returns ``(users, k)`` int32, row r for user ``first + r``.

    Each slot draws uniformly over all items until a draw is kept; a draw is
    rejected when the user interacted with it, the row already kept it, or an
    earlier slot of the row drew it in the same pass. Rejection depends only on
    which draws are equal, never on the item ids, so every ordered tuple of k
    distinct non-interacted items is equally likely.
    """
    users = len(taken) // num_items
    local = positives - first * num_items
    taken[local] = True
    small = np.uint16 if num_items <= 1 << 16 else np.int64
    candidates = rng.integers(0, num_items, (users, k), dtype=small)
    # First pass, whole rows: a per-row stable sort puts repeats side by side;
    # the smaller slot keeps the item.
    order = np.argsort(candidates, axis=1, kind="stable")
    ranked = np.take_along_axis(candidates, order, axis=1)
    rejected = np.zeros(ranked.shape, bool)
    rejected[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    keys = np.arange(users, dtype=np.int64)[:, None] * num_items + ranked
    rejected |= taken[keys]
    accepted = keys[~rejected]
    taken[accepted] = True
    out = candidates.astype(np.int32 if num_items < 1 << 31 else np.int64)
    pending = np.zeros(ranked.shape, bool)
    np.put_along_axis(pending, order, rejected, axis=1)
    pending[skip] = False
    del order, ranked, keys, rejected, candidates
    row, slot = np.nonzero(pending)                     # row-major: slot order within a row
    later = []
    while len(row):
        draws = rng.integers(0, num_items, len(row))
        keys = row * num_items + draws
        good = ~(taken[keys] | repeats(keys))
        out[row[good], slot[good]] = draws[good]
        taken[keys[good]] = True
        later.append(keys[good])
        row, slot = row[~good], slot[~good]
    taken[local] = False
    taken[accepted] = False
    for keys in later:
        taken[keys] = False
    return out


def sample_test_negatives(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int,
                          num_test_neg: int, rng: np.random.Generator,
                          user_names: np.ndarray | None = None) -> np.ndarray:
    """Draws ``k = num_test_neg`` test negatives for every user.

    Args:
        users, items: ``(n,)`` every interaction (train and test).
        user_names: original user ids, for the error message.

    Returns:
        ``(num_users, k)`` int32 (int64 from 2^31 items): row u holds k
        distinct items drawn uniformly without replacement from those user u
        never interacted with. Users with fewer than ``k + num_items / 4``
        items left draw from them directly, the others by rejection.
        PrepareError names the first user who has fewer than k items left.
    """
    k = num_test_neg
    keys = distinct_sorted(np.asarray(users, np.int64) * num_items + np.asarray(items, np.int64))
    owner = keys // num_items
    distinct = np.bincount(owner, minlength=num_users)
    short = num_items - distinct < k
    if short.any():
        user = int(np.argmax(short))
        name = f" ({user_names[user]!r} in the input)" if user_names is not None else ""
        raise PrepareError(f"user {user}{name} interacted with {distinct[user]} of the "
                           f"{num_items} items, leaving {num_items - distinct[user]} for "
                           f"{k} test negatives; lower num_test_neg")
    bounds = np.searchsorted(owner, np.arange(num_users + 1))
    negatives = np.empty((num_users, k), np.int32 if num_items < 1 << 31 else np.int64)
    dense = num_items - distinct < k + num_items / 4
    seen = np.zeros(num_items, bool)
    for user in np.flatnonzero(dense):                  # few: heavy users only
        mine = keys[bounds[user]:bounds[user + 1]] - user * num_items
        seen[mine] = True
        negatives[user] = rng.choice(np.flatnonzero(~seen), size=k, replace=False)
        seen[mine] = False
    block = max(1, BLOCK_CELLS // num_items)
    taken = np.zeros(block * num_items, bool)
    for first in range(0, num_users, block):
        last = min(first + block, num_users)
        skip = dense[first:last]
        if skip.all():
            continue
        drawn = _draw_block(first, keys[bounds[first]:bounds[last]],
                            taken[:(last - first) * num_items], skip, num_items, k, rng)
        negatives[first:last][~skip] = drawn[~skip]
    return negatives


def _plain_text(path: str):
    """The bytes of a plain or gzipped file, in 1 MiB chunks."""
    with open_input(path, binary=True) as f:
        yield from iter(lambda: f.read(1 << 20), b"")


def resample_negatives(source: str, dest: str, name: str, num_test_neg: int,
                       rng: np.random.Generator, overwrite: bool = False) -> dict:
    """Copies a data set's train and test files and draws new test negatives.

    Args:
        source: path prefix of the data set, e.g. ``Data/ml-1m`` (plain or ``.gz``).
        dest: output folder; the train and test files are copied, uncompressed.
        name: the new data set's name, e.g. ``ml-1m-neg999``.
        num_test_neg: negatives per test line, k, as :func:`sample_test_negatives`'.
        overwrite: replace existing outputs instead of refusing.

    Returns:
        ``{"users", "items", "train", "test"}`` counts, for the report.

    Raises:
        PrepareError: a file is missing or malformed, a test item is out of
            range, a user has fewer than k items left.
    """
    folder, base = os.path.split(source)
    check_outputs(dest, name, overwrite, NEGATIVE_SUFFIXES, "resample")
    try:
        train_path, test_path = (loader.find_file(folder or ".", base, suffix)
                                 for suffix in NEGATIVE_SUFFIXES[:2])
        train_users, train_items, _ = loader.read_ratings(train_path)
        test_users, test_items, _ = loader.read_ratings(test_path)
        num_users, num_items = int(train_users.max()) + 1, int(train_items.max()) + 1
        loader.check_in_range(test_path, test_users, test_items, num_users, num_items)
    except loader.DataError as e:
        raise PrepareError(str(e)) from None
    per_user = sample_test_negatives(np.concatenate([train_users, test_users]),
                                     np.concatenate([train_items, test_items]),
                                     num_users, num_items, num_test_neg, rng)
    # One row per test line: a user with two test lines would get one draw twice.
    negatives = per_user[test_users]
    write_group(dest, name, "resample", NEGATIVE_SUFFIXES,
                [_plain_text(train_path), _plain_text(test_path),
                 negative_chunks(test_users, test_items, negatives)], overwrite)
    return {"users": num_users, "items": num_items, "train": len(train_users),
            "test": len(test_users)}

