"""DataFrames of raw ids -> the :class:`~ncf_tf.data.loader.Dataset` the scripts train on.

Raw ids of any type that sorts become exactly the ``Dataset`` that
:func:`~ncf_tf.data.loader.load_dataset` reads from the same data in the
authors' files: ids are numbered in sorted order (:class:`Ids`), so 0-based
integer ids keep their numbers; the items include the test rows' items and
negatives (two ml-1m items occur only in the authors' test file); a pair on
several rows counts once; a user's latest interaction is the one of the
largest timestamp and, among equal timestamps, the *earlier row*, as in the
authors' files, which list each user's lines latest first.

Every problem is a one-line :class:`FrameError` naming the argument, column or id.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ncf_tf.data.idmap import IdMap
from ncf_tf.data.loader import Dataset, _per_pair
from ncf_tf.data.validation import sample_unseen, validation_split


NO_TEST = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, 1), np.int64))
"""``(users, items, negatives)`` of a data set without test lines."""


class FrameError(ValueError):
    """A DataFrame or a list of ids the API cannot use."""


def check_frame(frame, columns: dict[str, str], what: str) -> None:
    """FrameError (naming ``what`` and the column) unless ``frame`` is a non-empty
    DataFrame with ``columns`` (name -> role), one non-missing id per cell."""
    if not isinstance(frame, pd.DataFrame):
        raise FrameError(f"{what}: expected a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        raise FrameError(f"{what}: the DataFrame is empty (no rows)")
    for column, role in columns.items():
        if column not in frame.columns:
            raise FrameError(f"{what}: no column {column!r} (the {role} column); its columns "
                             f"are {', '.join(map(repr, frame.columns))}")
    for column, role in columns.items():
        values = frame[column]
        if values.dtype == object:
            listed = values.map(_not_scalar).to_numpy(bool)
            if listed.any():
                row = frame.index[int(np.argmax(listed))]
                raise FrameError(f"{what}: column {column!r} holds a "
                                 f"{type(values[row]).__name__} at row {row!r}; each {role} "
                                 "id must be one value (an integer or a string)")
        missing = values.isna().to_numpy()
        if missing.any():
            row = frame.index[int(np.argmax(missing))]
            raise FrameError(f"{what}: column {column!r} has a missing {role} id (NaN) "
                             f"at row {row!r}")


def check_columns(df, user_col: str, item_col: str, timestamp_col: str | None) -> None:
    """:func:`check_frame` of ``df``'s (distinct) user and item columns and ``timestamp_col``."""
    if user_col == item_col:
        raise FrameError(f"user_col and item_col are both {user_col!r}; users and items need "
                         "a column each")
    check_frame(df, {user_col: "user", item_col: "item"}, "df")
    if timestamp_col is not None and timestamp_col not in df.columns:
        raise FrameError(f"df: no column {timestamp_col!r} (timestamp_col); its columns are "
                         f"{', '.join(map(repr, df.columns))}")


def _not_scalar(value) -> bool:
    return isinstance(value, (list, tuple, set, frozenset, dict, np.ndarray, pd.Series))


def parse_times(values: pd.Series, what: str) -> np.ndarray:
    """float64 times of a timestamp column: numbers as they are, dates as seconds
    since 1970 (UTC), a missing value NaN; FrameError for anything else."""
    if pd.api.types.is_bool_dtype(values):
        raise FrameError(f"{what}: holds booleans; expected numbers or dates")
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(np.float64)
    if not pd.api.types.is_datetime64_any_dtype(values):
        present = values.notna().to_numpy()
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().to_numpy().sum() == present.sum():
            return numbers.to_numpy(np.float64)
        try:
            values = pd.to_datetime(values, utc=True, format="mixed")
        except (ValueError, TypeError, OverflowError):
            bad = next(n for n, (v, ok) in enumerate(zip(values, present))
                       if ok and _date_or_none(v) is None)
            raise FrameError(f"{what}: {values.iloc[bad]!r} at row {values.index[bad]!r} is "
                             "neither a number nor a date") from None
    values = pd.to_datetime(values, utc=True)
    return ((values - pd.Timestamp(0, tz="UTC")).dt.total_seconds()).to_numpy(np.float64)


def _date_or_none(value):
    try:
        return pd.to_datetime(value, utc=True)
    except (ValueError, TypeError, OverflowError):
        return None


def column_values(values, what: str) -> np.ndarray:
    """Raw ids as a flat numpy array; FrameError for a missing one."""
    if isinstance(values, (pd.Series, pd.Index)):
        array = values.to_numpy()
    elif np.isscalar(values) or isinstance(values, (str, bytes)):
        array = np.array([values], dtype=object if isinstance(values, str) else None)
    else:
        array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
    array = array.reshape(-1)
    if array.dtype == object:
        listed = [n for n, value in enumerate(array) if _not_scalar(value)]
        if listed:
            raise FrameError(f"{what}: a {type(array[listed[0]]).__name__} at position "
                             f"{listed[0]}; each id must be one value")
    missing = pd.isna(array)
    if missing.any():
        raise FrameError(f"{what}: missing id (NaN) at position {int(np.argmax(missing))}")
    return array


class Ids:
    """The raw ids of the users or the items, numbered in sorted order: ``map``
    (an :class:`~ncf_tf.data.idmap.IdMap`) and ``column`` (for messages)."""

    def __init__(self, kind: str, originals: np.ndarray, column: str):
        self.kind, self.column = kind, column
        self.index = pd.Index(originals)
        if not self.index.is_unique:
            raise FrameError(f"column {column!r}: {kind} ids repeat")
        self.map = IdMap(kind, np.asarray(originals), len(originals),
                         f"the {kind}s of the training data")

    @classmethod
    def of(cls, kind: str, arrays: list[np.ndarray], column: str) -> "Ids":
        """The distinct ids of ``arrays``, sorted; FrameError if they do not sort."""
        values = pd.unique(np.concatenate([np.asarray(a, dtype=object) if a.dtype.kind in "OUS"
                                           else a for a in arrays]))
        try:
            ordered = pd.Index(values).infer_objects().sort_values()
        except TypeError:
            types = sorted({type(v).__name__ for v in values})
            raise FrameError(f"column {column!r}: {kind} ids of types that do not sort "
                             f"together ({', '.join(types)}); use one type") from None
        if ordered.dtype.kind not in "iufb":
            ordered = pd.Index(np.asarray(ordered, dtype=object), dtype=object)
        return cls(kind, ordered.to_numpy(), column)

    @property
    def count(self) -> int:
        return self.map.count

    @property
    def originals(self) -> np.ndarray:
        return self.map.originals

    def encode(self, values, what: str) -> np.ndarray:
        """``(n,)`` int64 numbers of the raw ids ``values``; FrameError naming
        ``what`` and the first unknown id."""
        values = column_values(values, what)
        found = self.index.get_indexer(values) if len(values) else np.empty(0, np.int64)
        if (found < 0).any():
            bad = values[int(np.argmax(found < 0))]
            raise FrameError(f"{what}: unknown {self.kind} id {_show(bad)} (not in the "
                             f"training data's {self.count} {self.kind}s)")
        return found.astype(np.int64)

    def same_as(self, other: "Ids") -> bool:
        return bool(self.index.equals(other.index))

    def to_json(self) -> dict:
        """``{"column", "dtype", "ids"}``; FrameError for ids JSON cannot keep exactly."""
        ids = []
        for value in self.originals:
            value = value.item() if isinstance(value, np.generic) else value
            if not isinstance(value, (bool, int, float, str)):
                raise FrameError(f"column {self.column!r}: {self.kind} id {_show(value)} of "
                                 f"type {type(value).__name__} cannot be saved; use integer "
                                 "or string ids")
            ids.append(value)
        return {"column": self.column, "dtype": str(self.originals.dtype), "ids": ids}

    @classmethod
    def from_json(cls, kind: str, stored: dict) -> "Ids":
        dtype = np.dtype(stored["dtype"])
        return cls(kind, np.array(stored["ids"], dtype=dtype), stored["column"])


def ids_of(kind: str, column: str, frames: dict, *more: np.ndarray) -> Ids:
    """The :class:`Ids` of ``column`` in ``frames`` (argument name -> DataFrame)
    and of the arrays ``more``."""
    return Ids.of(kind, [*(column_values(frame[column], f"{what}: column {column!r}")
                           for what, frame in frames.items()), *more], column)


def _show(value) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def interactions(frame: pd.DataFrame, user_col: str, item_col: str, users: Ids, items: Ids,
                 timestamp_col: str | None = None):
    """``(train, timestamps, lines)`` of ``frame`` as the loader builds them: the
    CSR of distinct pairs; per pair its latest timestamp (or None) and first row."""
    u = users.encode(frame[user_col], f"column {user_col!r}")
    i = items.encode(frame[item_col], f"column {item_col!r}")
    times = None
    if timestamp_col is not None:
        times = parse_times(frame[timestamp_col], f"column {timestamp_col!r} (timestamp_col)")
    train = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)),
                          shape=(users.count, items.count))
    train.sum_duplicates()
    train.data[:] = 1.0
    train.sort_indices()
    # The loader's own rule for a pair on several lines (latest time, first line).
    return train, *_per_pair(u, i, np.arange(len(u)), times, items.count)


def negatives_matrix(frame: pd.DataFrame, column: str, items: Ids, what: str) -> np.ndarray:
    """``(n, m)`` int64 item numbers of a column that lists m item ids on every row."""
    rows = frame[column].tolist()
    flat = _flat(rows, column, what)
    lengths = {len(row) for row in rows}
    if len(lengths) != 1 or 0 in lengths:
        raise FrameError(f"{what}: column {column!r} must list the same number (>= 1) of "
                         f"item ids on every row, got {sorted(lengths)[:5]}")
    return items.encode(flat, f"{what}: column {column!r}").reshape(len(rows), -1)


def listed_ids(values: pd.Series, column: str, what: str = "test_df") -> np.ndarray:
    """Every item id of a column that lists ids on every row, flat (for the catalogue)."""
    flat = _flat(values.tolist(), column, what)
    if pd.isna(flat).any():
        raise FrameError(f"{what}: column {column!r} has a missing item id (NaN)")
    return flat


def _flat(rows: list, column: str, what: str) -> np.ndarray:
    """The ids of every row's list, int64 when all are integers."""
    try:
        flat = np.concatenate([np.asarray(list(row), dtype=object) for row in rows]
                              or [np.empty(0, object)])
    except TypeError:
        raise FrameError(f"{what}: column {column!r} must hold a list of item ids on every "
                         "row") from None
    return flat.astype(np.int64) if all(isinstance(v, (int, np.integer)) for v in flat) else flat


def sampled_negatives(train: sp.csr_matrix, users: np.ndarray, items: np.ndarray,
                      num_negatives: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """``(n, num_negatives)`` items per test line, uniformly without replacement
    among those the user has no training or test interaction with."""
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, (int, np.integer)) \
            or num_negatives < 1:
        raise FrameError(f"{what}: negatives must be a positive integer, 'all' or None, "
                         f"got {num_negatives!r}")
    test = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=train.shape)
    try:
        return sample_unseen(train + test, users, int(num_negatives), rng)
    except ValueError as e:
        raise FrameError(f"{what}: {e}") from None


def frame_dataset(name: str, train: sp.csr_matrix, timestamps, lines, test_users: np.ndarray,
                  test_items: np.ndarray, test_negatives: np.ndarray) -> Dataset:
    """The in-memory :class:`~ncf_tf.data.loader.Dataset` (no files)."""
    return Dataset(name=name, train=train, test_users=test_users.astype(np.int32),
                   test_items=test_items.astype(np.int32),
                   test_negatives=test_negatives.astype(np.int32), files={},
                   train_timestamps=timestamps, train_lines=lines)


def fingerprint(dataset: Dataset) -> str:
    """SHA-256 of the numbered training pairs and test lines (the record's file hash)."""
    digest = hashlib.sha256()
    for array in (dataset.train.indptr, dataset.train.indices, dataset.test_users,
                  dataset.test_items, dataset.test_negatives):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()


def leave_latest_out(df: pd.DataFrame, user_col: str = "user", item_col: str = "item",
                     timestamp_col: str = "timestamp", num_negatives: int = 99,
                     seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's protocol on a DataFrame: each user's latest interaction (among
    equal times the earlier row) is held out and ranked against
    ``num_negatives`` items the user never interacted with. A user with a
    single interaction keeps it for training and has no test row.

    Args:
        df: the interactions, one per row, raw ids of any type that sorts.
        user_col, item_col, timestamp_col: its columns.
        num_negatives: items per test row (the paper's 99).
        seed: the negatives' random stream.

    Returns:
        ``(train, test)``: the rows of ``df`` not held out, and one row per
        held-out pair (users in sorted order) with a ``negatives`` column of
        raw ids, as ``Recommender.fit(train, test_df=test)`` takes them.

    Raises:
        ValueError: a bad DataFrame, column or argument, or a user with fewer
            than ``num_negatives`` items left.
    """
    if timestamp_col is None:
        raise FrameError("timestamp_col is required for the latest interaction; without "
                         "times use leave_random_out")
    return _leave_one_out(df, user_col, item_col, timestamp_col, "latest", num_negatives, seed)


def leave_random_out(df: pd.DataFrame, user_col: str = "user", item_col: str = "item",
                     num_negatives: int = 99, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`leave_latest_out` holding out one interaction per user drawn
    uniformly at random (stream ``seed``) instead of the latest."""
    return _leave_one_out(df, user_col, item_col, None, "random", num_negatives, seed)


def check_integer(name: str, value, minimum: int) -> int:
    """``value`` as an int; TypeError/ValueError unless an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _leave_one_out(df, user_col, item_col, timestamp_col, how, num_negatives, seed):
    check_integer("num_negatives", num_negatives, 1)
    check_integer("seed", seed, 0)
    check_columns(df, user_col, item_col, timestamp_col)
    users, items = ids_of("user", user_col, {"df": df}), ids_of("item", item_col, {"df": df})
    train, times, lines = interactions(df, user_col, item_col, users, items, timestamp_col)
    dataset = frame_dataset("df", train, times, lines, *NO_TEST)
    try:
        split = validation_split(dataset, np.random.default_rng(int(seed)), how,
                                 int(num_negatives))
    except ValueError as e:   # name the user by its raw id
        text = re.sub(r"user (\d+) has", lambda m: f"user {_show(users.originals[int(m.group(1))])}"
                      " has", str(e))
        raise FrameError(f"num_negatives={num_negatives}: {text.split(': ', 1)[-1]}") from None
    keys = (users.encode(df[user_col], "df").astype(np.int64) * items.count
            + items.encode(df[item_col], "df"))
    held = split.test_users.astype(np.int64) * items.count + split.test_items
    out = np.isin(keys, held)
    rows = np.flatnonzero(out)
    # One row per held-out pair, its first; sorted keys put the users in order.
    _, first = np.unique(keys[rows], return_index=True)
    test = df.iloc[rows[first]].copy()
    test["negatives"] = [items.originals[row].tolist() for row in split.test_negatives]
    return df.loc[~out].copy(), test
