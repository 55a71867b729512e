"""Top-K recommendation over the whole catalogue, in one batched scoring pass.

Items are ranked by the model's logit (as by the probability), the user's
training items excluded unless asked otherwise. Ties go to the lower item id;
a NaN score (a diverged model) counts as -inf.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Union

import keras
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ncf_tf.models import layers as L
from ncf_tf.models import trained
from ncf_tf.core.files import atomic_path
from ncf_tf.models.scoring import MAX_FLOATS, all_item_logits, compiled, width
from ncf_tf.data.idmap import IdMap
from ncf_tf.eval.leave_one_out import ScoreFn

Scorer = Union[keras.Model, ScoreFn]

OUTPUT_FORMATS = (".csv", ".json")


class RecommendError(ValueError):
    """Bad arguments to :func:`top_k` or an unusable output file."""


@dataclasses.dataclass(frozen=True)
class TopK:
    """The K best items of each of ``users`` ``(n,)``, best first: ``items``
    ``(n, k)`` int64 (-1 past the items a user has left) and their ``scores``
    ``(n, k)`` float32 logits (-inf there)."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray

    def counts(self) -> np.ndarray:
        """``(n,)`` number of real (not -1) entries of each user."""
        return (self.items >= 0).sum(axis=1)


def rank_items(scores, excluded, k: int):
    """``(items (b, k) int32, scores (b, k) float32)``: the k best of each row of
    ``scores`` ``(b, I)``, best first, entries where ``excluded`` ``(b, I)`` is
    True left out (-1 and -inf past the items a row has left)."""
    ops = keras.ops
    minus_inf = ops.convert_to_tensor(-np.inf, "float32")
    scores = ops.convert_to_tensor(scores, "float32")
    # NaN would compare unpredictably; as -inf it never beats a real score.
    scores = ops.where(ops.logical_or(excluded, ops.isnan(scores)), minus_inf, scores)
    values, items = ops.top_k(scores, k, sorted=True)
    available = ops.shape(scores)[1] - ops.sum(ops.cast(excluded, "int32"), axis=1)
    missing = ops.expand_dims(ops.arange(k, dtype="int32"), 0) >= ops.expand_dims(available, 1)
    return (ops.where(missing, ops.convert_to_tensor(-1, "int32"), ops.cast(items, "int32")),
            ops.where(missing, minus_inf, values))


def excluded_mask(exclude: sp.csr_matrix | None, users: np.ndarray,
                  num_items: int) -> np.ndarray:
    """``(len(users), num_items)`` bool: True at each user's stored entries of ``exclude``."""
    mask = np.zeros((len(users), num_items), bool)
    if exclude is not None:
        starts = exclude.indptr[users]
        counts = exclude.indptr[users + 1] - starts
        # Each entry's index into exclude.indices: its row's start plus its offset.
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        mask[np.repeat(np.arange(len(users)), counts),
             exclude.indices[np.repeat(starts, counts) + offsets]] = True
    return mask


def top_k(scorer: Scorer, users, num_items: int, exclude: sp.csr_matrix | None = None,
          k: int = 10, max_floats: int = MAX_FLOATS) -> TopK:
    """The ``k`` best items of each of ``users`` among all ``num_items``.

    Args:
        scorer: a GMF, MLP or NeuMF ``keras.Model``, or a
            ``score_fn(users, items)`` scoring flat pairs (any other model).
        users: ``(n,)`` user ids.
        num_items: the catalogue size.
        exclude: ``(num_users, num_items)`` CSR whose stored entries are never
            recommended to their row's user (the training items), or None.
        k: how many items per user, ``1 <= k <= num_items``.
        max_floats: bound on a chunk's largest intermediate (users per chunk).

    Returns:
        :class:`TopK`, rows in the order of ``users``.

    Raises:
        RecommendError: ``k`` out of range, a user out of ``exclude``'s rows,
            or ``exclude`` of another catalogue size.
    """
    users = np.asarray(users, dtype=np.int64).reshape(-1)
    check_k(k, num_items, RecommendError)
    if exclude is not None:
        if exclude.shape[1] != num_items:
            raise RecommendError(f"the excluded-items matrix has {exclude.shape[1]} items, "
                                 f"the catalogue {num_items}")
        if len(users) and (users.min() < 0 or users.max() >= exclude.shape[0]):
            bad = users[(users < 0) | (users >= exclude.shape[0])][0]
            raise RecommendError(f"user {bad} is not in 0..{exclude.shape[0] - 1}")
        exclude = exclude.tocsr()
    if isinstance(scorer, keras.Model) and trained.model_kind(scorer) is not None:
        per_pair = width(scorer)

        def best(chunk, excluded):
            return rank_items(all_item_logits(scorer, chunk), excluded, k)
        if len(users) > max_floats // (num_items * per_pair):
            # XLA fuses a chunk's broadcast add, ReLU and masking; it pays off
            # only over several chunks.
            best = compiled(best, xla=True)
    else:
        per_pair = 1
        pairs = _pair_scorer(scorer)

        def best(chunk, excluded):
            scores = np.asarray(pairs(np.repeat(chunk, num_items), np.tile(
                np.arange(num_items), len(chunk))), np.float32)
            return rank_items(scores.reshape(len(chunk), num_items), excluded, k)
    size = max(1, min(len(users), max_floats // (num_items * per_pair)))
    items_out = np.empty((len(users), k), np.int64)
    scores_out = np.empty((len(users), k), np.float32)
    for start in range(0, len(users), size):
        chunk = users[start:start + size]
        n = len(chunk)
        # The last chunk is padded with user 0: one shape, traced once.
        padded = np.zeros(size, np.int32)
        padded[:n] = chunk
        mask = np.zeros((size, num_items), bool)
        mask[:n] = excluded_mask(exclude, chunk, num_items)
        items, values = best(padded, mask)
        items_out[start:start + n] = keras.ops.convert_to_numpy(items)[:n]
        scores_out[start:start + n] = keras.ops.convert_to_numpy(values)[:n]
    return TopK(users, items_out, scores_out)


def check_k(k, num_items: int, error=ValueError, what: str = " (the number of items)") -> None:
    """Raises ``error`` unless ``k`` is an integer in ``1..num_items``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num_items:
        raise error(f"k must be an integer in 1..{num_items}{what}, got {k!r}")


def _pair_scorer(scorer: Scorer) -> ScoreFn:
    """A ``score_fn`` from a callable, or from a Keras model of (user, item) inputs."""
    if not isinstance(scorer, keras.Model):
        return scorer
    names = {layer.name for layer in scorer.layers}
    model = trained.logits_model(scorer) if L.PREDICTION in names else scorer

    def score_fn(users, items):
        out = model.predict_on_batch([users[:, None].astype(np.int32),
                                      items[:, None].astype(np.int32)])
        return np.asarray(out).reshape(-1)

    return score_fn


def table(result: TopK, user_map: IdMap, item_map: IdMap) -> pd.DataFrame:
    """One row per recommendation: ``user, rank, item, score`` (rank from 1),
    original ids when the maps have them; padding entries (item -1) left out."""
    real = result.items >= 0
    rows, ranks = np.nonzero(real)
    return pd.DataFrame({
        "user": user_map.to_original(result.users[rows]),
        "rank": ranks + 1,
        "item": item_map.to_original(result.items[rows, ranks]),
        "score": result.scores[rows, ranks].astype(np.float64).round(6),
    })


# MovieLens's title files: ml-1m/10m's id::title::genres, ml-20m/25m's CSV with a header.
MOVIE_FILES = {"movies.dat": "::", "movies.csv": ","}


def with_titles(frame: pd.DataFrame, folder: str, item_map: IdMap) -> pd.DataFrame:
    """``frame`` with a ``title`` column when the items carry their original
    MovieLens ids (the data has id maps) and ``folder`` has a title file."""
    names = [name for name in MOVIE_FILES if os.path.isfile(os.path.join(folder, name))]
    if item_map.originals is None or not names:
        return frame
    path = os.path.join(folder, names[0])
    if MOVIE_FILES[names[0]] == ",":
        movies = pd.read_csv(path, dtype=str, usecols=[0, 1])
    else:   # ml-1m's file is Latin-1; '::' needs the python engine
        movies = pd.read_csv(path, sep="::", engine="python", header=None, dtype=str,
                             usecols=[0, 1], encoding="latin-1")
    found = dict(zip(movies.iloc[:, 0].str.strip(), movies.iloc[:, 1]))
    return frame.assign(title=[found.get(str(item), "") for item in frame["item"]]) \
        if found else frame


def to_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n", float_format="%.6f")


def to_json(frame: pd.DataFrame, about: dict) -> str:
    """``about`` plus ``recommendations``: per user, items and scores, best first."""
    recommendations = [
        {"user": _plain(user), "items": [_plain(i) for i in group["item"]],
         "scores": group["score"].tolist()}
        for user, group in frame.groupby("user", sort=False)]
    return json.dumps({**about, "recommendations": recommendations}, indent=1) + "\n"


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def check_output(path: str, overwrite: bool = False, name: str = "path") -> str:
    """``.csv`` or ``.json``, the format of ``path``; RecommendError (calling it
    ``name``) for another extension, a folder, an existing file (without
    ``overwrite``) or no parent folder."""
    extension = os.path.splitext(path)[1].lower()
    folder = os.path.dirname(os.path.abspath(path))
    checks = ((extension not in OUTPUT_FORMATS, "expected a file name ending in .csv or .json"),
              (os.path.isdir(path), "is a folder"),
              (os.path.exists(path) and not overwrite,
               "exists; refusing to replace it (overwrite=True)"),
              (not os.path.isdir(folder), f"folder {folder} does not exist"))
    for failed, problem in checks:
        if failed:
            raise RecommendError(f"{name} {path}: {problem}")
    return extension


def write_text(path: str, text: str) -> None:
    """Writes ``path`` all or nothing, flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write(frame: pd.DataFrame, path: str, about: dict, overwrite: bool = False,
          name: str = "path") -> None:
    """Writes the recommendations as CSV or JSON, chosen by ``path``'s extension
    (errors call it ``name``)."""
    extension = check_output(path, overwrite, name)
    write_text(path, to_csv(frame) if extension == ".csv" else to_json(frame, about))
