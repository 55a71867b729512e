"""Fold-in: a new user's embedding rows fitted from their items, everything else frozen.

Beyond the paper (the authors' code has no fold-in). GMF, MLP and NeuMF: a
copy of the model (the one passed in is not modified) holds only the new
users' rows (:data:`USER_TABLES`, drawn N(0, init_std^2)), every other layer
frozen (dropout off). The rows take ``steps`` full-batch steps of Keras 1's
Adam on the training loss, equation 7 restricted to the user's items R_u,

    L_u = (1 / |T_u|) sum_{(i, y) in T_u} [log(1 + exp(s_ui)) - y s_ui]  + reg |rows_u|^2

with s_ui the model's logit and T_u each item of R_u with label 1 plus
``num_neg`` negatives per item with label 0, drawn afresh at every step by
the training sampler. Several users' loss is the sum of their L_u, so each
user's rows move as if folded in alone.

iALS (:class:`ncf_tf.baselines.ials.IALS`) has a closed form: the user half
of an ALS sweep with the item factors Y fixed,

    x_u = (Y^T Y + alpha sum_{i in R_u} y_i y_i^T + reg_u I)^{-1} (1 + alpha) sum_{i in R_u} y_i

the exact minimiser of the iALS objective over x_u (``rng``, ``steps``,
``num_neg`` and ``lr`` do not apply).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ncf_tf.baselines.ials import IALS
from ncf_tf.data.idmap import IdMap
from ncf_tf.data.sampling import NegativeSampler
from ncf_tf.models import trained
from ncf_tf.models.scoring import MAX_FLOATS, all_item_logits, width
from ncf_tf.serve.recommend import check_k, rank_items
from ncf_tf.train import training
from ncf_tf.train.optimizers import make_optimizer

# Chosen on validation items, not test items (600 ml-1m users held out of a NeuMF-8):
# 200 steps at 0.01 matched 100 at 0.03 or 400 at 0.01, beat 50 steps or lr 0.003.
DEFAULT_STEPS = 200
DEFAULT_LR = 0.01
DEFAULT_NUM_NEG = 4

# The user tables of each model: the layers fold-in fits.
USER_TABLES = {"GMF": trained.EMBEDDINGS["GMF"][:1], "MLP": trained.MLP_EMBEDDINGS["MLP"][:1],
               "NeuMF": (trained.EMBEDDINGS["NeuMF"][0], trained.MLP_EMBEDDINGS["NeuMF"][0])}


class FoldInError(ValueError):
    """Bad input to fold-in: no items, an item out of range, a bad setting."""


@dataclasses.dataclass(frozen=True)
class FoldIn:
    """One new user, folded in from ``items`` ``(m,)`` (sorted, distinct): ``rows`` (layer
    name -> ``(d,)`` fitted row; iALS: ``"user_factors"``), ``scores`` ``(num_items,)``
    float32 logits, ``losses`` ``(steps,)`` L_u before each step (iALS: ``(1,)``, at the
    solution) and the ``optimizer`` (``"adam"`` or ``"closed form"``)."""

    items: np.ndarray
    rows: dict
    scores: np.ndarray
    losses: np.ndarray
    optimizer: str

    def top_k(self, k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(items (k,) int64, scores (k,) float32)``: the ``k`` best, as
        :func:`~ncf_tf.serve.recommend.rank_items`; own items out if ``exclude_seen``."""
        num_items = len(self.scores)
        check_k(k, num_items, FoldInError, "")
        excluded = np.zeros((1, num_items), bool)
        if exclude_seen:
            excluded[0, self.items] = True
        items, values = rank_items(self.scores[None], excluded, k)
        return np.asarray(items[0], np.int64), np.asarray(values[0], np.float32)

    def table(self, k: int, exclude_seen: bool, item_map: IdMap) -> pd.DataFrame:
        """:meth:`top_k` as a DataFrame ``rank, item, score`` (the raw ids of ``item_map``)."""
        items, scores = self.top_k(k, exclude_seen)
        real = items >= 0
        return pd.DataFrame({"rank": np.arange(1, real.sum() + 1),
                             "item": item_map.to_original(items[real]),
                             "score": scores[real].astype(np.float64).round(6)})


@dataclasses.dataclass(frozen=True)
class FoldInBatch:
    """Several new users folded in at once, each independently: :class:`FoldIn`'s
    attributes with a user axis (``losses``: ``(steps, n)``; ``items``: a list)."""

    items: list
    rows: dict
    scores: np.ndarray
    losses: np.ndarray
    optimizer: str

    def user(self, j: int) -> FoldIn:
        """The ``j``-th user's :class:`FoldIn`."""
        return FoldIn(self.items[j], {name: r[j] for name, r in self.rows.items()},
                      self.scores[j], self.losses[:, j], self.optimizer)


def fold_in(model, items, num_items: int, rng: np.random.Generator | None = None, *,
            steps: int = DEFAULT_STEPS, num_neg: int = DEFAULT_NUM_NEG, lr: float = DEFAULT_LR,
            reg: float = 0.0, init_std: float = 0.01) -> FoldIn:
    """Fits a new user's rows from their items; everything else frozen.

    Args:
        model: a trained GMF, MLP or NeuMF ``keras.Model``, or a fitted
            :class:`~ncf_tf.baselines.ials.IALS`.
        items: the new user's 0-based item ids (a repeated one counts once).
        num_items: the model's catalogue size (checked against the model).
        rng: the initial rows and the negatives (required but by iALS).
        steps, num_neg, lr: Adam steps, negatives per item per step, learning rate.
        reg: L2 weight on the new rows (0: the loss the models were trained on).
        init_std: standard deviation of the initial rows.

    Raises:
        FoldInError: no items, an item out of range, every item given, a
            setting out of range, or a model not GMF, MLP, NeuMF or iALS.
    """
    return fold_in_users(model, [items], num_items, rng, steps=steps, num_neg=num_neg, lr=lr,
                         reg=reg, init_std=init_std).user(0)


def fold_in_users(model, item_lists: Sequence, num_items: int,
                  rng: np.random.Generator | None = None, *, steps: int = DEFAULT_STEPS,
                  num_neg: int = DEFAULT_NUM_NEG, lr: float = DEFAULT_LR, reg: float = 0.0,
                  init_std: float = 0.01) -> FoldInBatch:
    """:func:`fold_in` for ``n`` new users at once, one list of items each."""
    for name, value in (("steps", steps), ("num_neg", num_neg)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise FoldInError(f"{name} must be a positive integer, got {value!r}")
    for name, value, sign in (("lr", lr, "positive"), ("reg", reg, "non-negative"),
                              ("init_std", init_std, "non-negative")):
        if not (isinstance(value, (int, float, np.floating)) and np.isfinite(value)
                and (value > 0 if sign == "positive" else value >= 0)):
            raise FoldInError(f"{name} must be a {sign} number, got {value!r}")
    lists = [_check_items(items, num_items, j, len(item_lists)) for j, items in
             enumerate(item_lists)]
    if not lists:
        raise FoldInError("no users to fold in")
    if isinstance(model, IALS):
        return _fold_in_ials(model, lists, num_items)
    return _fold_in_keras(model, lists, num_items, rng, steps, num_neg, lr, reg, init_std)


def read_items(path: str, name: str = "path") -> list[str]:
    """The item ids, as written, of a new user's file (separated by whitespace or
    commas, ``#`` comments ignored); FoldInError, calling ``path`` ``name``, when
    unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise FoldInError(f"{name} {path}: cannot read it ({e.__class__.__name__}: "
                          f"{getattr(e, 'strerror', None) or e})") from None
    ids = [token for line in text.splitlines()
           for token in line.split("#", 1)[0].replace(",", " ").split()]
    if not ids:
        raise FoldInError(f"{name} {path}: lists no item id (expected the new user's "
                          "item ids, separated by whitespace or commas)")
    return ids


def _check_items(items, num_items: int, j: int, n: int) -> np.ndarray:
    who = "the new user" if n == 1 else f"new user {j}"
    try:
        values = np.asarray(list(items) if not isinstance(items, np.ndarray) else items)
    except TypeError:
        raise FoldInError(f"items of {who}: expected a list of item ids, got "
                          f"{type(items).__name__}") from None
    values = values.reshape(-1)
    if len(values) == 0:
        raise FoldInError(f"{who} has no items to fold in from")
    if not (np.issubdtype(values.dtype, np.integer) or (
            np.issubdtype(values.dtype, np.floating) and np.all(values == np.round(values)))):
        raise FoldInError(f"items of {who}: expected integer item ids, got {values[:3].tolist()}")
    bad = (values < 0) | (values >= num_items)
    if bad.any():
        raise FoldInError(f"item {values[bad][0].item()!r} of {who} is not in 0..{num_items - 1}")
    unique = np.unique(values.astype(np.int64))
    if len(unique) >= num_items:
        raise FoldInError(f"{who} has every one of the {num_items} items: no negative to "
                          "contrast them with")
    return unique


def _with_new_users(model: keras.Model, rows: dict, reg: float) -> keras.Model:
    """A copy of ``model`` with ``rows`` (layer name -> ``(n, d)``) as its user tables."""
    def clone(layer):
        if layer.name in rows:
            return keras.layers.Embedding(
                len(rows[layer.name]), layer.output_dim, name=layer.name,
                dtype=layer.dtype_policy,
                embeddings_regularizer=keras.regularizers.L2(reg) if reg else None)
        if isinstance(layer, keras.layers.Dropout):
            return keras.layers.Identity(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in copy.layers:
        if layer.name in rows:
            layer.set_weights([rows[layer.name]])
        elif layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
            layer.trainable = False
    return copy


def _fold_in_keras(model: keras.Model, lists: list, num_items: int, rng: np.random.Generator,
                   steps: int, num_neg: int, lr: float, reg: float,
                   init_std: float) -> FoldInBatch:
    kind = trained.model_kind(model) if isinstance(model, keras.Model) else None
    if kind is None:
        raise FoldInError(f"cannot fold a user into {type(model).__name__}: expected a "
                          "GMF, MLP or NeuMF keras.Model or a fitted IALS")
    items = model.get_layer(trained.EMBEDDINGS[kind][1]).input_dim
    if items != num_items:
        raise FoldInError(f"num_items is {num_items}, but the {kind} model has {items} items")
    if rng is None:
        raise FoldInError(f"rng (a numpy Generator) is required to fold a user into {kind}: "
                          "it draws the initial rows and the negatives")
    n = len(lists)
    names = USER_TABLES[kind]
    rows = {name: rng.normal(0.0, init_std, (n, model.get_layer(name).output_dim)).astype(
        np.float32) for name in names}
    sizes = np.array([len(row) for row in lists])
    positives = sp.csr_matrix((np.ones(sizes.sum(), np.float32), np.concatenate(lists),
                               np.concatenate([[0], np.cumsum(sizes)])), shape=(n, num_items))
    try:
        sampler = NegativeSampler(positives, num_neg)
    except ValueError as e:
        raise FoldInError(str(e)) from None
    folding = _with_new_users(model, rows, reg)
    training.compile_model(folding, make_optimizer("adam", lr), steps_per_execution=1)
    score_fn = training.make_score_fn(folding)
    # Each user's loss is a mean over its own instances; Keras divides the
    # weighted sum by the batch size N, so weight N / |T_u|.
    share = 1.0 / ((1 + num_neg) * sizes[sampler.pos_users])
    share = np.tile(share, 1 + num_neg)   # sample(): the positives, then num_neg rounds
    losses = np.empty((steps, n))
    for step in range(steps):
        batch = sampler.sample(rng)
        s = score_fn(batch.users, batch.items).astype(np.float64)
        # log(1 + e^s) - y s: the log loss of sigmoid(s), without overflow.
        losses[step] = np.bincount(batch.users, share * (np.logaddexp(0.0, s) - batch.labels * s),
                                   minlength=n)
        if reg:
            losses[step] += reg * sum(np.sum(_rows(folding, name) ** 2, axis=1) for name in names)
        folding.train_on_batch([batch.users[:, None], batch.items[:, None]],
                               batch.labels[:, None], sample_weight=len(batch) * share)
    rows = {name: _rows(folding, name) for name in names}
    size = max(1, MAX_FLOATS // (num_items * max(width(folding), rows[names[0]].shape[1])))
    scores = np.concatenate([np.asarray(all_item_logits(folding, np.arange(lo, min(n, lo + size))),
                                        np.float32) for lo in range(0, n, size)])
    return FoldInBatch(lists, rows, scores, losses, "adam")


def _rows(model: keras.Model, name: str) -> np.ndarray:
    return model.get_layer(name).get_weights()[0]


def _fold_in_ials(model: IALS, lists: list, num_items: int) -> FoldInBatch:
    if model.item_factors is None:
        raise FoldInError("the IALS model is not fitted")
    y = np.asarray(model.item_factors, np.float64)
    if y.shape[0] != num_items:
        raise FoldInError(f"num_items is {num_items}, but the IALS model has {y.shape[0]} items")
    gram = y.T @ y
    alpha, k = model.alpha, y.shape[1]
    # reg_u = reg (w_u / mean w)^nu with w_u = |items| + alpha |R_u|; the mean
    # is over the users the model was fitted on.
    train = getattr(model, "_train", None)
    if model.reg_exponent and train is None:
        raise FoldInError("this IALS scales reg by the row weight (reg_exponent > 0) but does "
                          "not hold its training matrix")
    mean_weight = (num_items + alpha * train.nnz / train.shape[0]) if train is not None else 1.0
    x = np.empty((len(lists), k))
    losses = np.empty((1, len(lists)))
    for j, items in enumerate(lists):
        observed = y[items]
        weight = num_items + alpha * len(items)
        reg = model.reg * (weight / mean_weight) ** model.reg_exponent
        a = gram + alpha * observed.T @ observed + reg * np.eye(k)
        x[j] = np.linalg.solve(a, (1.0 + alpha) * observed.sum(axis=0))
        s = observed @ x[j]
        # sum over all items of (p - x.y)^2 c, with the observed cells replaced.
        losses[0, j] = (x[j] @ gram @ x[j] + np.sum((1.0 + alpha) * (1.0 - s) ** 2 - s ** 2)
                        + reg * x[j] @ x[j])
    return FoldInBatch(lists, {"user_factors": x}, (x @ y.T).astype(np.float32), losses,
                       "closed form")
