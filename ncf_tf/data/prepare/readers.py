"""Raw interaction files -> :class:`Interactions` (integer arrays), a chunk at a time.

The formats (:data:`FORMATS`), plain or gzipped:

* ``"movielens"``: MovieLens-100K/1M/10M ``ratings.dat``,
  ``user::item::rating::timestamp``, no header;
* ``"movielens-csv"``: MovieLens-20M/25M ``ratings.csv``, header
  ``userId,movieId,rating,timestamp``;
* ``"csv"``: any separated file, with a header naming the columns or, with
  ``columns``, without one; ids are any string, rating and timestamp optional.

Each chunk of :data:`CHUNK_LINES` lines becomes integer arrays at once, so the
peak memory is the arrays plus one chunk. A PrepareError names the file and
line; when the first line does not parse, it suggests a format that would.
"""

from __future__ import annotations

import dataclasses
import io
import re
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from ncf_tf.core.files import open_input
from ncf_tf.data.loader import read_first_line, reading
from ncf_tf.data.prepare.common import PrepareError

FORMATS = ("movielens", "movielens-csv", "csv")
MOVIELENS_FIELDS = ("user", "item", "rating", "timestamp")
MOVIELENS_CSV_HEADER = ("userId", "movieId", "rating", "timestamp")
MOVIELENS_ID_HEADERS = ("movielens_user_id", "movielens_movie_id")
CHUNK_LINES = 1 << 20
INT64_LIMIT = 2.0 ** 63


@dataclasses.dataclass(frozen=True)
class Interactions:
    """Interactions as read, one entry per non-blank input line, in file order.

    Attributes:
        users, items: ``(n,)`` int32 codes in order of first appearance;
            ``user_ids[c]`` / ``item_ids[c]`` is the original id (str or int).
        ratings: ``(n,)`` small integer codes into ``rating_values`` (float64;
            1.0 without a rating column).
        timestamps: ``(n,)`` int64 (float64 when some are not whole), or None:
            the file order is the time.
        source: the input, for messages.
        user_header, item_header: the id maps' headers.
    """

    users: np.ndarray
    items: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    ratings: np.ndarray
    rating_values: np.ndarray
    timestamps: np.ndarray | None
    source: str
    user_header: str = "user"
    item_header: str = "item"

    @classmethod
    def from_arrays(cls, users, items, ratings=None, timestamps=None, *,
                    source: str = "interactions", user_header: str = "user",
                    item_header: str = "item") -> "Interactions":
        """Interactions from columns in memory (e.g. a DataFrame's), in time order
        when ``timestamps`` is None.

        Raises:
            PrepareError: naming the row (0-based): the lengths differ, an id is
                missing or not a scalar, a rating or timestamp is not a finite
                number or beyond int64.
        """
        given = {"users": users, "items": items, "ratings": ratings, "timestamps": timestamps}
        lengths = {name: len(column) for name, column in given.items() if column is not None}
        if len(set(lengths.values())) > 1:
            raise PrepareError(f"{source}: one entry per interaction expected, got lengths "
                               + ", ".join(f"{name} {n}" for name, n in lengths.items()))
        builder = _Builder(source, user_header, item_header, timestamps is not None)
        builder.add(_ids(users, source, "users"), _ids(items, source, "items"),
                    np.ones(len(users)) if ratings is None else _numbers(
                        pd.Series(np.asarray(ratings)), source, "row", "ratings"),
                    None if timestamps is None else _numbers(
                        pd.Series(np.asarray(timestamps)), source, "row", "timestamps",
                        integer=None))
        return builder.build()


def _refuse(path: str, column: pd.Series, bad: np.ndarray, problem: str) -> None:
    """PrepareError at the first line where ``bad``: ``problem`` with ``{value}``
    replaced by that line's value (quoted)."""
    if bad.any():
        at = int(np.argmax(bad))
        raise PrepareError(f"{path}, line {column.index[at]}: "
                           + problem.replace("{value}", repr(str(column.iloc[at]))))


def _ids(values, source: str, what: str) -> np.ndarray:
    """Ids as they are, each a string or an integer (not missing, not a list)."""
    if isinstance(values, (np.ndarray, pd.Series, pd.Index)):
        values = np.asarray(values)
    else:   # a list, perhaps of lists: one object per entry
        values = np.fromiter(values, object, len(values))
    if values.dtype.kind in "iu":
        return values
    if values.dtype.kind == "f":   # whole numbers, e.g. a DataFrame column with a NaN
        good = np.isfinite(values) & (values == np.floor(values))
        if good.all():
            return values.astype(np.int64)
    else:
        values = values.astype(object)
        good = np.fromiter((isinstance(v, (str, int, np.integer)) and not isinstance(v, bool)
                            and not (isinstance(v, str) and not v) for v in values), bool,
                           len(values))
    if not good.all():
        at = int(np.argmax(~good))
        value = values[at]
        missing = value is None or value == "" or (isinstance(value, float) and np.isnan(value))
        raise PrepareError(f"{source}, row {at}: {what} is " + (
            "empty (expected an id)" if missing else
            f"{value!r}, not an id (a string or an integer)"))
    return values


def _numbers(column: pd.Series, source: str, place: str, what: str,
             integer: bool | None = False) -> np.ndarray:
    """A column of numbers: float64, int64 with ``integer``, or (None) int64 when
    all are whole; PrepareError for empty, non-numeric, non-finite values and
    integers beyond int64."""
    values = column if column.dtype.kind in "iuf" else pd.to_numeric(column, errors="coerce")
    values = values.to_numpy()
    if values.dtype.kind in "iu":
        bad = values > np.iinfo(np.int64).max
        if not bad.any():
            return values.astype(np.float64 if integer is False else np.int64)
    else:
        values = values.astype(np.float64)
        bad = ~np.isfinite(values)
        if integer:
            bad |= values != np.floor(values)
        if integer is not False:
            bad |= np.abs(values) >= INT64_LIMIT
    if bad.any():
        at = int(np.argmax(bad))
        text = column.iloc[at]
        where = f"{source}, {place} {column.index[at]}"
        kind = "an integer" if integer else "a number"
        if pd.isna(text) or not str(text).strip():
            raise PrepareError(f"{where}: {what} is empty (expected {kind})")
        number = pd.to_numeric(pd.Series([text]), errors="coerce").astype(np.float64).iloc[0]
        if integer is not False and np.isfinite(number) and abs(number) >= INT64_LIMIT:
            raise PrepareError(f"{where}: {what} is {str(text)!r}, beyond the integers that "
                               "fit in 64 bits")
        raise PrepareError(f"{where}: {what} is {str(text)!r}, not {kind}")
    if integer or (integer is None and np.all(values == np.floor(values))):
        return values.astype(np.int64)
    return values


class _Builder:
    """Interactions from chunks: ids numbered in order of first appearance, ratings coded."""

    def __init__(self, source: str, user_header: str, item_header: str, timed: bool):
        self.source, self.headers, self.timed = source, (user_header, item_header), timed
        self.tables, self.parts = ({}, {}, {}), [[], [], [], []]

    @staticmethod
    def _code(table: dict, values: np.ndarray) -> np.ndarray:
        codes, uniques = pd.factorize(values)
        known = np.fromiter((table.setdefault(v, len(table)) for v in uniques.tolist()),
                            np.int64, len(uniques))
        dtype = np.int8 if len(table) < 1 << 7 else np.int16 if len(table) < 1 << 15 \
            else np.int32
        return known.astype(dtype)[codes]

    def add(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
            timestamps: np.ndarray | None) -> None:
        self.parts[0].append(self._code(self.tables[0], users).astype(np.int32))
        self.parts[1].append(self._code(self.tables[1], items).astype(np.int32))
        self.parts[2].append(self._code(self.tables[2], ratings))
        if self.timed:
            self.parts[3].append(timestamps)

    def build(self) -> Interactions:
        joined = [np.concatenate(p) if len(p) > 1 else p[0] for p in self.parts if p]
        users, items, ratings = joined[:3]
        ids = [np.array(list(t), dtype=np.int64 if all(
            isinstance(k, int) and -(1 << 63) <= k < 1 << 63 for k in t) else object)
            for t in self.tables[:2]]
        return Interactions(users, items, ids[0], ids[1], ratings,
                            np.array(list(self.tables[2]), np.float64),
                            joined[3] if self.timed else None, self.source, *self.headers)


class _Colons(io.TextIOBase):
    """A text stream with ``::`` as a tab, for pandas' C parser (one-character separators)."""

    def __init__(self, stream):
        self.stream, self.held = stream, ""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> str:
        text = self.held + self.stream.read(size)
        self.held = ""
        if text.endswith(":") and size and size > 0:
            self.held, text = ":", text[:-1]
        return text.replace("::", "\t")


def _chunks(path: str, sep: str, header: bool, shown_sep: str, chunk_lines: int,
            as_text: bool, colons: bool = False) -> Iterator[pd.DataFrame]:
    """The file's rows, ``chunk_lines`` lines at a time, blank lines dropped,
    indexed by 1-based line number; fields as str (``as_text``) or inferred."""
    first = 2 if header else 1
    try:
        with reading(path, PrepareError), open_input(path) as stream:
            reader = pd.read_csv(_Colons(stream) if colons else stream, sep=sep,
                                 header=0 if header else None, chunksize=chunk_lines,
                                 engine="c", skip_blank_lines=False,
                                 **({"dtype": str, "keep_default_na": False} if as_text
                                    else {}))
            for chunk in reader:
                chunk.index = pd.RangeIndex(first, first + len(chunk))
                first += len(chunk)
                blank = chunk.isna() | (chunk == "") if as_text else chunk.isna()
                chunk = chunk[~blank.all(axis=1)]
                if len(chunk):
                    yield chunk
    except pd.errors.ParserError as e:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if found:
            expected, line, saw = found.groups()
            raise PrepareError(f"{path}, line {line}: {saw} fields, expected {expected} "
                               f"(separator {shown_sep!r})") from None
        raise PrepareError(f"{path}: cannot parse ({str(e).strip().splitlines()[0]})") from None
    except pd.errors.EmptyDataError:
        return


def suggest_format(first_line: str) -> dict:
    """The reader options under which ``first_line`` (of a file) parses, or {}."""
    fields = first_line.split("::")
    if len(fields) == len(MOVIELENS_FIELDS):
        return {"fmt": "movielens"}
    if tuple(f.strip() for f in first_line.split(",")) == MOVIELENS_CSV_HEADER:
        return {"fmt": "movielens-csv"}
    for sep in ("\t", ",", ";", "|"):
        fields = [f.strip() for f in first_line.split(sep)]
        if len(fields) >= 2:
            numbers = [bool(re.fullmatch(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?", f)) for f in fields]
            if any(numbers) and all(numbers[2:]):
                # Data, not a header: name the columns.
                names = ("user", "item", "rating", "timestamp")[:len(fields)]
                if len(fields) <= len(names):
                    return {"fmt": "csv", "sep": sep, "columns": names,
                            **({"rating_col": "rating"} if len(fields) > 2 else {}),
                            **({"timestamp_col": "timestamp"} if len(fields) > 3 else {})}
            return {"fmt": "csv", "sep": sep}
    return {}


def _suggested(path: str, message: str, fmt: str, **current) -> PrepareError:
    """``message`` with the format the file's first line parses as, when another."""
    suggestion = suggest_format(read_first_line(path, PrepareError))
    current["fmt"] = fmt
    return PrepareError(message, suggest={k: v for k, v in suggestion.items()
                                          if current.get(k) != v})


def read_movielens(path: str, chunk_lines: int = CHUNK_LINES) -> Interactions:
    """MovieLens's ``ratings.dat``: ``user::item::rating::timestamp`` a line (ids
    kept as written, checked to be integers)."""
    layout = "::".join(MOVIELENS_FIELDS)
    builder = _Builder(path, *MOVIELENS_ID_HEADERS, timed=True)
    for chunk in _chunks(path, "\t", False, "::", chunk_lines, as_text=True, colons=True):
        if chunk.shape[1] != len(MOVIELENS_FIELDS):
            extra = (chunk.iloc[:, len(MOVIELENS_FIELDS):].fillna("") != "").any(axis=1) \
                if chunk.shape[1] > len(MOVIELENS_FIELDS) else pd.Series(True, chunk.index)
            line = chunk.index[np.argmax(extra.to_numpy())]
            message = f"{path}, line {line}: {chunk.shape[1]} fields, expected {layout}"
            raise _suggested(path, message, "movielens") if line == chunk.index[0] and \
                not builder.parts[0] else PrepareError(message)
        chunk.columns = list(MOVIELENS_FIELDS)
        for field in MOVIELENS_FIELDS:
            _refuse(path, chunk[field], (chunk[field].isna() | (chunk[field] == "")).to_numpy(),
                    f"{field} is empty (expected {layout})")
        _numbers(chunk["user"], path, "line", "user id", integer=True)
        _numbers(chunk["item"], path, "line", "item id", integer=True)
        builder.add(chunk["user"].to_numpy(), chunk["item"].to_numpy(),
                    _numbers(chunk["rating"], path, "line", "rating"),
                    _numbers(chunk["timestamp"], path, "line", "timestamp", integer=True))
    if not builder.parts[0]:
        read_first_line(path, PrepareError)
    return builder.build()


def read_movielens_csv(path: str, chunk_lines: int = CHUNK_LINES) -> Interactions:
    """MovieLens-20M/25M's ``ratings.csv`` (header ``userId,movieId,rating,timestamp``):
    integer ids in 0..2^31-1, ratings in half stars."""
    header = read_first_line(path, PrepareError)
    if tuple(field.strip() for field in header.split(",")) != MOVIELENS_CSV_HEADER:
        raise _suggested(path, f"{path}, line 1: header is {header.strip()[:80]!r}, expected "
                         f"{','.join(MOVIELENS_CSV_HEADER)} (MovieLens-20M/25M ratings.csv)",
                         "movielens-csv")
    builder = _Builder(path, *MOVIELENS_ID_HEADERS, timed=True)
    for chunk in _chunks(path, ",", True, ",", chunk_lines, as_text=False):
        chunk.columns = [str(c).strip() for c in chunk.columns]
        users, items = (_numbers(chunk[c], path, "line", c, integer=True)
                        for c in MOVIELENS_CSV_HEADER[:2])
        for what, ids in zip(MOVIELENS_CSV_HEADER[:2], (users, items)):
            _refuse(path, chunk[what], (ids < 0) | (ids >= 1 << 31),
                    f"{what} is {{value}}, not an id in 0..2^31-1")
        ratings = _numbers(chunk["rating"], path, "line", "rating")
        _refuse(path, chunk["rating"], ratings * 2 != np.round(ratings * 2), "rating is {value}, "
                "not a multiple of 0.5 (MovieLens rates in half stars)")
        builder.add(users, items, ratings,
                    _numbers(chunk["timestamp"], path, "line", "timestamp", integer=True))
    if not builder.parts[0]:
        raise PrepareError(f"{path}: no data lines after the header")
    return builder.build()


def read_table(path: str, sep: str = ",", user_col: str = "user", item_col: str = "item",
               rating_col: str | None = None, timestamp_col: str | None = None,
               columns: Sequence[str] | None = None,
               chunk_lines: int = CHUNK_LINES) -> Interactions:
    """A separated file whose first line names the columns or, given ``columns``
    (the names, in order), that has no header.

    Args:
        user_col, item_col: columns of user and item ids (any string).
        rating_col: column of ratings (> 0 is an interaction), or None: every
            line is one, with rating 1.
        timestamp_col: column of numeric timestamps, or None: the file order
            is the time.

    Raises:
        PrepareError: a column is not in the header (listing those found), a line is bad.
    """
    wanted = [c for c in (user_col, item_col, rating_col, timestamp_col) if c]
    if len(set(wanted)) < len(wanted):
        raise PrepareError(f"user_col, item_col, rating_col and timestamp_col must name "
                           f"different columns, got {', '.join(map(repr, wanted))}")
    names = list(columns) if columns else None
    if names:
        missing = [c for c in wanted if c not in names]
        if missing or len(set(names)) != len(names):
            raise PrepareError(f"columns {', '.join(names)}: must name each column once and "
                               f"include {', '.join(wanted)}")
    expected = f"a {sep!r}-separated line with {', '.join(wanted)}"
    builder = _Builder(path, user_col, item_col, timed=bool(timestamp_col))
    for chunk in _chunks(path, sep, names is None, sep, chunk_lines, as_text=True):
        if names:
            if chunk.shape[1] != len(names):
                raise _suggested(path, f"{path}, line {chunk.index[0]}: {chunk.shape[1]} "
                                 f"fields, but columns names {len(names)}", "csv", sep=sep,
                                 columns=tuple(names))
            chunk.columns = names
        else:
            chunk.columns = [str(c).strip() for c in chunk.columns]
            missing = [c for c in wanted if c not in chunk.columns]
            if missing:
                raise _suggested(
                    path, f"{path}: column{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(repr(c) for c in missing)} not found; the header has "
                    f"{', '.join(repr(str(c)) for c in chunk.columns)} (separator {sep!r})",
                    "csv", sep=sep)
        chunk = chunk[wanted].apply(lambda column: column.fillna("").str.strip())
        ids = []
        for col in (user_col, item_col):
            _refuse(path, chunk[col], (chunk[col] == "").to_numpy(),
                    f"column {col!r} is empty (expected {expected})")
            ids.append(chunk[col].to_numpy())
        if names and not builder.parts[0] and (rating_col or timestamp_col):
            head = chunk[[c for c in (rating_col, timestamp_col) if c]].iloc[0]
            numbers = pd.to_numeric(head, errors="coerce")
            if numbers.isna().any():
                column = numbers.index[np.argmax(numbers.isna().to_numpy())]
                raise PrepareError(f"{path}, line {chunk.index[0]}: column {column!r} is "
                                   f"{head[column]!r}, not a number (a header line?)",
                                   suggest={"columns": None})
        builder.add(*ids,
                    _numbers(chunk[rating_col], path, "line", f"column {rating_col!r}")
                    if rating_col else np.ones(len(chunk)),
                    _numbers(chunk[timestamp_col], path, "line", f"column {timestamp_col!r}",
                             integer=None) if timestamp_col else None)
    if not builder.parts[0]:
        read_first_line(path, PrepareError)
        if names:
            raise PrepareError(f"{path}: no data lines")
        raise _suggested(path, f"{path}: no data lines after the header", "csv", sep=sep)
    return builder.build()


def read_interactions(path: str, fmt: str = "movielens", *, sep: str = ",",
                      user_col: str = "user", item_col: str = "item",
                      rating_col: str | None = None, timestamp_col: str | None = None,
                      columns: Sequence[str] | None = None,
                      chunk_lines: int = CHUNK_LINES) -> Interactions:
    """The reader of ``fmt`` (:data:`FORMATS`); the column options are ``"csv"``'s."""
    if fmt == "movielens":
        return read_movielens(path, chunk_lines)
    if fmt == "movielens-csv":
        return read_movielens_csv(path, chunk_lines)
    if fmt == "csv":
        return read_table(path, sep, user_col, item_col, rating_col, timestamp_col, columns,
                          chunk_lines)
    raise PrepareError(f"fmt {fmt!r} is not one of {', '.join(FORMATS)}")
