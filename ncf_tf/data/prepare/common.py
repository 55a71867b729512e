"""The error, the output files and their all-or-nothing writing, fast text for integer tables.

Outputs in ``dest``: the loader's three files (:mod:`ncf_tf.data.loader`) and the
id maps ``<name>.user_ids.tsv`` and ``<name>.item_ids.tsv`` (header line, then
``ncf id\\toriginal id``).
"""

from __future__ import annotations

import os
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from ncf_tf.core.files import OutputError, StagedGroup

OUTPUT_SUFFIXES = ("train.rating", "test.rating", "test.negative", "user_ids.tsv",
                   "item_ids.tsv")
# Named protocols' min_interactions and num_test_neg (explicit options win).
# "paper": He et al. (2017), sec. 4.1, as the authors' ml-1m files were made;
# "mlperf": MLPerf training v0.5 and the TF Model Garden's NCF on ml-20m.
PROTOCOLS = {"paper": {"min_interactions": 0, "num_test_neg": 99},
             "mlperf": {"min_interactions": 20, "num_test_neg": 999}}
# Rows formatted at a time: bounds the temporary (rows, width) byte tables.
TEXT_CHUNK_ROWS = 1 << 18


class PrepareError(ValueError):
    """Bad input data or options, in one line; ``suggest``: the parameters (name ->
    value) that would read the input, a "try ..." tail :meth:`render` writes."""

    def __init__(self, message: str, suggest: dict | None = None):
        super().__init__(message)
        self.message, self.suggest = message, dict(suggest or {})

    def render(self, option: Callable[[str, object], str], joiner: str = ", ") -> str:
        """The message, with the suggestion written by ``option(name, value)``."""
        if not self.suggest:
            return self.message
        return f"{self.message}; try {joiner.join(option(k, v) for k, v in self.suggest.items())}"

    def __str__(self) -> str:
        return self.render(lambda name, value: f"{name}={value!r}")


def output_paths(dest: str, name: str, suffixes=OUTPUT_SUFFIXES) -> list[str]:
    """The files written for data set ``name`` in ``dest``."""
    return [os.path.join(dest, f"{name}.{suffix}") for suffix in suffixes]


def check_outputs(dest: str, name: str, overwrite: bool = False, suffixes=OUTPUT_SUFFIXES,
                  group: str = "prepare", replaceable: list[str] | None = None) -> None:
    """PrepareError unless ``name`` is a plain file name and, without ``overwrite``,
    no output exists but those ``replaceable`` (by default, what a killed
    writer of the same ``group`` half-published)."""
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise PrepareError(f"data set name {name!r} must be a plain file name")
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise PrepareError(f"{dest}: exists and is not a folder")
    if not overwrite:
        ours = StagedGroup.half_published_in(dest, f"{name}.{group}") \
            if replaceable is None else replaceable
        existing = [p for p in output_paths(dest, name, suffixes)
                    if os.path.exists(p) and p not in ours]
        if existing:
            raise PrepareError(f"{existing[0]}: exists; refusing to replace it",
                               suggest={"overwrite": True})


def write_group(dest: str, name: str, group: str, suffixes, contents: list,
                overwrite: bool = False) -> list[str]:
    """Writes ``<dest>/<name>.<suffix>`` for each suffix and content, all or nothing.

    A content is ``str``, ``bytes`` or an iterable of them. The files are staged
    and published together (:class:`~ncf_tf.core.files.StagedGroup`, tag
    ``<name>.<group>``); a rerun after a kill replaces what it half-published.
    PrepareError when an output exists (without ``overwrite``) or a write fails.
    """
    names = [f"{name}.{suffix}" for suffix in suffixes]
    try:
        with StagedGroup(dest, f"{name}.{group}") as staged:
            check_outputs(dest, name, overwrite, suffixes, group, staged.half_published)
            for file, chunks in zip(names, contents):
                with open(staged.path(file), "wb") as f:
                    for chunk in ([chunks] if isinstance(chunks, (str, bytes)) else chunks):
                        f.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
            return staged.publish(names)
    except OutputError as e:
        raise PrepareError(str(e)) from None
    except OSError as e:
        half = StagedGroup.half_published_in(dest, f"{name}.{group}")
        raise PrepareError(f"{dest}: writing failed ({e.strerror or e}); " + (
            f"{len(half)} of the {len(names)} files published, the same command run again "
            "completes them" if half else "nothing written")) from None


def repeats(keys: np.ndarray, keep_last: bool = False) -> np.ndarray:
    """``(n,)`` bool: True where ``keys[i]`` equals an earlier key (a later one
    with ``keep_last``), so that ``~repeats(keys)`` keeps one of each."""
    order = np.argsort(keys, kind="stable")
    ranked = keys[order]
    repeat = np.zeros(len(keys), bool)
    repeat[order[:-1] if keep_last else order[1:]] = ranked[1:] == ranked[:-1]
    return repeat


def id_map_text(ids: np.ndarray, kind: str, header: str) -> str:
    """An id map: header ``ncf_<kind>_id\\t<header>``, then ``k\\toriginal id of k``."""
    table = pd.DataFrame({f"ncf_{kind}_id": np.arange(len(ids)), header: ids})
    return table.to_csv(sep="\t", index=False, lineterminator="\n")


# ----------------------------------------------------------------------------
# Text of integer tables, vectorised: lines are a (rows, width) uint8 table,
# each field right-aligned and padded on the left with NUL bytes; dropping the
# NULs leaves the text, so Python never formats a number one by one.


def _digits(magnitude: np.ndarray, width: int) -> np.ndarray:
    """``(n, width)`` uint8 decimal digits of non-negative ints, leading zeros as NUL."""
    out = np.empty((len(magnitude), width), np.uint8)
    rest = magnitude.copy()
    for column in range(width - 1, -1, -1):
        out[:, column] = rest % 10
        rest //= 10
    out += ord("0")
    for place in range(1, width):  # the last digit always shows (0 is "0")
        out[magnitude < 10 ** place, width - 1 - place] = 0
    return out


def int_fields(values: np.ndarray) -> np.ndarray:
    """``(n, w)`` uint8: ``str(int(v))`` of each value, NUL-padded on the left;
    small values (ids) looked up in a table of ``0..max``'s text."""
    values = np.asarray(values).astype(np.int64, copy=False)
    magnitude = np.abs(values)
    top = int(magnitude.max()) if len(values) else 0
    digits = len(str(top))
    negative = values < 0
    signed = bool(negative.any())
    out = np.zeros((len(values), digits + signed), np.uint8)
    if top < max(1 << 16, len(values)) and top < 1 << 24:
        out[:, signed:] = _digits(np.arange(top + 1), digits)[magnitude]
    else:
        out[:, signed:] = _digits(magnitude, digits)
    if signed:  # the NULs between the sign and the first digit are dropped later
        out[negative, 0] = ord("-")
    return out


def lookup_fields(codes: np.ndarray, texts: list[str]) -> np.ndarray:
    """``(n, w)`` uint8: ``texts[codes[i]]`` (ASCII), NUL-padded on the left."""
    width = max(len(t) for t in texts)
    table = np.zeros((len(texts), width), np.uint8)
    for row, text in enumerate(texts):
        table[row, width - len(text):] = np.frombuffer(text.encode("ascii"), np.uint8)
    return table[np.asarray(codes)]


def constant_field(n: int, text: str) -> np.ndarray:
    """``(n, len(text))`` uint8: ``text`` on every row."""
    return np.tile(np.frombuffer(text.encode("ascii"), np.uint8), (n, 1))


def join_fields(fields: list[np.ndarray]) -> bytes:
    """The text of ``(n, w_k)`` uint8 field tables placed side by side, NULs dropped."""
    table = np.concatenate(fields, axis=1).ravel()
    return table[table != 0].tobytes()


def rating_chunks(users: np.ndarray, items: np.ndarray, ratings: tuple[np.ndarray, list[str]],
                  timestamps: np.ndarray, timestamp_texts: list[str] | None = None
                  ) -> Iterable[bytes]:
    """``user\\titem\\trating\\ttimestamp`` lines, a chunk of rows at a time; row
    i's rating is ``texts[codes[i]]`` for ``ratings = (codes, texts)``, its
    timestamp an integer or, given ``timestamp_texts``, a code into them."""
    codes, texts = ratings
    for start in range(0, len(users), TEXT_CHUNK_ROWS):
        rows = slice(start, start + TEXT_CHUNK_ROWS)
        tab = constant_field(len(users[rows]), "\t")
        stamps = int_fields(timestamps[rows]) if timestamp_texts is None else \
            lookup_fields(timestamps[rows], timestamp_texts)
        yield join_fields([int_fields(users[rows]), tab, int_fields(items[rows]), tab,
                           lookup_fields(codes[rows], texts), tab, stamps,
                           constant_field(len(tab), "\n")])


def negative_chunks(users: np.ndarray, items: np.ndarray,
                    negatives: np.ndarray) -> Iterable[bytes]:
    """``(user,item)\\tneg_1\\t...\\tneg_k`` lines, a chunk of rows at a time;
    ``negatives`` is ``(n, k)``, non-negative."""
    n_all, k = negatives.shape
    top = int(negatives.max()) if negatives.size else 0
    # "\t" then the number, for every value 0..top: one gather per chunk.
    table = np.concatenate([constant_field(top + 1, "\t"), int_fields(np.arange(top + 1))],
                           axis=1)
    step = max(1, 4 * TEXT_CHUNK_ROWS // max(k, 1))
    for start in range(0, n_all, step):
        rows = slice(start, start + step)
        block = negatives[rows]
        n = len(block)
        yield join_fields([constant_field(n, "("), int_fields(users[rows]),
                           constant_field(n, ","), int_fields(items[rows]),
                           constant_field(n, ")"), table[block].reshape(n, -1),
                           constant_field(n, "\n")])
