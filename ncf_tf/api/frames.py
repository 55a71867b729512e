"""DataFrames of raw ids -> the :class:`~ncf_tf.data.loader.Dataset` the scripts train on.

The Python API (:class:`ncf_tf.api.recommender.Recommender`) takes pandas
DataFrames whose user and item ids are of any type that sorts (integers,
strings, ...). Here they are checked and numbered, and the training
interactions become exactly the ``Dataset`` that
:func:`~ncf_tf.data.loader.load_dataset` reads from the same data in the
authors' files:

* Ids are numbered 0, 1, 2... in sorted order of the raw ids
  (:class:`Ids`), so integer ids that are already 0-based (the authors'
  ml-1m files read into a DataFrame) keep their numbers, and the model,
  its initial weights and its training are the scripts'. The users are
  those of the training rows; the items are those of the training rows
  plus the test rows' items and negatives (in the authors' ml-1m files two
  items occur only in the test file and are in the catalogue all the same).
* Every row is an interaction; a (user, item) pair on several rows counts
  once.
* Rows are the lines of a training file: with ``validation="latest"``, a
  user's latest interaction is the one of the largest timestamp and, among
  equal timestamps (or without a timestamp column), the *earlier row*, as in
  the authors' files and ``bin/prepare_data``'s, which list each user's lines
  latest first (:mod:`ncf_tf.data.validation`).

Every problem is a one-line :class:`FrameError` naming the argument, the
column or the id.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ncf_tf.data.idmap import IdMap
from ncf_tf.data.loader import Dataset, _per_pair
from ncf_tf.data.validation import sample_unseen


class FrameError(ValueError):
    """A DataFrame or a list of ids the API cannot use."""


def check_frame(frame, columns: dict[str, str], what: str) -> None:
    """``frame`` is a non-empty DataFrame with ``columns`` (name -> role).

    Raises:
        FrameError: not a DataFrame, no rows, a column missing, or a missing
            (NaN/None) value in an id column; naming ``what`` and the column.
    """
    if not isinstance(frame, pd.DataFrame):
        raise FrameError(f"{what}: expected a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        raise FrameError(f"{what}: the DataFrame is empty (no rows)")
    for column, role in columns.items():
        if column not in frame.columns:
            raise FrameError(f"{what}: no column {column!r} (the {role} column); its columns "
                             f"are {', '.join(map(repr, frame.columns))}")
    for column, role in columns.items():
        if role == "negatives":
            continue
        missing = frame[column].isna().to_numpy()
        if missing.any():
            row = frame.index[int(np.argmax(missing))]
            raise FrameError(f"{what}: column {column!r} has a missing {role} id (NaN) "
                             f"at row {row!r}")


def column_values(values, what: str) -> np.ndarray:
    """Raw ids as a flat numpy array; FrameError for a missing one."""
    if isinstance(values, (pd.Series, pd.Index)):
        array = values.to_numpy()
    elif np.isscalar(values) or isinstance(values, (str, bytes)):
        array = np.array([values], dtype=object if isinstance(values, str) else None)
    else:
        array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
    array = array.reshape(-1)
    missing = pd.isna(array)
    if missing.any():
        raise FrameError(f"{what}: missing id (NaN) at position {int(np.argmax(missing))}")
    return array


class Ids:
    """The raw ids of the users or the items, numbered in sorted order.

    Attributes:
        map: the :class:`~ncf_tf.data.idmap.IdMap` (``originals`` are the raw
            ids, their type kept), which also turns recommendations back
            into raw ids (:func:`ncf_tf.serve.recommend.table`).
        column: the column they were read from, for messages.
    """

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
        """``(n,)`` int64 numbers of the raw ids ``values``.

        Raises:
            FrameError: naming ``what`` and the first id not known.
        """
        values = column_values(values, what)
        found = self.index.get_indexer(values) if len(values) else np.empty(0, np.int64)
        if (found < 0).any():
            bad = values[int(np.argmax(found < 0))]
            raise FrameError(f"{what}: unknown {self.kind} id {_show(bad)} (not in the "
                             f"training data's {self.count} {self.kind}s)")
        return found.astype(np.int64)

    def same_as(self, other: "Ids") -> bool:
        return (len(self.originals) == len(other.originals)
                and bool(self.index.equals(other.index)))

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


def _show(value) -> str:
    value = value.item() if isinstance(value, np.generic) else value
    return repr(value)


def interactions(frame: pd.DataFrame, user_col: str, item_col: str, users: Ids, items: Ids,
                 timestamp_col: str | None = None):
    """The training matrix of ``frame``, as :func:`~ncf_tf.data.loader.load_dataset` builds it.

    Returns:
        ``(train, timestamps, lines)``: ``(num_users, num_items)`` CSR with 1.0
        at each distinct pair (sorted indices); per stored pair its latest
        timestamp (None without ``timestamp_col``) and its first row number.
    """
    u = users.encode(frame[user_col], f"column {user_col!r}")
    i = items.encode(frame[item_col], f"column {item_col!r}")
    times = None
    if timestamp_col is not None:
        times = pd.to_numeric(frame[timestamp_col], errors="coerce").to_numpy(np.float64)
    train = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)),
                          shape=(users.count, items.count))
    train.sum_duplicates()
    train.data[:] = 1.0
    train.sort_indices()
    # The loader's own rule for a pair on several lines (latest time, first line).
    timestamps, lines = _per_pair(u, i, np.arange(len(u)), times, items.count)
    return train, timestamps, lines


def negatives_matrix(frame: pd.DataFrame, column: str, items: Ids, what: str) -> np.ndarray:
    """``(n, m)`` int64 item numbers of a column that lists m item ids on every row."""
    rows = frame[column].tolist()
    try:
        lengths = {len(row) for row in rows}
    except TypeError:
        raise FrameError(f"{what}: column {column!r} must hold a list of item ids on every "
                         "row") from None
    if len(lengths) != 1 or 0 in lengths:
        raise FrameError(f"{what}: column {column!r} must list the same number (>= 1) of "
                         f"item ids on every row, got {sorted(lengths)[:5]}")
    flat = np.concatenate([np.asarray(list(row), dtype=object) for row in rows])
    if all(isinstance(v, (int, np.integer)) for v in flat):
        flat = flat.astype(np.int64)
    return items.encode(flat, f"{what}: column {column!r}").reshape(len(rows), -1)


def sampled_negatives(train: sp.csr_matrix, users: np.ndarray, items: np.ndarray,
                      num_negatives: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """``(n, num_negatives)`` items per test line, uniformly without replacement
    among those the user has neither a training nor a test interaction with
    (:func:`ncf_tf.data.validation.sample_unseen`)."""
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
    """SHA-256 of the numbered training pairs and test lines: the record's
    stand-in for the files' SHA-256 (equal data, equal fingerprint)."""
    digest = hashlib.sha256()
    for array in (dataset.train.indptr, dataset.train.indices, dataset.test_users,
                  dataset.test_items, dataset.test_negatives):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()
