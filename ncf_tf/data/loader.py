"""Loader for the authors' leave-one-out files, into a scipy sparse matrix.

A data set ``<name>`` is three files in one folder (plain or gzipped):

* ``<name>.train.rating``: ``user\\titem\\trating[\\ttimestamp]`` a line, 0-based
  ids, an interaction when rating > 0; as in the authors' code, #users and
  #items are its largest ids plus one.
* ``<name>.test.rating``: the same format, each user's held-out interaction.
* ``<name>.test.negative``: per test line, ``(user,item)\\tneg_1\\t...\\tneg_n``,
  the items the test item is ranked against.

Every check fails with a :class:`DataError` naming the file, the line and what
was expected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
import zlib

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ncf_tf.core.arrays import count_distinct
from ncf_tf.core.files import InputFileError, first_line, hash_file, open_input

SUFFIXES = ("train.rating", "test.rating", "test.negative")


class DataError(ValueError):
    """A data file is missing, malformed or inconsistent with the others."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Training interactions and the leave-one-out test set.

    Attributes:
        name: data set name, e.g. ``"ml-1m"``.
        train: ``(num_users, num_items)`` CSR matrix, 1.0 at each training
            interaction, sorted indices, no duplicates.
        test_users: ``(num_test,)`` int32 user of each test line.
        test_items: ``(num_test,)`` int32 held-out item of each test line.
        test_negatives: ``(num_test, num_negatives)`` int32 items ranked against
            the held-out item, which they may contain (a quirk of the authors'
            ml-1m file; the evaluator collapses such duplicates).
        files: path -> SHA-256 of each file read.
        train_timestamps: ``(num_train,)`` float64 timestamp of each training
            interaction in CSR order (``train.indices``): the latest of a
            pair's lines, NaN where none has one. None without a timestamp
            column or when not read from a file.
        train_lines: ``(num_train,)`` int64 0-based training-file line of each
            interaction (a pair's first), aligned likewise: it orders the
            interactions at one timestamp, as the files list each user's lines
            latest first. None when not read from a file.
    """

    name: str
    train: sp.csr_matrix
    test_users: np.ndarray
    test_items: np.ndarray
    test_negatives: np.ndarray
    files: dict
    train_timestamps: np.ndarray | None = None
    train_lines: np.ndarray | None = None

    @property
    def num_users(self) -> int:
        return self.train.shape[0]

    @property
    def num_items(self) -> int:
        return self.train.shape[1]

    @property
    def num_train(self) -> int:
        return self.train.nnz

    @property
    def num_test(self) -> int:
        return len(self.test_users)

    def summary(self) -> str:
        return summary(self.num_users, self.num_items, self.num_train, self.num_test)


def summary(num_users: int, num_items: int, num_train: int, num_test: int) -> str:
    """The authors' ``#user=..., #item=..., #train=..., #test=...``."""
    return f"#user={num_users}, #item={num_items}, #train={num_train}, #test={num_test}"


def find_file(path: str, name: str, suffix: str) -> str:
    """Returns ``<path>/<name>.<suffix>`` or its ``.gz``; DataError if neither."""
    plain = os.path.join(path, f"{name}.{suffix}")
    for candidate in (plain, plain + ".gz"):
        if os.path.isfile(candidate):
            return candidate
    raise DataError(
        f"{plain}: file not found (nor {os.path.basename(plain)}.gz) in "
        f"{os.path.abspath(path)} (path={path!r}); "
        f"fetch the data with: bin/download_data --dataset {name} --dest {path}")


@contextlib.contextmanager
def reading(path: str, error: type[ValueError] = DataError):
    """Turns the errors of reading ``path`` (missing, not UTF-8, corrupt) into a
    one-line ``error``; a DataError's adds the hint of a damaged gzip."""
    try:
        yield
    except InputFileError as e:
        raise error(str(e)) from None
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text ({e})") from None
    except (EOFError, OSError, zlib.error) as e:
        hint = "; truncated or corrupt gzip?" if error is DataError else ""
        raise error(f"{path}: cannot read ({e}){hint}") from None


def read_first_line(path: str, error: type[ValueError] = DataError) -> str:
    """The first non-blank line of a plain or gzipped file; ``error`` when it
    cannot be read or has none."""
    with reading(path, error):
        line = first_line(path)
    if not line:
        raise error(f"{path}: file is empty")
    return line


def _read_lines(filename: str) -> list[str]:
    """The lines of a plain or gzipped file; DataError when it cannot be read or is empty."""
    with reading(filename), open_input(filename) as f:
        lines = f.read().splitlines()
    if not any(line.strip() for line in lines):
        raise DataError(f"{filename}: file is empty")
    return lines


def _bad_line(filename: str, lines: list[str], check) -> DataError:
    """The error describing the first line that fails ``check`` (the error path only)."""
    for number, line in enumerate(lines, start=1):
        problem = check(line)
        if problem:
            return DataError(f"{filename}, line {number}: {problem}: {line[:80]!r}")
    return DataError(f"{filename}: malformed content")


def _check_rating_line(line: str) -> str | None:
    fields = line.split("\t")
    if len(fields) < 3:
        return "expected user<TAB>item<TAB>rating[<TAB>timestamp]"
    try:
        user, item = int(fields[0]), int(fields[1])
        float(fields[2])
    except ValueError:
        return "user and item must be integers and rating a number"
    if user < 0 or item < 0:
        return "ids must be non-negative"
    return None


def read_ratings(filename: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reads a ``.rating`` file into (users, items, ratings) arrays."""
    return read_ratings_with_timestamps(filename)[:3]


def read_ratings_with_timestamps(
        filename: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Reads a ``.rating`` file into (users, items, ratings, timestamps) arrays;
    timestamps are optional, never an error: float64, NaN on a line without a
    numeric fourth field, or None when the first line has no fourth field."""
    # pandas reads the file; its lines are read only to name a bad one.
    has_timestamps = len(read_first_line(filename).split("\t")) >= 4

    def lines() -> list[str]:
        found = _read_lines(filename)
        return found[:-1] if not found[-1].strip() else found

    with reading(filename):
        try:
            frame = pd.read_csv(filename, sep="\t", header=None,
                                usecols=[0, 1, 2, 3] if has_timestamps else [0, 1, 2],
                                dtype={0: np.int64, 1: np.int64, 2: np.float64},
                                engine="c", skip_blank_lines=False)
        except (ValueError, pd.errors.ParserError):
            raise _bad_line(filename, lines(), _check_rating_line) from None
    users, items = frame[0].to_numpy(), frame[1].to_numpy()
    if np.isnan(frame[2].to_numpy()).any() or (users < 0).any() or (items < 0).any():
        raise _bad_line(filename, lines(), _check_rating_line)
    timestamps = (pd.to_numeric(frame[3], errors="coerce").to_numpy(np.float64)
                  if has_timestamps else None)
    return users, items, frame[2].to_numpy(), timestamps


def read_negatives(filename: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reads a ``.test.negative`` file into (users, items, negatives[n, k]): in
    one pandas pass when well-formed, else line by line to name the bad line."""
    return _read_negatives_fast(filename) or _read_negatives_lines(filename)


def _read_negatives_fast(filename: str):
    """(users, items, negatives) of a well-formed file, else None."""
    read_first_line(filename)   # DataError for an empty or unreadable file
    try:
        frame = pd.read_csv(filename, sep="\t", header=None, engine="c", dtype={0: str})
    except (ValueError, pd.errors.ParserError, EOFError, OSError, zlib.error):
        return None
    frame = frame.loc[:, ~frame.isna().all()]   # a trailing tab adds an empty column
    heads = frame[0].str.extract(r"^\((\d+),(\d+)\)$")
    negatives = frame.iloc[:, 1:]
    if (heads.isna().any().any() or negatives.shape[1] == 0
            or not all(kind == "i" for kind in negatives.dtypes.map(lambda d: d.kind))):
        return None
    negatives = negatives.to_numpy(np.int64)
    return None if (negatives < 0).any() else (heads[0].to_numpy(np.int64),
                                                heads[1].to_numpy(np.int64), negatives)


def _read_negatives_lines(filename: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lines = _read_lines(filename)
    while lines and not lines[-1].strip():
        lines.pop()
    heads, rows = [], []
    for number, line in enumerate(lines, start=1):
        head, _, rest = line.partition("\t")
        try:
            if not (head.startswith("(") and head.endswith(")")):
                raise ValueError
            user, item = (int(x) for x in head[1:-1].split(","))
            negatives = np.array(rest.split(), dtype=np.int64)
        except ValueError:
            raise DataError(f"{filename}, line {number}: expected (user,item)<TAB>neg_1<TAB>... "
                            f"with integer ids: {line[:80]!r}") from None
        if rows and len(negatives) != len(rows[0]):
            raise DataError(f"{filename}, line {number}: {len(negatives)} negatives, "
                            f"but line 1 has {len(rows[0])}")
        if not len(negatives):   # line 1: the others have as many as it
            raise DataError(f"{filename}, line {number}: no negative items")
        if user < 0 or item < 0 or (negatives < 0).any():
            raise DataError(f"{filename}, line {number}: ids must be non-negative")
        heads.append((user, item))
        rows.append(negatives)
    heads = np.array(heads, np.int64)
    return heads[:, 0], heads[:, 1], np.stack(rows)


def sha256(filename: str) -> str:
    return hash_file(filename, hashlib.sha256())[0]


def load_dataset(path: str, name: str) -> Dataset:
    """Loads and cross-checks ``<path>/<name>.{train.rating,test.rating,test.negative}``.

    Raises:
        DataError: a file is missing, empty, truncated or malformed; a test
            line is out of the training file's range or out of step with the
            negative file.
    """
    train_file, test_file, negative_file = (find_file(path, name, s) for s in SUFFIXES)

    users, items, ratings, timestamps = read_ratings_with_timestamps(train_file)
    keep = ratings > 0
    if not keep.any():
        raise DataError(f"{train_file}: no line with rating > 0")
    _check_dense_ids(train_file, users, "user")
    _check_dense_ids(train_file, items, "item")
    # As in the authors' code: the sizes from every line, the matrix from rating > 0.
    num_users, num_items = int(users.max()) + 1, int(items.max()) + 1
    users, items = users[keep], items[keep]
    train = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)),
                          shape=(num_users, num_items))
    train.sum_duplicates()
    train.data[:] = 1.0
    train.sort_indices()
    train_timestamps, train_lines = _per_pair(
        users, items, np.flatnonzero(keep), None if timestamps is None else timestamps[keep],
        num_items)

    test_users, test_items, _ = read_ratings(test_file)
    _, first = np.unique(test_users, return_index=True)
    if len(first) < len(test_users):
        line = int(np.setdiff1d(np.arange(len(test_users)), first)[0]) + 1
        raise DataError(f"{test_file}, line {line}: user {test_users[line - 1]} already has a "
                        "test line; expected one held-out interaction per user")
    check_in_range(test_file, test_users, test_items, num_users, num_items)
    absent = np.diff(train.indptr)[test_users] == 0
    if absent.any():
        line = int(np.argmax(absent)) + 1
        raise DataError(f"{test_file}, line {line}: user {test_users[line - 1]} has no "
                        f"training interaction in {train_file}")

    neg_users, neg_items, negatives = read_negatives(negative_file)
    if len(neg_users) != len(test_users):
        raise DataError(f"{negative_file}: {len(neg_users)} lines, expected one per line of "
                        f"{test_file} ({len(test_users)})")
    mismatch = (neg_users != test_users) | (neg_items != test_items)
    if mismatch.any():
        line = int(np.argmax(mismatch)) + 1
        raise DataError(f"{negative_file}, line {line}: starts with ({neg_users[line - 1]},"
                        f"{neg_items[line - 1]}) but {test_file} line {line} is "
                        f"({test_users[line - 1]},{test_items[line - 1]})")
    if negatives.max() >= num_items:
        line = int(np.argmax((negatives >= num_items).any(axis=1))) + 1
        raise DataError(f"{negative_file}, line {line}: negative item id >= {num_items}, "
                        "the number of items in the training file")

    return Dataset(
        name=name, train=train,
        test_users=test_users.astype(np.int32), test_items=test_items.astype(np.int32),
        test_negatives=negatives.astype(np.int32),
        files={f: sha256(f) for f in (train_file, test_file, negative_file)},
        train_timestamps=train_timestamps, train_lines=train_lines)


def check_in_range(test_file: str, users: np.ndarray, items: np.ndarray, num_users: int,
                   num_items: int) -> None:
    """DataError naming the first test line whose user or item is not in the
    training file's ``num_users x num_items``."""
    outside = (users >= num_users) | (items >= num_items)
    if outside.any():
        line = int(np.argmax(outside)) + 1
        raise DataError(f"{test_file}, line {line}: user {users[line - 1]} / item "
                        f"{items[line - 1]} outside the training file's "
                        f"{num_users} users x {num_items} items")


SPARE_IDS = 1000   # unused ids tolerated below the largest


def _check_dense_ids(filename: str, ids: np.ndarray, kind: str) -> None:
    """DataError when more than half of ``0..max`` (and ``SPARE_IDS``) is unused:
    a model has one embedding per id up to the largest, so a stray huge id (a
    timestamp in the wrong column) would allocate gigabytes."""
    largest, distinct = int(ids.max()), count_distinct(ids)
    unused = largest + 1 - distinct
    if unused > SPARE_IDS and unused > distinct:
        line = int(np.argmax(ids)) + 1
        raise DataError(f"{filename}, line {line}: {kind} id {largest}, but only {distinct} "
                        f"distinct {kind}s in the file; expected 0-based ids 0..n-1")


def _per_pair(users: np.ndarray, items: np.ndarray, lines: np.ndarray,
              timestamps: np.ndarray | None,
              num_items: int) -> tuple[np.ndarray | None, np.ndarray]:
    """Latest timestamp and first line of each distinct (user, item), in CSR order
    (increasing ``user * num_items + item``, as ``np.unique``'s keys); ``fmax``
    ignores NaN, so a pair is NaN only if none of its lines has one."""
    keys = users.astype(np.int64) * num_items + items
    unique_keys, pair = np.unique(keys, return_inverse=True)
    first_line = np.full(len(unique_keys), np.iinfo(np.int64).max)
    np.minimum.at(first_line, pair, lines.astype(np.int64))
    if timestamps is None:
        return None, first_line
    latest = np.full(len(unique_keys), np.nan)
    np.fmax.at(latest, pair, timestamps)
    return latest, first_line


def load_dataset_verbose(path: str, name: str, log=print) -> Dataset:
    """:func:`load_dataset` with the authors' ``Load data done`` line."""
    start = time.time()
    dataset = load_dataset(path, name)
    log(f"Load data done [{time.time() - start:.1f} s]. {dataset.summary()}")
    return dataset
