"""Fold-in: a new user's embedding rows fitted from their items, everything else frozen.

Beyond the paper (the authors' code has no fold-in). A user who was not in
the training data has no embedding row. Fold-in fits one for them from the
items they have interacted with, R_u, keeping every trained variable (item
embeddings, MLP tower, prediction layer, and every other user) as it is.

GMF, MLP and NeuMF (:func:`fold_in_users` with a Keras model). The new
user's rows (``user_embedding`` of GMF or MLP; ``mf_embedding_user`` and
``mlp_embedding_user`` of NeuMF) start as N(0, init_std^2) draws, like the
model's own embeddings, and take ``steps`` full-batch Adam steps (Keras 1's
constants: beta 0.9 / 0.999, epsilon 1e-8) on the log loss of equation 7
restricted to the user,

    L_u = (1 / |T_u|) sum_{(i, y) in T_u} [log(1 + exp(s_ui)) - y s_ui]  + reg |rows_u|^2

with s_ui the model's logit (:mod:`ncf_tf.models.scoring`) and T_u each item
of R_u with label 1 plus ``num_neg`` negatives per item with label 0, drawn
uniformly from the items not in R_u and fresh at every step (the training
sampler's rule). The loss of several users is the sum of their L_u, so each
user's rows move exactly as if they were folded in alone (with their own
draws). The gradient is back-propagated by hand through the factored logit:

    GMF:   d s / d p_u   = h_GMF * q_i
    MLP:   d s / d p^M_u = W_u (d s / d z_1),   z_1 = W_u^T p^M_u + W_i^T q^M_i + b_1

through the ReLU tower (MLP-0: ``h_u``). The frozen parts are read from the
model's variables as NumPy and the model itself is never modified.

iALS (:class:`ncf_tf.baselines.ials.IALS`) has a closed form: the user half
of an ALS sweep with the item factors Y fixed,

    x_u = (Y^T Y + alpha sum_{i in R_u} y_i y_i^T + reg_u I)^{-1} (1 + alpha) sum_{i in R_u} y_i

which is the exact minimiser of the iALS objective over x_u (``rng``,
``steps``, ``num_neg`` and ``lr`` do not apply).

Scores are the logits of every item for the new user (iALS: x_u . y_i);
:meth:`FoldIn.top_k` ranks them with the user's items excluded, ties to the
lower item id as :func:`ncf_tf.serve.recommend.top_k` does.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ncf_tf.baselines.ials import IALS

# Chosen on validation items, not test items: 600 ml-1m users held out of a
# NeuMF-8 trained without them, folded in from their training items less the
# latest one, which was ranked against 99 negatives (ncf_tf.data.validation);
# 200 steps at 0.01 were as good as 100 at 0.03 or 400 at 0.01 (within
# 0.01 HR@10) and better than 50 steps or lr 0.003.
DEFAULT_STEPS = 200
DEFAULT_LR = 0.01
DEFAULT_NUM_NEG = 4

ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-8

# Bound on the floats of one chunk's intermediates when every item is scored.
_SCORE_FLOATS = 1 << 22


class FoldInError(ValueError):
    """Bad input to fold-in: no items, an item out of range, a bad setting."""


@dataclasses.dataclass(frozen=True)
class FoldIn:
    """One new user, folded in.

    Attributes:
        items: ``(m,)`` sorted distinct 0-based items the user was folded in from.
        rows: layer name -> ``(d,)`` fitted embedding row (``"user_embedding"``
            for GMF and MLP; ``"mf_embedding_user"`` and ``"mlp_embedding_user"``
            for NeuMF; ``"user_factors"`` for iALS).
        scores: ``(num_items,)`` float32 logit of every item (iALS: x_u . y_i).
        losses: ``(steps,)`` the user's L_u before each step (iALS: ``(1,)``, the
            user's part of the iALS objective at the solution).
        optimizer: how the rows were fitted (``"adam"`` or ``"closed form"``).
    """

    items: np.ndarray
    rows: dict
    scores: np.ndarray
    losses: np.ndarray
    optimizer: str

    def top_k(self, k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items, best first: ``(items (k,) int64, scores (k,) float32)``.

        The user's own items are left out unless ``exclude_seen`` is False;
        ties go to the lower item id; past the items left, -1 and -inf.
        """
        num_items = len(self.scores)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num_items:
            raise FoldInError(f"k must be an integer in 1..{num_items}, got {k!r}")
        scores = np.where(np.isnan(self.scores), -np.inf, self.scores).astype(np.float32)
        allowed = np.ones(num_items, bool)
        if exclude_seen:
            allowed[self.items] = False
        candidates = np.flatnonzero(allowed)
        # lexsort: the last key is primary (score, descending), then the id.
        order = candidates[np.lexsort((candidates, -scores[candidates]))][:k]
        items = np.full(k, -1, np.int64)
        values = np.full(k, -np.inf, np.float32)
        items[:len(order)], values[:len(order)] = order, scores[order]
        return items, values


@dataclasses.dataclass(frozen=True)
class FoldInBatch:
    """Several new users folded in at once (each independently of the others).

    Attributes:
        items: per user, the ``(m_u,)`` sorted distinct items.
        rows: layer name -> ``(n, d)`` fitted rows.
        scores: ``(n, num_items)`` float32 logits.
        losses: ``(steps, n)`` each user's L_u before each step (iALS: ``(1, n)``).
        optimizer: ``"adam"`` or ``"closed form"``.
    """

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
        items: the new user's 0-based item ids (any iterable of ints; a
            repeated item counts once).
        num_items: the model's catalogue size (checked against the model).
        rng: the initial rows and the negatives (not used by iALS; required
            otherwise).
        steps: Adam steps (each with fresh negatives).
        num_neg: negatives per item, per step.
        lr: Adam's learning rate.
        reg: L2 weight on the new rows (0: the loss the models were trained on).
        init_std: standard deviation of the initial rows.

    Returns:
        :class:`FoldIn`.

    Raises:
        FoldInError: no items, an item outside ``0..num_items - 1``, every item
            given (no negative left), a setting out of range, or a model that is
            not GMF, MLP, NeuMF or iALS.
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
    for name, value, low in (("lr", lr, 0.0), ("reg", reg, None), ("init_std", init_std, None)):
        if not (isinstance(value, (int, float, np.floating)) and np.isfinite(value)
                and (value > low if low is not None else value >= 0)):
            raise FoldInError(f"{name} must be a {'positive' if low is not None else 'non-negative'}"
                              f" number, got {value!r}")
    lists = [_check_items(items, num_items, j, len(item_lists)) for j, items in
             enumerate(item_lists)]
    if not lists:
        raise FoldInError("no users to fold in")
    if isinstance(model, IALS):
        return _fold_in_ials(model, lists, num_items)
    frozen = _Frozen.of(model, num_items)
    if rng is None:
        raise FoldInError("rng (a numpy Generator) is required to fold a user into "
                          f"{frozen.kind}: it draws the initial rows and the negatives")
    return _fold_in_gradient(frozen, lists, num_items, rng, steps, num_neg, lr, reg, init_std)


def read_items(path: str) -> list[str]:
    """The item ids a new user's file lists: separated by whitespace or commas,
    any number a line; blank lines and text after ``#`` are ignored. Ids are
    returned as written (raw ids when the data has id maps).

    Raises:
        FoldInError: the file cannot be read, or lists no id.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise FoldInError(f"--fold_in {path}: cannot read it ({e.__class__.__name__}: "
                          f"{getattr(e, 'strerror', None) or e})") from None
    ids = [token for line in text.splitlines()
           for token in line.split("#", 1)[0].replace(",", " ").split()]
    if not ids:
        raise FoldInError(f"--fold_in {path}: lists no item id (expected the new user's "
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


# ----------------------------------------------------------------------------
# GMF, MLP, NeuMF


@dataclasses.dataclass
class _Frozen:
    """The trained, frozen parts of a GMF, MLP or NeuMF logit, as float32 NumPy
    (the models' precision; the new rows and Adam's moments are float64).

    ``s(u, i) = bias + (p_u * gmf_h) . gmf_item[i] + mlp(u, i)`` where, with a
    tower, ``mlp(u, i) = h^T relu(... relu(p^M_u W_u + mlp_item[i]) ...)`` and
    ``mlp_item[i] = q^M_i W_i + b_1``; MLP-0 has ``mlp(u, i) = p^M_u . h_u +
    mlp_item[i]`` with ``mlp_item[i] = q^M_i . h_i`` (``mlp_user_kernel`` = h_u).
    """

    kind: str
    bias: float
    gmf_name: str | None = None
    gmf_h: np.ndarray | None = None          # (F,)
    gmf_item: np.ndarray | None = None       # (I, F)
    mlp_name: str | None = None
    mlp_user_kernel: np.ndarray | None = None   # (d, n1) W_u; MLP-0: (d,) h_u
    mlp_item: np.ndarray | None = None       # (I, n1); MLP-0: (I,)
    rest: tuple = ()                          # (kernel, bias) of layer2, layer3, ...
    h: np.ndarray | None = None              # (n_last,) the prediction kernel's tower part
    dtype: type = np.float32

    @classmethod
    def of(cls, model, num_items: int, dtype=np.float32) -> "_Frozen":
        from ncf_tf.models import scoring, trained
        kind = trained.model_kind(model) if hasattr(model, "layers") else None
        if kind is None:
            raise FoldInError(f"cannot fold a user into {type(model).__name__}: expected a "
                              "GMF, MLP or NeuMF keras.Model or a fitted IALS")

        def weights(name):
            return [np.asarray(w, dtype) for w in model.get_layer(name).get_weights()]

        kernel, bias = weights("prediction")
        h = kernel[:, 0]
        frozen = cls(kind, float(bias[0]), dtype=dtype)
        if kind in ("GMF", "NeuMF"):
            user_name, item_name = trained.EMBEDDINGS[kind]
            (q,) = weights(item_name)
            factors = q.shape[1]
            frozen.gmf_name, frozen.gmf_h, frozen.gmf_item = user_name, h[:factors], q
            h = h[factors:]
        if kind in ("MLP", "NeuMF"):
            user_name, item_name = (("user_embedding", "item_embedding") if kind == "MLP"
                                    else ("mlp_embedding_user", "mlp_embedding_item"))
            (q,) = weights(item_name)
            half = q.shape[1]
            layers = scoring.tower(model)
            frozen.mlp_name = user_name
            if not layers:   # MLP-0: the prediction layer reads [p ; q] directly
                frozen.mlp_user_kernel, frozen.mlp_item = h[:half], q @ h[half:]
            else:
                for layer in layers:
                    name = getattr(layer.activation, "__name__", "")
                    if name != "relu":
                        raise FoldInError(f"fold-in back-propagates through ReLU towers only; "
                                          f"{layer.name} has activation {name or layer.activation!r}")
                w1, b1 = weights(layers[0].name)
                frozen.mlp_user_kernel, frozen.mlp_item = w1[:half], q @ w1[half:] + b1
                frozen.rest = tuple(tuple(weights(layer.name)) for layer in layers[1:])
                frozen.h = h
        items = (frozen.gmf_item if frozen.gmf_item is not None else frozen.mlp_item).shape[0]
        if items != num_items:
            raise FoldInError(f"num_items is {num_items}, but the {kind} model has {items} items")
        return frozen

    def row_dims(self) -> dict:
        dims = {}
        if self.gmf_name is not None:
            dims[self.gmf_name] = self.gmf_item.shape[1]
        if self.mlp_name is not None:
            dims[self.mlp_name] = self.mlp_user_kernel.shape[0]
        return dims

    def logits(self, rows: dict, owner: np.ndarray, items: np.ndarray, grad: bool = False):
        """Logits of the pairs ``(owner[n], items[n])`` (``owner`` indexes the rows);
        with ``grad``, also ``backward(d) -> {name: (N, d)}``, the gradient of
        ``sum_n d[n] s_n`` with respect to each pair's user row."""
        rows = {name: r.astype(self.dtype) for name, r in rows.items()}
        s = np.full(len(items), self.bias, self.dtype)
        if self.gmf_name is not None:
            contrib = self.gmf_h * self.gmf_item[items]                 # (N, F)
            s += np.einsum("nf,nf->n", rows[self.gmf_name][owner], contrib)
        pres = []
        if self.mlp_name is not None:
            p = rows[self.mlp_name][owner]
            if self.h is None:   # MLP-0
                s += p @ self.mlp_user_kernel + self.mlp_item[items]
            else:
                pre = p @ self.mlp_user_kernel + self.mlp_item[items]   # (N, n1)
                pres.append(pre)
                x = np.maximum(pre, 0.0)
                for kernel, bias in self.rest:
                    pre = x @ kernel + bias
                    pres.append(pre)
                    x = np.maximum(pre, 0.0)
                s += x @ self.h
        if not grad:
            return s

        def backward(d: np.ndarray) -> dict:
            d = d.astype(self.dtype)
            out = {}
            if self.gmf_name is not None:
                out[self.gmf_name] = d[:, None] * contrib
            if self.mlp_name is not None:
                if self.h is None:
                    out[self.mlp_name] = d[:, None] * self.mlp_user_kernel[None, :]
                else:
                    g = d[:, None] * self.h[None, :]                    # d/d x_last
                    for (kernel, _), pre in zip(reversed(self.rest), reversed(pres[1:])):
                        g = (g * (pre > 0)) @ kernel.T
                    out[self.mlp_name] = (g * (pres[0] > 0)) @ self.mlp_user_kernel.T
            return out

        return s, backward

    def all_items(self, rows: dict, n: int) -> np.ndarray:
        """``(n, I)`` float32 logits of every item for each of the ``n`` rows."""
        num_items = (self.gmf_item if self.gmf_item is not None else self.mlp_item).shape[0]
        width = max(self.mlp_user_kernel.shape[-1] if self.h is not None else 1,
                    self.gmf_item.shape[1] if self.gmf_item is not None else 1)
        size = max(1, _SCORE_FLOATS // (num_items * width))
        out = np.empty((n, num_items), np.float32)
        every = np.arange(num_items)
        for lo in range(0, n, size):
            chunk = np.arange(lo, min(n, lo + size))
            owner = np.repeat(chunk, num_items)
            out[chunk] = self.logits(rows, owner, np.tile(every, len(chunk))).reshape(
                len(chunk), num_items)
        return out


class _Negatives:
    """Uniform draws of items not in each new user's list (the sampler's rule)."""

    def __init__(self, lists: list, num_items: int):
        self.num_items = num_items
        self.sizes = np.array([len(items) for items in lists])
        self.keys = np.concatenate([j * num_items + items for j, items in enumerate(lists)])

    def is_positive(self, owner: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = owner * self.num_items + items
        found = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return self.keys[found] == keys

    def draw(self, owner: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        items = rng.integers(0, self.num_items, len(owner))
        redraw = np.flatnonzero(self.is_positive(owner, items))
        while len(redraw):
            items[redraw] = rng.integers(0, self.num_items, len(redraw))
            redraw = redraw[self.is_positive(owner[redraw], items[redraw])]
        return items


def _fold_in_gradient(frozen: _Frozen, lists: list, num_items: int, rng: np.random.Generator,
                      steps: int, num_neg: int, lr: float, reg: float,
                      init_std: float) -> FoldInBatch:
    n = len(lists)
    dims = frozen.row_dims()
    rows = {name: rng.normal(0.0, init_std, (n, d)) for name, d in dims.items()}
    moments = {name: (np.zeros_like(r), np.zeros_like(r)) for name, r in rows.items()}
    sampler = _Negatives(lists, num_items)
    pos_owner = np.repeat(np.arange(n), sampler.sizes)
    pos_items = np.concatenate(lists)
    neg_owner = np.tile(pos_owner, num_neg)
    owner = np.concatenate([pos_owner, neg_owner])
    labels = np.concatenate([np.ones(len(pos_owner)), np.zeros(len(neg_owner))])
    # Each user's loss is a mean over its own instances: weight 1 / |T_u|.
    weight = 1.0 / ((1 + num_neg) * sampler.sizes[owner])
    # (n, N): row j sums the instances of user j (the same layout every step).
    summed = sp.csr_matrix((np.ones(len(owner), np.float32), (owner, np.arange(len(owner)))),
                           shape=(n, len(owner)))
    losses = np.empty((steps, n))
    for step in range(steps):
        items = np.concatenate([pos_items, sampler.draw(neg_owner, rng)])
        s, backward = frozen.logits(rows, owner, items, grad=True)
        s = s.astype(np.float64)
        # log(1 + e^s) - y s: the log loss of sigmoid(s), without overflow.
        per_instance = np.logaddexp(0.0, s) - labels * s
        losses[step] = np.bincount(owner, weight * per_instance, minlength=n)
        d = weight * (_sigmoid(s) - labels)
        t = step + 1
        # Keras 1's Adam: lr_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t).
        lr_t = lr * np.sqrt(1.0 - ADAM_BETA_2 ** t) / (1.0 - ADAM_BETA_1 ** t)
        for name, per_pair in backward(d).items():
            grad = np.asarray(summed @ per_pair, np.float64)
            if reg:
                losses[step] += reg * np.sum(rows[name] ** 2, axis=1)
                grad += 2.0 * reg * rows[name]
            m, v = moments[name]
            m *= ADAM_BETA_1
            m += (1.0 - ADAM_BETA_1) * grad
            v *= ADAM_BETA_2
            v += (1.0 - ADAM_BETA_2) * grad ** 2
            rows[name] -= lr_t * m / (np.sqrt(v) + ADAM_EPSILON)
    return FoldInBatch(lists, rows, frozen.all_items(rows, n), losses, "adam")


def _sigmoid(s: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * s))


# ----------------------------------------------------------------------------
# iALS


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
