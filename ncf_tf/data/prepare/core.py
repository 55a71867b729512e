"""Raw interactions, read whole -> the authors' leave-one-out files (``bin/prepare_data``).

He et al. (2017), section 4.1: every rating is an implicit interaction; each
user's latest interaction is held out for testing (leave-one-out) and ranked
against 99 items the user did not interact with. This module builds the files
:func:`ncf_tf.data.loader.load_dataset` reads, from MovieLens's ``ratings.dat``
(``user::item::rating::timestamp``) or from a CSV/TSV file with a header.

Steps, in this order:

1. Read. A line is an interaction when its rating is > 0 (without a rating
   column every line is one, written with rating 1).
2. Duplicates: of several lines for one (user, item) pair, keep the latest.
3. Users with fewer than ``max(min_interactions, 2)`` distinct interactions
   are dropped: the paper keeps users with at least 20 (``min_interactions=20``;
   MovieLens-1M already satisfies this), and a user needs at least 2 to have
   both a training and a test interaction.
4. Optional (``drop_cold_items``): drop items whose only interactions are
   held-out test lines, drop users left with fewer than 2, hold out again,
   and repeat until no such item is left (min_interactions is not re-applied).
   Off by default: the authors kept such items (ml-1m has two: their items
   1805 and 3569 occur only in the test file).
5. Ids: 0-based, for the users and items left, in order of their first
   line in the input file (any line naming them, kept or not). This is how
   the authors' ml-1m item ids were made (order of first appearance of each
   movie in ``ratings.dat``); ``ratings.dat`` is sorted by user, so
   MovieLens user k becomes user k - 1.
6. Leave-one-out: each user's latest interaction is the test line, the rest
   are training lines, written grouped by user and latest first (like the
   authors' ml-1m file).
7. Test negatives: ``num_test_neg`` (99) items per user, drawn uniformly
   without replacement from the items the user never interacted with, in
   training or test (:func:`ncf_tf.data.prepare.negatives.sample_test_negatives`,
   exact and vectorised). The authors excluded training items only, so 156 of
   their 6,040 ml-1m lines list the test item among its own negatives; this
   module does not reproduce that quirk.

"Latest" is one total order: by timestamp, ties broken by position in the
file according to ``tie_break``: ``"last"`` (default) makes the last of the
tied lines in file order the latest, ``"first"`` the first. Without a timestamp
column, the file order is the time: a user's last line is the latest. The
same order picks the line kept among duplicates (step 2) and sorts each
user's training lines.

About the tie rule. 1,667 ml-1m users have several ratings at their latest
timestamp. The authors' test item can be checked against a rebuild: map our
item ids to MovieLens movie ids with ``<name>.item_ids.tsv`` and the authors'
ids with a table of authors' item id -> MovieLens movie id (their ids are
the order of first appearance of each movie in ``ratings.dat``), then compare with their ``ml-1m.test.rating``. What their files
already tell (users 0-188, whose training lines are the authors' bytes): where
the file order of two tied lines can be recovered (items first rated by that
user, whose ids follow the file order), their test item comes later in the
file than the other tied line in 5 of 6 such pairs and earlier in 1; and user
0's three training lines at timestamp 978824291 are in neither file order nor
its reverse. That points to an unstable sort: no file-order rule reproduces
their test file exactly; "last" comes closer, hence the default.

Outputs, in ``dest``: ``<name>.train.rating`` and ``<name>.test.rating``
(``user\\titem\\trating\\ttimestamp``), ``<name>.test.negative``
(``(user,item)\\tneg_1\\t...``), and the id maps ``<name>.user_ids.tsv`` and
``<name>.item_ids.tsv`` (header line, then ``ncf id\\toriginal id``). They are
written into a temporary folder inside ``dest`` and moved into place only
once all of them are written.

Every problem with the input or the options raises :class:`PrepareError`
with a one-line message naming the file, the line and what was expected.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import re
import zlib
from typing import Literal

import numpy as np
import pandas as pd

from ncf_tf.data.prepare.common import (PrepareError, check_outputs, id_map_text,
                                        negative_chunks, output_paths,
                                        write_staged)
from ncf_tf.data.prepare.negatives import sample_test_negatives

FORMATS = ("movielens", "csv")
TIE_BREAKS = ("first", "last")
TieBreak = Literal["first", "last"]
MOVIELENS_FIELDS = ("user", "item", "rating", "timestamp")


@dataclasses.dataclass(frozen=True)
class RawInteractions:
    """Interactions as read, one row per non-blank input line, in file order.

    Attributes:
        frame: columns ``user`` and ``item`` (original ids, str, stripped),
            ``rating`` (float64; 1.0 without a rating column), ``timestamp``
            (int64 or float64; 0 without a timestamp column) and ``line``
            (int64, 1-based line number in the input file).
        has_timestamps: whether the input had timestamps; without them the
            file order is the time.
        source: the input file name, for messages.
        user_header: name of the original user id, the user map's header.
        item_header: name of the original item id, the item map's header.
    """

    frame: pd.DataFrame
    has_timestamps: bool
    source: str
    user_header: str
    item_header: str


@dataclasses.dataclass(frozen=True)
class PrepareStats:
    """What the preprocessing kept and dropped (counts of input lines unless named)."""

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
class LeaveOneOut:
    """A prepared data set in memory, with 0-based internal ids.

    Attributes:
        train: columns ``user``, ``item`` (int64), ``rating``, ``timestamp``
            (int64 when all are whole numbers, else float64): every
            interaction but each user's latest, grouped by user in ascending
            order, each user's lines latest first.
        test: same columns, one row per user, users ``0..num_users-1`` in
            order: each user's latest interaction.
        test_negatives: ``(num_users, num_test_neg)`` int64; row u holds
            distinct items user u never interacted with.
        user_ids: ``(num_users,)`` original id (str) of each internal user id.
        item_ids: ``(num_items,)`` original id (str) of each internal item id.
        user_header: header of the original user id column in the id map.
        item_header: header of the original item id column in the id map.
        stats: what the preprocessing kept and dropped.
    """

    train: pd.DataFrame
    test: pd.DataFrame
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
        """The loader's summary line (:meth:`ncf_tf.data.loader.Dataset.summary`)."""
        return (f"#user={self.num_users}, #item={self.num_items}, "
                f"#train={len(self.train)}, #test={len(self.test)}")


# ----------------------------------------------------------------------------
# Reading


def _read_text(path: str) -> str:
    """Reads a plain or gzipped text file whole; PrepareError if unreadable or empty."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                text = f.read()
        else:
            with open(path, "rt", encoding="utf-8") as f:
                text = f.read()
    except FileNotFoundError:
        raise PrepareError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise PrepareError(f"{path}: not UTF-8 text ({e})") from None
    except (EOFError, OSError, zlib.error) as e:
        raise PrepareError(f"{path}: cannot read ({e})") from None
    if not text.strip():
        raise PrepareError(f"{path}: file is empty")
    return text


def _parse_table(path: str, text: str, sep: str, header: bool, shown_sep: str,
                 strip: bool = True) -> pd.DataFrame:
    """Splits ``text`` into a table of strings (``strip``: stripped), blank lines dropped.

    The index of the result is the 1-based line number in the file (off for
    quoted fields that span lines, which interaction files do not have).
    """
    try:
        table = pd.read_csv(io.StringIO(text), sep=sep, header=0 if header else None, dtype=str,
                            keep_default_na=False, skip_blank_lines=False)
    except pd.errors.ParserError as e:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if found:
            expected, line, saw = found.groups()
            raise PrepareError(f"{path}, line {line}: {saw} fields, expected {expected} "
                               f"(separator {shown_sep!r})") from None
        raise PrepareError(f"{path}: cannot parse ({str(e).strip().splitlines()[0]})") from None
    if strip:  # the slowest step of reading; MovieLens fields need none
        table = table.apply(lambda column: column.str.strip())
    table.columns = [str(column).strip() for column in table.columns]
    table.index = table.index + (2 if header else 1)
    table = table[(table != "").any(axis=1)]
    if table.empty:
        raise PrepareError(f"{path}: no data lines" + (" after the header" if header else ""))
    return table


def _whole_numbers(values: np.ndarray) -> np.ndarray:
    """``values`` as int64 when all are whole numbers (written without ``.0``)."""
    values = np.asarray(values)
    if values.dtype.kind == "f" and np.all(values == np.floor(values)):
        return values.astype(np.int64)
    return values


def _non_empty(path: str, column: pd.Series, what: str, expected: str) -> pd.Series:
    empty = column == ""
    if empty.any():
        line = column.index[np.argmax(empty.to_numpy())]
        raise PrepareError(f"{path}, line {line}: {what} is empty (expected {expected})")
    return column


def _numbers(path: str, column: pd.Series, what: str, integer: bool = False) -> np.ndarray:
    """Parses a column of numbers; PrepareError naming the first bad line."""
    values = pd.to_numeric(column, errors="coerce").to_numpy()
    bad = ~np.isfinite(values.astype(np.float64))
    if integer:
        bad |= values.astype(np.float64) != np.floor(values.astype(np.float64))
    if bad.any():
        index = int(np.argmax(bad))
        kind = "an integer" if integer else "a number"
        raise PrepareError(f"{path}, line {column.index[index]}: {what} is "
                           f"{column.iloc[index]!r}, not {kind}")
    return values


def read_movielens(path: str) -> RawInteractions:
    """Reads MovieLens's ``ratings.dat``: ``user::item::rating::timestamp`` a line.

    Raises:
        PrepareError: the file is missing or empty, a line does not have four
            fields, an id or timestamp is not an integer, a rating not a number.
    """
    text = _read_text(path)
    # "::" never occurs inside a MovieLens field; a one-character separator
    # lets pandas use its fast C parser.
    table = _parse_table(path, text.replace("::", "\t"), "\t", header=False, shown_sep="::",
                         strip=False)
    layout = "user::item::rating::timestamp"
    if table.shape[1] != len(MOVIELENS_FIELDS):
        extra = (table.iloc[:, len(MOVIELENS_FIELDS):] != "").any(axis=1) \
            if table.shape[1] > len(MOVIELENS_FIELDS) else pd.Series(True, table.index)
        line = table.index[np.argmax(extra.to_numpy())]
        raise PrepareError(f"{path}, line {line}: {table.shape[1]} fields, expected {layout}")
    table.columns = list(MOVIELENS_FIELDS)
    for field in MOVIELENS_FIELDS:
        _non_empty(path, table[field], field, layout)
    _numbers(path, table["user"], "user id", integer=True)
    _numbers(path, table["item"], "item id", integer=True)
    frame = pd.DataFrame({
        "user": table["user"].to_numpy(),
        "item": table["item"].to_numpy(),
        "rating": _numbers(path, table["rating"], "rating").astype(np.float64),
        "timestamp": _numbers(path, table["timestamp"], "timestamp", integer=True)
        .astype(np.int64),
        "line": table.index.to_numpy(np.int64),
    })
    return RawInteractions(frame, has_timestamps=True, source=path,
                           user_header="movielens_user_id", item_header="movielens_movie_id")


def read_table(path: str, sep: str = ",", user_col: str = "user", item_col: str = "item",
               rating_col: str | None = None,
               timestamp_col: str | None = None) -> RawInteractions:
    """Reads a CSV/TSV file whose first line names the columns.

    Args:
        path: the file (plain or ``.gz``).
        sep: field separator, e.g. ``","`` or ``"\\t"``.
        user_col: column of user ids (any string).
        item_col: column of item ids (any string).
        rating_col: column of ratings (numbers; > 0 is an interaction), or
            None: every line is an interaction, written with rating 1.
        timestamp_col: column of numeric timestamps, or None: the file order
            is the time (a user's last line is the latest).

    Raises:
        PrepareError: the file is missing or empty, a named column is not in
            the header (the message lists the columns found), a line has too
            many fields, an id is empty, a rating or timestamp not a number.
    """
    text = _read_text(path)
    table = _parse_table(path, text, sep, header=True, shown_sep=sep)
    wanted = [c for c in (user_col, item_col, rating_col, timestamp_col) if c]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise PrepareError(
            f"{path}: column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} not found; the header has "
            f"{', '.join(repr(str(c)) for c in table.columns)} (separator {sep!r})")
    expected = f"a {sep!r}-separated line with {', '.join(wanted)}"
    users = _non_empty(path, table[user_col], f"column {user_col!r}", expected)
    items = _non_empty(path, table[item_col], f"column {item_col!r}", expected)
    if rating_col:
        ratings = _numbers(path, table[rating_col], f"column {rating_col!r}").astype(np.float64)
    else:
        ratings = np.ones(len(table))
    if timestamp_col:
        timestamps = _whole_numbers(_numbers(path, table[timestamp_col],
                                             f"column {timestamp_col!r}"))
    else:
        timestamps = np.zeros(len(table), np.int64)
    frame = pd.DataFrame({"user": users.to_numpy(), "item": items.to_numpy(),
                          "rating": ratings, "timestamp": timestamps,
                          "line": table.index.to_numpy(np.int64)})
    return RawInteractions(frame, has_timestamps=bool(timestamp_col), source=path,
                           user_header=user_col, item_header=item_col)


def read_interactions(path: str, fmt: str = "movielens", **table_options) -> RawInteractions:
    """:func:`read_movielens` or :func:`read_table` (``fmt="csv"``, with its options)."""
    if fmt == "movielens":
        return read_movielens(path)
    if fmt == "csv":
        return read_table(path, **table_options)
    raise PrepareError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


# ----------------------------------------------------------------------------
# Preprocessing


def _by_recency(frame: pd.DataFrame, has_timestamps: bool, tie_break: TieBreak,
                latest_first: bool = False, by_user: bool = False) -> pd.DataFrame:
    """Sorts by the module's "latest" order (see the module docstring).

    ``by_user`` groups the rows by ``user`` (ascending) first.
    """
    line = frame["line"].to_numpy()
    # Without timestamps all are 0 and the file order alone is the time.
    tie = line if (tie_break == "last" or not has_timestamps) else -line
    time = frame["timestamp"].to_numpy()
    if latest_first:
        tie, time = -tie, -time
    keys = (tie, time) + ((frame["user"].to_numpy(),) if by_user else ())
    return frame.iloc[np.lexsort(keys)]


def _drop_small_users(frame: pd.DataFrame, threshold: int) -> tuple[pd.DataFrame, int, int]:
    """Drops users with fewer than ``threshold`` rows; returns (frame, users, rows) dropped."""
    sizes = frame.groupby("user", sort=False)["item"].transform("size")
    small = (sizes < threshold).to_numpy()
    return frame[~small], frame.loc[small, "user"].nunique(), int(small.sum())


def _latest_mask(frame: pd.DataFrame) -> np.ndarray:
    """True at each user's latest row, for a frame sorted oldest first."""
    return ~frame.duplicated("user", keep="last").to_numpy()


def _drop_cold_items(frame: pd.DataFrame) -> tuple[pd.DataFrame, int, int, int]:
    """Step 4 of the module docstring, on a frame sorted oldest first.

    Returns (frame, items, users, rows) dropped.
    """
    items: set = set()
    users = rows = 0
    while True:
        latest = _latest_mask(frame)
        trained = frame.loc[~latest, "item"].unique()
        cold = latest & ~frame["item"].isin(trained).to_numpy()
        if not cold.any():
            return frame, len(items), users, rows
        items.update(frame.loc[cold, "item"])
        rows += int(cold.sum())
        frame, lost_users, lost_rows = _drop_small_users(frame[~cold], 2)
        users += lost_users
        rows += lost_rows


def _ids_by_first_appearance(in_file: pd.Series,
                             kept: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """0-based ids of the ``kept`` values, in order of their first line in the file.

    Args:
        in_file: the column of every input line, in file order.
        kept: the values to number (a subset of ``in_file``'s).

    Returns:
        (ids of ``kept`` as int64, original value of each id).
    """
    first_seen = pd.unique(in_file.to_numpy())
    originals = first_seen[pd.Index(first_seen).isin(kept.unique())]
    return pd.Index(originals).get_indexer(kept).astype(np.int64), originals


def leave_one_out(raw: RawInteractions, rng: np.random.Generator, *, min_interactions: int = 0,
                  num_test_neg: int = 99, tie_break: TieBreak = "last",
                  drop_cold_items: bool = False) -> LeaveOneOut:
    """Steps 1-7 of the module docstring, in memory.

    Args:
        raw: interactions from :func:`read_movielens` or :func:`read_table`.
        rng: draws the test negatives (the only randomness).
        min_interactions: drop users with fewer distinct interactions (the
            paper: 20); users with fewer than 2 are always dropped.
        num_test_neg: negatives per test line (the authors': 99).
        tie_break: which of the lines at a user's latest timestamp counts as
            the latest: ``"first"`` or ``"last"`` in file order.
        drop_cold_items: drop items that occur only in held-out test lines.

    Raises:
        PrepareError: bad options; no user left; an item occurring only in
            test lines has the largest id (the authors' format takes #items
            from the training file, so the files would not load); a user has
            too few non-interacted items for the negatives.
    """
    if tie_break not in TIE_BREAKS:
        raise PrepareError(f"tie_break {tie_break!r} is not one of {', '.join(TIE_BREAKS)}")
    if min_interactions < 0:
        raise PrepareError(f"min_interactions must be >= 0, got {min_interactions}")
    if num_test_neg < 1:
        raise PrepareError(f"num_test_neg must be >= 1, got {num_test_neg}")
    frame = raw.frame
    stats = {"lines": len(frame)}

    positive = (frame["rating"] > 0).to_numpy()
    stats["nonpositive"] = int((~positive).sum())
    frame = _by_recency(frame[positive], raw.has_timestamps, tie_break)
    # Sorted oldest first, so "last" keeps the latest line of a repeated pair.
    kept = frame.drop_duplicates(["user", "item"], keep="last")
    stats["duplicates"] = len(frame) - len(kept)

    threshold = max(min_interactions, 2)
    frame, stats["users_dropped"], stats["user_lines_dropped"] = _drop_small_users(kept, threshold)
    stats["threshold"] = threshold
    if drop_cold_items:
        frame, stats["cold_items"], stats["cold_users"], stats["cold_lines"] = \
            _drop_cold_items(frame)
    frame = frame.assign(rating=_whole_numbers(frame["rating"].to_numpy()))
    if frame.empty:
        raise PrepareError(f"{raw.source}: no user has {threshold} or more interactions "
                           "(lines with rating > 0)")

    user_codes, user_ids = _ids_by_first_appearance(raw.frame["user"], frame["user"])
    item_codes, item_ids = _ids_by_first_appearance(raw.frame["item"], frame["item"])
    frame = frame.assign(user=user_codes, item=item_codes)
    frame = _by_recency(frame, raw.has_timestamps, tie_break, latest_first=True, by_user=True)
    latest = ~frame.duplicated("user", keep="first").to_numpy()
    columns = ["user", "item", "rating", "timestamp"]
    train = frame.loc[~latest, columns].reset_index(drop=True)
    test = frame.loc[latest, columns].reset_index(drop=True)

    loadable = int(train["item"].max()) + 1 if len(train) else 0
    if loadable < len(item_ids):
        raise PrepareError(
            f"{raw.source}: item {item_ids[-1]!r} (id {len(item_ids) - 1}) occurs only in "
            "held-out test lines and has the largest id; the authors' format takes #items "
            "from the training file, so the files would not load; drop such items with "
            "--drop_cold_items")

    negatives = sample_test_negatives(
        frame["user"].to_numpy(), frame["item"].to_numpy(), len(user_ids), len(item_ids),
        num_test_neg, rng, user_names=np.asarray(user_ids))
    return LeaveOneOut(train=train, test=test, test_negatives=negatives,
                       user_ids=np.asarray(user_ids, dtype=object),
                       item_ids=np.asarray(item_ids, dtype=object),
                       user_header=raw.user_header, item_header=raw.item_header,
                       stats=PrepareStats(**stats))


# ----------------------------------------------------------------------------
# Writing


def _rating_lines(frame: pd.DataFrame) -> str:
    """``user\\titem\\trating\\ttimestamp`` lines."""
    return frame.to_csv(sep="\t", header=False, index=False, lineterminator="\n")


def write_leave_one_out(data: LeaveOneOut, dest: str, name: str,
                        overwrite: bool = False) -> list[str]:
    """Writes the five files of ``data`` atomically; returns their paths.

    Every file is first written into a temporary folder inside ``dest`` (same
    file system), and moved into place only after all were written; on any
    failure nothing is left behind (not even ``dest`` if this created it).

    Raises:
        PrepareError: an output exists and not ``overwrite``; ``dest`` or
            ``name`` is unusable; a write failed.
    """
    check_outputs(dest, name, overwrite)
    test = data.test
    contents = [_rating_lines(data.train), _rating_lines(test),
                negative_chunks(test["user"].to_numpy(), test["item"].to_numpy(),
                                data.test_negatives),
                id_map_text(data.user_ids, "user", data.user_header),
                id_map_text(data.item_ids, "item", data.item_header)]
    return write_staged(dest, name, list(zip(output_paths(dest, name), contents)))


def prepare(input_path: str, dest: str, name: str, rng: np.random.Generator, *,
            fmt: str = "movielens", sep: str = ",", user_col: str = "user",
            item_col: str = "item", rating_col: str | None = None,
            timestamp_col: str | None = None, min_interactions: int = 0,
            num_test_neg: int = 99, tie_break: TieBreak = "last",
            drop_cold_items: bool = False, overwrite: bool = False) -> LeaveOneOut:
    """Reads ``input_path``, builds the leave-one-out split and writes it to ``dest``.

    Args:
        input_path: MovieLens ``ratings.dat`` (``fmt="movielens"``) or a
            CSV/TSV file with a header (``fmt="csv"``).
        dest: output folder (created if missing).
        name: data set name: files are ``<dest>/<name>.train.rating`` etc.
        rng: draws the test negatives.
        fmt, sep, user_col, item_col, rating_col, timestamp_col: see
            :func:`read_table` (ignored but ``fmt`` for MovieLens).
        min_interactions, num_test_neg, tie_break, drop_cold_items: see
            :func:`leave_one_out`.
        overwrite: replace existing outputs instead of refusing.

    Returns:
        The data set written, with its statistics.

    Raises:
        PrepareError: bad input or options (one line); nothing is written.
    """
    check_outputs(dest, name, overwrite)  # fail before the slow part
    if fmt == "csv":
        raw = read_table(input_path, sep=sep, user_col=user_col, item_col=item_col,
                         rating_col=rating_col or None, timestamp_col=timestamp_col or None)
    else:
        raw = read_interactions(input_path, fmt)
    data = leave_one_out(raw, rng, min_interactions=min_interactions, num_test_neg=num_test_neg,
                         tie_break=tie_break, drop_cold_items=drop_cold_items)
    write_leave_one_out(data, dest, name, overwrite)
    return data
