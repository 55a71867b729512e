"""Original user and item ids, from the id maps ``bin/prepare_data`` writes.

``<name>.user_ids.tsv`` and ``<name>.item_ids.tsv``: a header line, then
``ncf id<TAB>original id`` for the ncf ids 0, 1, 2... in order. The authors'
files have none: :class:`IdMap` is then the identity on ``0 .. count - 1``.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import pandas as pd


class IdMapError(ValueError):
    """An id map is malformed or does not fit the data, or an id is unknown."""


class IdMap:
    """Original id (str) <-> 0-based ncf id, for the users or the items.

    Args:
        kind, source: ``"user"`` or ``"item"``, and where the map was read (messages).
        originals: ``(count,)`` original id of each ncf id, or None when the
            ncf ids are the only ids.
    """

    def __init__(self, kind: str, originals: np.ndarray | None, count: int, source: str = ""):
        self.kind, self.originals, self.count, self.source = kind, originals, count, source
        self._index = None if originals is None else pd.Index(originals)

    def to_ncf(self, ids: Iterable[str], flag: str) -> np.ndarray:
        """The ncf ids of ``ids`` (original ids, or ncf ids without a map);
        IdMapError naming ``flag``, the first unknown id and what was expected."""
        ids = [str(i).strip() for i in ids]
        if self._index is None:
            bad = [i for i in ids if not (i.isascii() and i.isdigit() and int(i) < self.count)]
            if bad:
                raise IdMapError(
                    f"{flag}: {bad[0]!r} is not a {self.kind} id: expected an integer in "
                    f"0..{self.count - 1} (the data has no {self.kind} id map, so ids are "
                    "the 0-based ids of its files)")
            return np.array([int(i) for i in ids], np.int64)
        found = self._index.get_indexer(ids)
        if (found < 0).any():
            bad = ids[int(np.argmax(found < 0))]
            raise IdMapError(f"{flag}: unknown {self.kind} id {bad!r}: not in {self.source} "
                             f"({self.count} ids, e.g. {', '.join(map(str, self.originals[:3]))})")
        return found.astype(np.int64)

    def to_original(self, ncf_ids: np.ndarray) -> np.ndarray:
        """Original ids (str) of ``ncf_ids``; the ncf ids (int) without a map."""
        ncf_ids = np.asarray(ncf_ids)
        return ncf_ids if self.originals is None else self.originals[ncf_ids]


def read_id_map(filename: str, kind: str, count: int) -> IdMap:
    """Reads one id map and checks it has ids ``0 .. count - 1`` in order.

    Raises:
        IdMapError: the file is unreadable or not two columns, the ncf ids
            are not ``0, 1, 2...``, an original id repeats, the count differs.
    """
    try:
        table = pd.read_csv(filename, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise IdMapError(f"{filename}: cannot read the id map ({str(e).splitlines()[0]})") from None
    if table.shape[1] != 2:
        raise IdMapError(f"{filename}: expected two tab-separated columns (ncf id, original "
                         f"id), got {table.shape[1]}")
    expected = [str(k) for k in range(len(table))]
    numbers = table.iloc[:, 0].tolist()
    if numbers != expected:
        line = next(k for k, (a, b) in enumerate(zip(numbers, expected)) if a != b) + 2
        raise IdMapError(f"{filename}, line {line}: expected ncf id {expected[line - 2]}, "
                         f"got {numbers[line - 2]!r}")
    originals = table.iloc[:, 1].to_numpy(dtype=object)
    if len(originals) != count:
        raise IdMapError(f"{filename}: {len(originals)} {kind} ids, but the data has {count} "
                         f"{kind}s; is it the id map of another data set?")
    repeated = pd.Index(originals).duplicated()
    if repeated.any():
        line = int(np.argmax(repeated)) + 2
        raise IdMapError(f"{filename}, line {line}: original id {originals[line - 2]!r} "
                         "appears twice")
    return IdMap(kind, originals, count, filename)


def load_id_maps(path: str, name: str, num_users: int, num_items: int) -> tuple[IdMap, IdMap]:
    """The user and item maps of data set ``name`` in ``path``: the identity
    without their files, IdMapError with one of the two (a half-copied data set)."""
    files = {kind: os.path.join(path, f"{name}.{kind}_ids.tsv") for kind in ("user", "item")}
    present = {kind: os.path.isfile(f) for kind, f in files.items()}
    if not any(present.values()):
        return IdMap("user", None, num_users), IdMap("item", None, num_items)
    if not all(present.values()):
        have, lack = ("user", "item") if present["user"] else ("item", "user")
        raise IdMapError(f"{files[lack]}: not found, but {files[have]} is; id maps come in "
                         "pairs (bin/prepare_data writes both)")
    return (read_id_map(files["user"], "user", num_users),
            read_id_map(files["item"], "item", num_items))
