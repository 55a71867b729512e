"""Logits of GMF, MLP and NeuMF computed from their variables, factored.

The logit is the output of the ``prediction`` layer before the sigmoid,

    s(u, i) = h^T phi(u, i) + b,        y_ui = sigmoid(s(u, i)),

and it ranks exactly as the probability does, without float32 saturation
ties near 1. Instead of running the model on each (user, item) pair, the
parts that depend on the user alone or on the item alone are computed once
per user and once per item:

* GMF (equation 9): ``h^T (p_u * q_i) = (p_u * h)^T q_i``.
* MLP (equation 10): the first tower layer acts on ``[p_u ; q_i]``, so
  ``W_1^T [p_u ; q_i] + b_1 = W_u^T p_u + (W_i^T q_i + b_1)``: a table of
  user halves, a table of item halves, and only the layers after the first
  run per pair. MLP-0 (no tower) is separable entirely:
  ``h^T [p_u ; q_i] = h_u^T p_u + h_i^T q_i``.
* NeuMF (equation 12): the sum of both parts' contributions to the logit.

The first layer dominates the cost of a tower [8F, 4F, 2F, F]. The
arithmetic is the model's in another order: logits agree to float32
rounding, so a held-out item and a negative within rounding may swap places.

:func:`all_item_logits` scores users against the whole catalogue (top-K);
:class:`PairScorer` scores flat (user, item) pairs (leave-one-out), both
with ``keras.ops`` on any backend. A mixed-precision model is scored at float32.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from ncf_tf.models import layers as L
from ncf_tf.models import trained
from ncf_tf.models.trained import tower

_HINT = "; score it pair by pair with a score_fn"   # for any other model

MAX_FLOATS = 1 << 22
"""Largest intermediate of one chunk of :func:`all_item_logits` calls, in floats."""

PAIR_CHUNK_FLOATS = 1 << 20
"""Largest intermediate of one chunk of :class:`PairScorer`, in floats (in cache)."""


def width(model: keras.Model) -> int:
    """Floats per (user, item) pair in a tower's intermediates: the largest
    tower layer (1 without a tower)."""
    return max([layer.units for layer in tower(model)] + [1])


@dataclasses.dataclass(frozen=True)
class Factored:
    """A model's logit as per-user and per-item tables (module docstring):
    ``s(u, i) = bias + sum(gmf_user[u] * gmf_item[i]) + mlp(u, i)``, each part
    only where the model has it; ``mlp(u, i) = h^T t(act_1(mlp_user[u] +
    mlp_item[i]))`` with ``t`` the layers after the first, or for MLP-0
    ``mlp_user[u, 0] + mlp_item[i, 0]``. :meth:`tensors` are the backend
    tensors, a structure compiled functions take as an argument.
    """

    bias: object                # (1,) the prediction layer's bias
    gmf_user: object = None     # (users, F) p_u * h_GMF
    gmf_item: object = None     # (items, F) q_i
    mlp_user: object = None     # (users, n1) W_u^T p_u; MLP-0: (users, 1) h_u^T p_u
    mlp_item: object = None     # (items, n1) W_i^T q_i + b_1; MLP-0: (items, 1) h_i^T q_i
    rest: tuple = ()            # (kernel, bias) of layer2, layer3, ...
    h: object = None            # (n_last, 1) the prediction kernel's tower part
    activations: tuple = ()     # of layer1, layer2, ...; empty: no tower (MLP-0)

    def tensors(self) -> dict:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name != "activations"}

    def logits(self, u=None, i=None):
        """The logits of the pairs ``(u[n], i[n])`` (rows of the user and item
        tables), or with neither given, of every user row against every item."""
        ops = keras.ops

        def rows(table, index, axis):
            return ops.expand_dims(table, axis) if u is None else ops.take(table, index, axis=0)

        logits = self.bias
        if self.gmf_user is not None:
            logits = logits + (ops.matmul(self.gmf_user, ops.transpose(self.gmf_item)) if u is None
                               else ops.sum(rows(self.gmf_user, u, 1)
                                            * rows(self.gmf_item, i, 0), axis=-1))
        if self.mlp_user is None:
            return logits
        user, item = rows(self.mlp_user, u, 1), rows(self.mlp_item, i, 0)
        if not self.activations:   # MLP-0
            return logits + user[..., 0] + item[..., 0]
        x = self.activations[0](user + item)   # layer1
        for (kernel, bias), activation in zip(self.rest, self.activations[1:]):
            x = activation(ops.matmul(x, kernel) + bias)
        return logits + ops.squeeze(ops.matmul(x, self.h), -1)


def factored(model: keras.Model, users=None) -> Factored:
    """The :class:`Factored` tables of a GMF, MLP or NeuMF, with the user
    tables' rows of ``users`` (None: every user)."""
    ops = keras.ops
    kind = trained.checked_kind(model, _HINT)

    def user_rows(layer_name):
        table = model.get_layer(layer_name).embeddings
        return ops.convert_to_tensor(table) if users is None else ops.take(
            table, ops.cast(users, "int32"), axis=0)

    output = model.get_layer(L.PREDICTION)
    h = ops.convert_to_tensor(output.kernel)                      # (d, 1)
    parts = {"bias": ops.convert_to_tensor(output.bias)}          # (1,)
    if kind in ("GMF", "NeuMF"):
        user_name, item_name = trained.EMBEDDINGS[kind]
        p = user_rows(user_name)                                  # (b, F)
        factors = p.shape[-1]
        parts["gmf_user"] = p * ops.reshape(h[:factors], (1, factors))
        parts["gmf_item"] = ops.convert_to_tensor(model.get_layer(item_name).embeddings)
        h = h[factors:]   # NeuMF: the rest of h weighs the MLP part
    if kind in ("MLP", "NeuMF"):
        user_name, item_name = trained.MLP_EMBEDDINGS[kind]
        p = user_rows(user_name)                                  # (b, d/2)
        q = ops.convert_to_tensor(model.get_layer(item_name).embeddings)   # (I, d/2)
        half = p.shape[-1]
        layers = tower(model)
        if not layers:   # MLP-0
            parts.update(mlp_user=ops.matmul(p, h[:half]), mlp_item=ops.matmul(q, h[half:]))
        else:
            kernel = ops.convert_to_tensor(layers[0].kernel)
            parts.update(
                mlp_user=ops.matmul(p, kernel[:half]),                   # (b, n1)
                mlp_item=ops.matmul(q, kernel[half:]) + layers[0].bias,  # (I, n1)
                rest=tuple((ops.convert_to_tensor(layer.kernel), ops.convert_to_tensor(layer.bias))
                           for layer in layers[1:]),
                h=h, activations=tuple(layer.activation for layer in layers))
    return Factored(**parts)


def all_item_logits(model: keras.Model, users) -> "keras.KerasTensor":
    """The ``(b, num_items)`` float32 logits of GMF, MLP or NeuMF for ``(b,)``
    int ``users``, with ``keras.ops`` (any backend, also inside a traced function)."""
    return factored(model, users).logits()


def compiled(fn, xla: bool):
    """``fn`` as a TensorFlow graph function (XLA if ``xla``), ``jax.jit``, or as is."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        return tf.function(fn, jit_compile=xla, reduce_retracing=False)
    if backend == "jax":
        import jax
        return jax.jit(fn)
    return fn


class PairScorer:
    """``score_fn(users, items)`` of a GMF, MLP or NeuMF: the float32 logits of
    the pairs ``(users[n], items[n])``.

    Each call computes :func:`factored` from the current weights, then maps
    the per-pair part over chunks of one size (the last padded; at most
    ``max_floats`` floats of intermediates) in one compiled call.
    """

    def __init__(self, model: keras.Model, max_floats: int = PAIR_CHUNK_FLOATS):
        kind = trained.checked_kind(model, _HINT)
        gmf_factors = (model.get_layer(trained.EMBEDDINGS[kind][0]).output_dim
                       if kind != "MLP" else 0)
        self.model = model
        self.size = max(1, max_floats // max(width(model), gmf_factors))
        self.activations = tuple(layer.activation for layer in tower(model))
        # Without XLA on TensorFlow: its CPU matrix products were slower here.
        self._chunks = compiled(self._chunks_logits, xla=False)

    def _chunks_logits(self, tensors: dict, u, i):
        """``(chunks, size)`` logits of ``(chunks, size)`` users and items."""
        f = Factored(**tensors, activations=self.activations)
        return keras.ops.map(lambda ui: f.logits(*ui), (u, i))

    def __call__(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        n = len(users)
        if n == 0:
            return np.zeros(0, np.float32)
        # fewer pairs than a chunk: a power of two, so that few sizes compile
        size = min(self.size, 1 << (n - 1).bit_length())
        padded = -(-n // size) * size
        u, i = np.zeros(padded, np.int32), np.zeros(padded, np.int32)
        u[:n], i[:n] = np.asarray(users).reshape(-1), np.asarray(items).reshape(-1)
        logits = self._chunks(factored(self.model).tensors(),
                              u.reshape(-1, size), i.reshape(-1, size))
        return np.asarray(logits, np.float32).reshape(-1)[:n]
