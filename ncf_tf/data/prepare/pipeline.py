"""Interactions -> the authors' leave-one-out files, whole-array (``bin/prepare_data``).

He et al. (2017), section 4.1: each user's latest interaction is held out and
ranked against 99 items the user did not interact with. The steps, in order:

1. A line is an interaction when its rating is > 0 (without a rating column
   every line is one, written with rating 1).
2. Of several lines for one (user, item) pair, keep the latest.
3. Drop users with fewer than ``max(min_interactions, 2)`` distinct
   interactions (the paper keeps >= 20; a user needs a training and a test one).
4. Optional (``drop_cold_items``): drop items whose only interactions are
   held-out test lines and users left with fewer than 2, hold out again,
   until none is left. Off by default: the authors kept such items (ml-1m's
   1805 and 3569 occur only in the test file).
5. Ids: 0-based, in order of the first input line naming them (kept or not),
   as the authors' ml-1m item ids were made (``ratings.dat`` is sorted by
   user: MovieLens user k becomes k - 1).
6. Leave-one-out: each user's latest interaction is the test line, the rest
   training lines, grouped by user and latest first (like the authors' file).
7. Test negatives: ``num_test_neg`` items per user, uniform without
   replacement among the items the user never interacted with, in training
   or test. The authors excluded training items only (156 of their 6,040
   ml-1m lines list the test item among its negatives); not reproduced.

"Latest" is one total order: by timestamp, ties broken by file position per
``tie_break`` (``"last"``: the last tied line is the latest; ``"first"``: the
first); without timestamps the file order is the time. It also picks the line
kept among duplicates and sorts each user's training lines.

Why "last": 1,667 ml-1m users have several ratings at their latest timestamp.
In the authors' files (users 0-188 are their bytes), where the file order of
two tied lines can be recovered, the test item is the later one in 5 of 6
pairs, and user 0's three lines at 978824291 are in neither file order nor its
reverse: an unstable sort, which no file-order rule reproduces exactly; "last"
comes closest. MLPerf and the TF Model Garden (ml-20m) also sort with pandas'
unstable default, so their held-out item at a tie is whichever it leaves last.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from ncf_tf.core.arrays import ends_of_runs, starts_of_runs
from ncf_tf.data.loader import summary
from ncf_tf.data.prepare.common import (OUTPUT_SUFFIXES, PrepareError, check_outputs,
                                        id_map_text, negative_chunks, rating_chunks,
                                        repeats, write_group)
from ncf_tf.data.prepare.negatives import sample_test_negatives
from ncf_tf.data.prepare.readers import Interactions, read_interactions

TIE_BREAKS = ("first", "last")
TieBreak = Literal["first", "last"]


@dataclasses.dataclass(frozen=True)
class PrepareStats:
    """What the steps dropped (counts of input lines unless named)."""

    lines: int
    nonpositive: int = 0
    duplicates: int = 0
    threshold: int = 2
    users_dropped: int = 0
    user_lines_dropped: int = 0
    cold_items: int = 0
    cold_users: int = 0
    cold_lines: int = 0

    def describe(self) -> list[str]:
        """Human-readable lines, one per step that dropped something."""
        text = [f"Read {self.lines} lines"]
        if self.nonpositive:
            text.append(f"Dropped {self.nonpositive} lines with rating <= 0 (not an interaction)")
        if self.duplicates:
            text.append(f"Dropped {self.duplicates} repeated (user, item) lines, keeping the "
                        "latest of each pair")
        if self.users_dropped:
            text.append(f"Dropped {self.users_dropped} users with fewer than {self.threshold} "
                        f"interactions ({self.user_lines_dropped} lines)")
        if self.cold_items:
            text.append(f"Dropped {self.cold_items} items that occurred only in held-out test "
                        f"lines ({self.cold_lines} lines, {self.cold_users} users left with "
                        "fewer than 2 interactions)")
        return text


@dataclasses.dataclass(frozen=True)
class Split:
    """A prepared data set as arrays (0-based ids); what the files hold.

    Attributes:
        train: ``(users, items, ratings, timestamps)``: all but each user's
            latest interaction, grouped by user, latest first; ratings are
            codes into ``rating_values``, timestamps None without any.
        test: the same, each user's latest, for users ``0..num_users-1``.
        test_negatives: ``(num_users, k)``: distinct items the user never
            interacted with.
        user_ids, item_ids: the original id of each internal id.
    """

    train: tuple
    test: tuple
    rating_values: np.ndarray
    test_negatives: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_header: str
    item_header: str
    stats: PrepareStats

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def summary(self) -> str:
        return summary(self.num_users, self.num_items, len(self.train[0]), len(self.test[0]))


def _recency_order(users: np.ndarray, stamps: np.ndarray | None,
                   tie_break: TieBreak) -> np.ndarray:
    """Permutation sorting by (user, timestamp, file position per ``tie_break``):
    "last" keeps ties in file order, so the last line of a tie is the latest;
    "first" reverses them."""
    n = len(users)
    if stamps is None:
        return np.argsort(users, kind="stable")
    if stamps.dtype.kind == "i":
        span = int(stamps.max()) - int(stamps.min()) if n else 0
        user_bits = max(int(users.max()), 1).bit_length() if n else 1
        if span.bit_length() + user_bits <= 62:
            # One int64 key and one stable sort instead of a three-key lexsort.
            key = (users.astype(np.int64) << span.bit_length()) | (stamps - stamps.min())
            if tie_break == "last":
                return np.argsort(key, kind="stable")
            return (n - 1) - np.argsort(key[::-1], kind="stable")
    line = np.arange(n)
    return np.lexsort((line if tie_break == "last" else -line, stamps, users))


def _take(columns: list, index: np.ndarray) -> list:
    return [None if c is None else c[index] for c in columns]


def _keep(columns: list, mask: np.ndarray) -> list:
    return columns if mask.all() else _take(columns, mask)


def _renumber(codes: np.ndarray, originals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense 0-based codes for the codes still present, keeping their order."""
    present = np.bincount(codes, minlength=len(originals)) > 0
    new = np.cumsum(present, dtype=np.int64) - 1
    return new[codes].astype(np.int32), originals[present]


def _drop_small_users(columns: list, threshold: int) -> tuple[list, int, int]:
    """Drops users with fewer than ``threshold`` rows; returns (columns, users, rows) dropped."""
    sizes = np.bincount(columns[0])
    small = sizes[columns[0]] < threshold
    return (_keep(columns, ~small), int(np.count_nonzero((sizes > 0) & (sizes < threshold))),
            int(small.sum()))


def _drop_cold_items(columns: list, num_items: int) -> tuple[list, int, int, int]:
    """Step 4 on rows sorted by user, oldest first; returns (columns, items, users,
    rows) dropped."""
    gone = np.zeros(num_items, bool)
    users_lost = rows = 0
    while True:
        latest = ends_of_runs(columns[0])   # each user's last row
        trained = np.zeros(num_items, bool)
        trained[columns[1][~latest]] = True
        cold = latest & ~trained[columns[1]]
        if not cold.any():
            return columns, int(gone.sum()), users_lost, rows
        gone[columns[1][cold]] = True
        rows += int(cold.sum())
        columns, lost_users, lost_rows = _drop_small_users(_keep(columns, ~cold), 2)
        users_lost += lost_users
        rows += lost_rows


def split(data: Interactions, rng: np.random.Generator, *, min_interactions: int = 0,
          num_test_neg: int = 99, tie_break: TieBreak = "last",
          drop_cold_items: bool = False) -> Split:
    """Steps 1-7 of the module docstring.

    Args:
        data: interactions from a reader or :meth:`Interactions.from_arrays`.
        rng: draws the test negatives (the only randomness).
        min_interactions: drop users with fewer distinct interactions (the
            paper: 20); users with fewer than 2 are always dropped.
        num_test_neg: negatives per test line (the authors': 99).
        tie_break: ``"first"`` or ``"last"``: which tied line is the latest.
        drop_cold_items: drop items that occur only in held-out test lines.

    Raises:
        PrepareError: bad options; no user left; a user has too few items left
            for the negatives; an item only in test lines has the largest id
            (the files would not load: #items is taken from the training file).
    """
    if tie_break not in TIE_BREAKS:
        raise PrepareError(f"tie_break {tie_break!r} is not one of {', '.join(TIE_BREAKS)}")
    if min_interactions < 0:
        raise PrepareError(f"min_interactions must be >= 0, got {min_interactions}")
    if num_test_neg < 1:
        raise PrepareError(f"num_test_neg must be >= 1, got {num_test_neg}")
    positive = data.rating_values[data.ratings] > 0
    stats = {"lines": len(data.users), "nonpositive": int((~positive).sum())}
    columns = _keep([data.users, data.items, data.ratings, data.timestamps], positive)

    columns = _take(columns, _recency_order(columns[0], columns[3], tie_break))
    # Repeated pairs: rare (MovieLens has none), so a sort (cheaper than
    # repeats' stable argsort) tells first.
    pairs = columns[0].astype(np.int64) * len(data.item_ids) + columns[1]
    ranked = np.sort(pairs)
    stats["duplicates"] = int(np.count_nonzero(ranked[1:] == ranked[:-1]))
    del ranked
    if stats["duplicates"]:
        # In recency order, keep each pair's last (latest) line.
        columns = _keep(columns, ~repeats(pairs, keep_last=True))
    del pairs

    stats["threshold"] = threshold = max(min_interactions, 2)
    columns, stats["users_dropped"], stats["user_lines_dropped"] = \
        _drop_small_users(columns, threshold)
    if drop_cold_items:
        columns, stats["cold_items"], stats["cold_users"], stats["cold_lines"] = \
            _drop_cold_items(columns, len(data.item_ids))
    if not len(columns[0]):
        raise PrepareError(f"{data.source}: no user has {threshold} or more interactions "
                           "(lines with rating > 0)")
    users, user_ids = _renumber(columns[0], data.user_ids)
    items, item_ids = _renumber(columns[1], data.item_ids)
    columns = [users, items, columns[2], columns[3]]

    # Leave-one-out. Rows are grouped by user, oldest first; each group is
    # read backwards: its first row out (the latest) is the test line.
    first = starts_of_runs(users)
    starts = np.flatnonzero(first)
    sizes = np.diff(np.r_[starts, len(users)])
    backwards = np.repeat(2 * starts + sizes - 1, sizes) - np.arange(len(users))
    test = tuple(_take(columns, backwards[first]))
    train = tuple(_take(columns, backwards[~first]))
    del backwards

    loadable = int(train[1].max()) + 1 if len(train[1]) else 0
    if loadable < len(item_ids):
        raise PrepareError(
            f"{data.source}: item {str(item_ids[-1])!r} (id {len(item_ids) - 1}) occurs only "
            "in held-out test lines and has the largest id; the authors' format takes #items "
            "from the training file, so the files would not load",
            suggest={"drop_cold_items": True})
    negatives = sample_test_negatives(users, items, len(user_ids), len(item_ids),
                                      num_test_neg, rng,
                                      user_names=user_ids.astype(str).astype(object))
    return Split(train=train, test=test, rating_values=data.rating_values,
                 test_negatives=negatives, user_ids=user_ids, item_ids=item_ids,
                 user_header=data.user_header, item_header=data.item_header,
                 stats=PrepareStats(**stats))


# ----------------------------------------------------------------------------
# Writing


def _number_texts(values: np.ndarray) -> list[str]:
    """Each value's text: as integers when all are whole, else as floats (``3.5``, ``4.0``)."""
    whole = bool(np.all(values == np.floor(values)) and np.all(np.abs(values) < 2.0 ** 63))
    return [str(int(v)) if whole else repr(float(v)) for v in values]


def _timestamp_text(part: tuple) -> tuple[np.ndarray, list[str] | None]:
    """Timestamps as :func:`~ncf_tf.data.prepare.common.rating_chunks` takes them."""
    stamps = part[3]
    if stamps is None:
        return np.zeros(len(part[0]), np.int64), None
    if stamps.dtype.kind == "i":
        return stamps, None
    distinct, codes = np.unique(stamps, return_inverse=True)
    return codes, [repr(float(v)) for v in distinct]


def write_split(data: Split, dest: str, name: str, overwrite: bool = False) -> list[str]:
    """Writes the five files of ``data``, all or nothing (PrepareError as
    :func:`~ncf_tf.data.prepare.common.write_group`); returns their paths."""
    used = np.flatnonzero(np.bincount(np.concatenate([data.train[2], data.test[2]]),
                                      minlength=len(data.rating_values)))
    texts = [""] * len(data.rating_values)
    for code, text in zip(used, _number_texts(data.rating_values[used])):
        texts[code] = text

    def lines(part):
        return rating_chunks(part[0], part[1], (part[2], texts), *_timestamp_text(part))

    contents = [lines(data.train), lines(data.test),
                negative_chunks(data.test[0], data.test[1], data.test_negatives),
                id_map_text(data.user_ids, "user", data.user_header),
                id_map_text(data.item_ids, "item", data.item_header)]
    return write_group(dest, name, "prepare", OUTPUT_SUFFIXES, contents, overwrite)


def prepare(input_path: str, dest: str, name: str, rng: np.random.Generator, *,
            fmt: str = "movielens", min_interactions: int = 0, num_test_neg: int = 99,
            tie_break: TieBreak = "last", drop_cold_items: bool = False,
            overwrite: bool = False, **read_options) -> Split:
    """Reads ``input_path`` (plain or gzipped; ``fmt`` and ``read_options`` as
    :func:`~ncf_tf.data.prepare.readers.read_interactions` takes them), splits
    it (the other options as :func:`split`'s) and writes ``<dest>/<name>.*``,
    replacing existing files only with ``overwrite``; returns the split.

    Raises:
        PrepareError: bad input or options; nothing is written.
    """
    check_outputs(dest, name, overwrite)  # fail before the slow part
    raw = read_interactions(input_path, fmt, **read_options)
    data = split(raw, rng, min_interactions=min_interactions, num_test_neg=num_test_neg,
                 tie_break=tie_break, drop_cold_items=drop_cold_items)
    del raw
    write_split(data, dest, name, overwrite)
    return data
