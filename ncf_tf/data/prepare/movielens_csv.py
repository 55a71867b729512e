"""MovieLens-20M/25M ``ratings.csv`` -> the authors' files, in bounded memory.

``ratings.csv`` (``userId,movieId,rating,timestamp``, 20,000,263 lines for
ml-20m, 25,000,095 for ml-25m) is read in chunks of :data:`CHUNK_LINES` lines
into integer arrays (int32 ids, int16 half stars, int64 timestamps: 14 bytes
a line), never into a table of strings; every step after that is whole-array
numpy. The steps and their order are :mod:`ncf_tf.data.prepare.core`'s, and
on the same lines the files written are byte for byte the same as its
(``--format csv --user_col userId --item_col movieId --rating_col rating
--timestamp_col timestamp``), the id maps' headers aside:

1. a line is an interaction when its rating is > 0 (all are in MovieLens);
2. of repeated (user, item) pairs the latest line is kept;
3. users with fewer than ``max(min_interactions, 2)`` interactions are dropped;
4. optionally items seen only in held-out lines (``drop_cold_items``);
5. ids are 0-based, in order of first line in the file (ml-20m's lines are
   sorted by user, so MovieLens user k becomes k - 1; items by first rating);
6. each user's latest interaction is the test line, the others the training
   lines, grouped by user, latest first;
7. ``num_test_neg`` test negatives per user, uniform without replacement from
   the items the user never rated (:mod:`ncf_tf.data.prepare.negatives`).

"Latest": largest timestamp; of several lines at a user's latest timestamp,
``tie_break="last"`` (default) holds out the last in file order (in ml-20m,
sorted by movieId within a user, the largest movieId), ``"first"`` the first.
The MLPerf reference and the TensorFlow Model Garden instead sort by
timestamp with pandas' default, unstable sort, so at such ties their held-out
item is whichever that sort leaves last; no file-order rule reproduces it.

The MLPerf protocol (MLPerf training v0.5 recommendation, the Model Garden's
NCF): :data:`~ncf_tf.data.prepare.common.PROTOCOLS` ``["mlperf"]``, users with
at least 20 ratings (every ml-20m user has), the latest rating held out, 999
test negatives.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
import zlib

import numpy as np
import pandas as pd

from ncf_tf.data.prepare.common import (PrepareError, check_outputs, id_map_text,
                                        negative_chunks, output_paths, rating_chunks,
                                        write_staged)
from ncf_tf.data.prepare.core import TIE_BREAKS, PrepareStats, TieBreak
from ncf_tf.data.prepare.negatives import sample_test_negatives

FORMAT = "movielens-csv"   # its name for bin/prepare_data --format
HEADER = ("userId", "movieId", "rating", "timestamp")
CHUNK_LINES = 1 << 21
ID_HEADERS = ("movielens_user_id", "movielens_movie_id")


@dataclasses.dataclass(frozen=True)
class Ratings:
    """``ratings.csv`` as read, one entry per data line, in file order.

    Attributes:
        users, items: ``(n,)`` int32 MovieLens ids.
        half_stars: ``(n,)`` int16, the rating times 2 (MovieLens rates in
            half stars, so this is exact).
        timestamps: ``(n,)`` int64 seconds.
        source: the file name, for messages.
    """

    users: np.ndarray
    items: np.ndarray
    half_stars: np.ndarray
    timestamps: np.ndarray
    source: str


@dataclasses.dataclass(frozen=True)
class Split:
    """A prepared data set as arrays (0-based ids); what the files hold.

    Attributes:
        train: ``(user, item, half_stars, timestamp)`` arrays, grouped by user
            ascending, each user's lines latest first.
        test: the same, one line per user ``0..num_users-1``.
        test_negatives: ``(num_users, k)`` int32.
        user_ids, item_ids: MovieLens id of each internal id.
        stats: what the steps kept and dropped.
    """

    train: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    test_negatives: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    stats: PrepareStats

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def summary(self) -> str:
        """The loader's summary line (:meth:`ncf_tf.data.loader.Dataset.summary`)."""
        return (f"#user={self.num_users}, #item={self.num_items}, "
                f"#train={len(self.train[0])}, #test={len(self.test[0])}")


# ----------------------------------------------------------------------------
# Reading


def _open_text(path: str):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else \
        open(path, "rt", encoding="utf-8")


def _bad_value(path: str, column: pd.Series, first_line: int, what: str, kind: str,
               bad: np.ndarray) -> PrepareError:
    at = int(np.argmax(bad))
    value = column.iloc[at]
    if pd.isna(value) or not str(value).strip():
        return PrepareError(f"{path}, line {first_line + at}: {what} is empty (expected {kind})")
    return PrepareError(f"{path}, line {first_line + at}: {what} is {str(value)!r}, "
                        f"not {kind}")


def _column(path: str, chunk: pd.DataFrame, name: str, first_line: int,
            integer: bool) -> np.ndarray:
    """One column of a chunk as int64 (``integer``) or float64; PrepareError naming
    the first line that is not such a number (empty fields included)."""
    column = chunk[name]
    if column.dtype.kind == "i" and integer:
        return column.to_numpy(np.int64)
    values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if integer:
        bad |= values != np.floor(values)
    if bad.any():
        raise _bad_value(path, column.astype(str), first_line, name,
                          "an integer" if integer else "a number", bad)
    return values.astype(np.int64) if integer else values


def read_ratings_csv(path: str, chunk_lines: int = CHUNK_LINES) -> Ratings:
    """Reads MovieLens-20M/25M's ``ratings.csv`` (plain or ``.gz``) in chunks.

    Peak memory is the arrays (14 bytes a line) plus one chunk being parsed.

    Raises:
        PrepareError: the file is missing or empty, its header is not
            ``userId,movieId,rating,timestamp``, a line has another number of
            fields, an id or timestamp is not an integer in range, a rating is
            not a multiple of 0.5.
    """
    try:
        with _open_text(path) as f:
            header = f.readline()
    except FileNotFoundError:
        raise PrepareError(f"{path}: file not found") from None
    except (UnicodeDecodeError, EOFError, OSError, zlib.error) as e:
        raise PrepareError(f"{path}: cannot read ({e})") from None
    if not header.strip():
        raise PrepareError(f"{path}: file is empty")
    if tuple(field.strip() for field in header.strip().split(",")) != HEADER:
        raise PrepareError(f"{path}, line 1: header is {header.strip()[:80]!r}, expected "
                           f"{','.join(HEADER)} (MovieLens-20M/25M ratings.csv)")
    parts: list[list[np.ndarray]] = [[], [], [], []]
    first_line = 2
    try:
        reader = pd.read_csv(path, sep=",", header=0, chunksize=chunk_lines, engine="c",
                             skip_blank_lines=True, compression="infer")
        for chunk in reader:
            if not len(chunk):
                continue
            users = _column(path, chunk, "userId", first_line, integer=True)
            items = _column(path, chunk, "movieId", first_line, integer=True)
            ratings = _column(path, chunk, "rating", first_line, integer=False)
            stamps = _column(path, chunk, "timestamp", first_line, integer=True)
            for what, ids in (("userId", users), ("movieId", items)):
                bad = (ids < 0) | (ids >= 1 << 31)
                if bad.any():
                    raise _bad_value(path, chunk[what].astype(str), first_line, what,
                                     "an id in 0..2^31-1", bad)
            halves = ratings * 2
            bad = (halves != np.round(halves)) | (np.abs(halves) >= 1 << 15)
            if bad.any():
                raise _bad_value(path, chunk["rating"].astype(str), first_line, "rating",
                                 "a multiple of 0.5 (MovieLens rates in half stars)", bad)
            for part, values, dtype in zip(parts, (users, items, halves, stamps),
                                           (np.int32, np.int32, np.int16, np.int64)):
                part.append(values.astype(dtype))
            first_line += len(chunk)
    except pd.errors.ParserError as e:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if found:
            expected, line, saw = found.groups()
            raise PrepareError(f"{path}, line {line}: {saw} fields, expected {expected} "
                               f"({','.join(HEADER)})") from None
        raise PrepareError(f"{path}: cannot parse ({str(e).strip().splitlines()[0]})") from None
    except (UnicodeDecodeError, EOFError, OSError, zlib.error) as e:
        raise PrepareError(f"{path}: cannot read ({e})") from None
    if not parts[0]:
        raise PrepareError(f"{path}: no data lines after the header")
    columns = [np.concatenate(part) if len(part) > 1 else part[0] for part in parts]
    return Ratings(*columns, source=path)


# ----------------------------------------------------------------------------
# The steps, whole-array


def _recency_order(users: np.ndarray, stamps: np.ndarray, tie_break: TieBreak) -> np.ndarray:
    """Permutation sorting by (user, timestamp, file position per ``tie_break``).

    "last": ties in file order, so the last line of a tie ends the user's run
    (is the latest); "first": ties in reverse file order.
    """
    n = len(users)
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


def _latest(users: np.ndarray) -> np.ndarray:
    """True at the last row of each run of equal ``users`` (sorted by recency: the latest)."""
    last = np.ones(len(users), bool)
    np.not_equal(users[1:], users[:-1], out=last[:-1])
    return last


def _keep(columns: list[np.ndarray], mask: np.ndarray) -> list[np.ndarray]:
    return columns if mask.all() else [c[mask] for c in columns]


def _renumber(codes: np.ndarray, originals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense 0-based codes for the codes still present, keeping their order."""
    present = np.bincount(codes, minlength=len(originals)) > 0
    new = np.cumsum(present, dtype=np.int64) - 1
    return new[codes].astype(np.int32), originals[present]


def split(ratings: Ratings, rng: np.random.Generator, *, min_interactions: int = 0,
          num_test_neg: int = 99, tie_break: TieBreak = "last",
          drop_cold_items: bool = False) -> Split:
    """Steps 1-7 of the module docstring on arrays.

    Raises:
        PrepareError: bad options; no user left; an item seen only in
            held-out lines has the largest id (the files would not load); a
            user has fewer than ``num_test_neg`` items left.
    """
    if tie_break not in TIE_BREAKS:
        raise PrepareError(f"tie_break {tie_break!r} is not one of {', '.join(TIE_BREAKS)}")
    if min_interactions < 0:
        raise PrepareError(f"min_interactions must be >= 0, got {min_interactions}")
    if num_test_neg < 1:
        raise PrepareError(f"num_test_neg must be >= 1, got {num_test_neg}")
    stats = {"lines": len(ratings.users)}
    # Ids by first line in the file, any line (pandas' factorize keeps that order).
    user_codes, user_originals = pd.factorize(ratings.users)
    item_codes, item_originals = pd.factorize(ratings.items)
    columns = [user_codes.astype(np.int32), item_codes.astype(np.int32), ratings.half_stars,
               ratings.timestamps]
    del user_codes, item_codes
    positive = ratings.half_stars > 0
    stats["nonpositive"] = int((~positive).sum())
    columns = _keep(columns, positive)

    order = _recency_order(columns[0], columns[3], tie_break)
    columns = [c[order] for c in columns]
    del order
    # Repeated pairs: rare (MovieLens has none), so a sort tells first.
    pairs = columns[0].astype(np.int64) * len(item_originals) + columns[1]
    ranked = np.sort(pairs)
    stats["duplicates"] = int(np.count_nonzero(ranked[1:] == ranked[:-1]))
    del ranked
    if stats["duplicates"]:
        # In recency order, keep each pair's last (latest) line.
        by_pair = np.argsort(pairs, kind="stable")
        repeated = np.zeros(len(pairs), bool)
        repeated[by_pair[:-1]] = pairs[by_pair[1:]] == pairs[by_pair[:-1]]
        columns = _keep(columns, ~repeated)
    del pairs

    threshold = max(min_interactions, 2)
    sizes = np.bincount(columns[0], minlength=len(user_originals))
    small = sizes[columns[0]] < threshold
    stats["threshold"] = threshold
    stats["users_dropped"] = int(np.count_nonzero((sizes > 0) & (sizes < threshold)))
    stats["user_lines_dropped"] = int(small.sum())
    columns = _keep(columns, ~small)
    if drop_cold_items:
        columns, stats["cold_items"], stats["cold_users"], stats["cold_lines"] = \
            _drop_cold_items(columns, len(item_originals))
    if not len(columns[0]):
        raise PrepareError(f"{ratings.source}: no user has {threshold} or more interactions "
                           "(lines with rating > 0)")
    users, user_ids = _renumber(columns[0], user_originals)
    items, item_ids = _renumber(columns[1], item_originals)
    columns = [users, items, columns[2], columns[3]]

    # Leave-one-out. Rows are grouped by user, oldest first; each group is
    # read backwards: its first row out (the latest) is the test line.
    n = len(users)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    sizes = np.diff(np.r_[starts, n])
    ends = np.repeat(starts + sizes, sizes)
    position = np.arange(n) - np.repeat(starts, sizes)
    backwards = ends - 1 - position
    held_out = position == 0
    test = tuple(c[backwards[held_out]] for c in columns)
    train = tuple(c[backwards[~held_out]] for c in columns)
    del backwards, ends, position

    loadable = int(train[1].max()) + 1 if len(train[1]) else 0
    if loadable < len(item_ids):
        raise PrepareError(
            f"{ratings.source}: item {str(item_ids[-1])!r} (id {len(item_ids) - 1}) occurs only "
            "in held-out test lines and has the largest id; the authors' format takes #items "
            "from the training file, so the files would not load; drop such items with "
            "--drop_cold_items")
    negatives = sample_test_negatives(users, items, len(user_ids), len(item_ids),
                                      num_test_neg, rng,
                                      user_names=user_ids.astype(str).astype(object))
    return Split(train=train, test=test, test_negatives=negatives, user_ids=user_ids,
                 item_ids=item_ids, stats=PrepareStats(**stats))


def _drop_cold_items(columns: list[np.ndarray], num_items: int):
    """Step 4, repeated until no item is seen only in held-out lines; rows sorted by
    user, oldest first. Returns (columns, items, users, rows) dropped."""
    gone = np.zeros(num_items, bool)
    users_lost = rows = 0
    while True:
        latest = _latest(columns[0])
        trained = np.zeros(num_items, bool)
        trained[columns[1][~latest]] = True
        cold = latest & ~trained[columns[1]]
        if not cold.any():
            return columns, int(gone.sum()), users_lost, rows
        gone[columns[1][cold]] = True
        rows += int(cold.sum())
        columns = _keep(columns, ~cold)
        sizes = np.bincount(columns[0])
        small = sizes[columns[0]] < 2
        users_lost += int(np.count_nonzero((sizes > 0) & (sizes < 2)))
        rows += int(small.sum())
        columns = _keep(columns, ~small)


# ----------------------------------------------------------------------------
# Writing


def _rating_texts(half_stars: np.ndarray) -> tuple[int, list[str]]:
    """(lowest, texts): ``texts[h - lowest]`` is the text of rating h / 2: whole
    numbers as integers when all ratings are (like ``ratings.dat``'s), else as
    Python writes the float (``3.5``, ``4.0``), as pandas would."""
    low, high = int(half_stars.min()), int(half_stars.max())
    whole = not np.any(half_stars % 2)
    return low, [str(v // 2) if whole else repr(v / 2) for v in range(low, high + 1)]


def write_split(data: Split, dest: str, name: str, overwrite: bool = False) -> list[str]:
    """Writes the five files of ``data``, all or nothing; returns their paths."""
    check_outputs(dest, name, overwrite)
    low, texts = _rating_texts(np.concatenate([data.train[2], data.test[2]]))

    def lines(part):
        users, items, half_stars, stamps = part
        return rating_chunks(users, items, (half_stars.astype(np.int64) - low, texts), stamps)

    contents = [lines(data.train), lines(data.test),
                negative_chunks(data.test[0], data.test[1], data.test_negatives),
                id_map_text(data.user_ids, "user", ID_HEADERS[0]),
                id_map_text(data.item_ids, "item", ID_HEADERS[1])]
    return write_staged(dest, name, list(zip(output_paths(dest, name), contents)))


def prepare_movielens_csv(input_path: str, dest: str, name: str, rng: np.random.Generator, *,
                          min_interactions: int = 0, num_test_neg: int = 99,
                          tie_break: TieBreak = "last", drop_cold_items: bool = False,
                          overwrite: bool = False, chunk_lines: int = CHUNK_LINES) -> Split:
    """Reads ``ratings.csv`` in chunks, splits it and writes the five files.

    Args: as :func:`ncf_tf.data.prepare.core.prepare`; ``chunk_lines`` lines
    are parsed at a time.

    Raises:
        PrepareError: bad input or options (one line); nothing is written.
    """
    check_outputs(dest, name, overwrite)  # fail before the slow part
    ratings = read_ratings_csv(input_path, chunk_lines)
    data = split(ratings, rng, min_interactions=min_interactions, num_test_neg=num_test_neg,
                 tie_break=tie_break, drop_cold_items=drop_cold_items)
    del ratings
    write_split(data, dest, name, overwrite)
    return data
