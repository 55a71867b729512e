"""Export a trained GMF, MLP or NeuMF for use without ncf_tf (``bin/export``).

The export is one folder: ``model.keras`` (0-based rows in, the probability
out); ``saved_model/``, whose ``score`` and ``top_k`` signatures take the RAW
ids (an unknown id fails the call), ``top_k`` ranking as ``bin/recommend``
does, training items baked in; and ``config.json``, which describes them. It
is assembled beside ``dest`` and renamed into place: an interrupted export
leaves nothing under its name.
"""

from __future__ import annotations

import os
import shutil

import keras
import numpy as np
import scipy.sparse as sp

from ncf_tf.core import files, records
from ncf_tf.models import scoring, trained
from ncf_tf.serve import recommend

KERAS_FILE = "model.keras"
SAVED_MODEL = "saved_model"
CONFIG_FILE = "config.json"
STAGING, OLD = ".export", ".old"   # the hidden folders beside dest while it is written


class ExportError(ValueError):
    """The destination or the options are unusable."""


def check_destination(dest: str, overwrite: bool = False, name: str = "dest") -> None:
    """Refuses an existing ``dest`` unless ``overwrite`` (and then only a folder);
    the message calls it ``name`` (the caller's argument)."""
    if os.path.exists(dest):
        if not os.path.isdir(dest):
            raise ExportError(f"{name} {dest}: exists and is not a folder")
        if not overwrite:
            raise ExportError(f"{name} {dest}: exists; refusing to replace it (overwrite=True)")


def id_kind(ids: np.ndarray, kind: str) -> str:
    """``"int64"`` or ``"string"``: how the SavedModel takes these ids; else ExportError."""
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return "int64"
    if ids.dtype.kind in "OUS" and all(isinstance(v, str) for v in ids.tolist()):
        return "string"
    types = sorted({type(v).__name__ for v in ids.tolist()})
    raise ExportError(f"{kind} ids of type {', '.join(types)} cannot be looked up in a "
                      "SavedModel; use integer or string ids")


class _Lookup:
    """Raw id -> model row, inside the graph: a ``tf.lookup.StaticHashTable``."""

    def __init__(self, ids: np.ndarray, kind: str):
        import tensorflow as tf

        self.kind, self.dtype = kind, id_kind(ids, kind)
        keys = (np.asarray(ids, np.int64) if self.dtype == "int64"
                else np.array([str(v) for v in ids], dtype=object))
        self.originals = tf.constant(keys, tf.int64 if self.dtype == "int64" else tf.string)
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            self.originals, tf.range(len(keys), dtype=tf.int64)), default_value=-1)
        self.padding = tf.constant(-1, tf.int64) if self.dtype == "int64" else tf.constant("")
        self.input_dtypes = [tf.int64, tf.int32] if self.dtype == "int64" else [tf.string]

    def rows(self, ids):
        """int32 rows of raw ``ids``; the call fails naming the unknown ones."""
        import tensorflow as tf

        if ids.dtype != tf.string:
            ids = tf.cast(ids, tf.int64)
        rows = self.table.lookup(ids)
        unknown = rows < 0
        check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(unknown)), [
            f"unknown {self.kind} id(s), not among the model's {self.kind}s:",
            tf.boolean_mask(ids, unknown)], summarize=10)
        with tf.control_dependencies([check]):
            return tf.cast(tf.identity(rows), tf.int32)

    def raw(self, rows):
        """Raw ids of int ``rows``; the padding id where a row is -1."""
        import tensorflow as tf

        found = tf.gather(self.originals, tf.maximum(tf.cast(rows, tf.int64), 0))
        return tf.where(rows >= 0, found, self.padding)


def write_saved_model(model: keras.Model, path: str, exclude: sp.csr_matrix | None, k: int,
                      user_ids: np.ndarray, item_ids: np.ndarray) -> None:
    """Writes the SavedModel with the ``score`` and ``top_k`` signatures on raw ids."""
    import tensorflow as tf

    users, items = _Lookup(user_ids, "user"), _Lookup(item_ids, "item")
    num_items = int(model.get_layer(trained.EMBEDDINGS[trained.model_kind(model)][1]).input_dim)
    logits = trained.logits_model(model)
    if exclude is not None:
        exclude = exclude.tocsr()
        indptr = tf.constant(exclude.indptr.astype(np.int64))
        indices = tf.constant(exclude.indices.astype(np.int64))

    @tf.function
    def score(user, item):
        u, i = users.rows(user), items.rows(item)
        logit = logits([tf.expand_dims(u, 1), tf.expand_dims(i, 1)])[:, 0]
        return {"score": logit, "probability": tf.sigmoid(logit)}

    @tf.function
    def top_k(user):
        user = users.rows(user)
        if exclude is None:
            excluded = tf.zeros([tf.shape(user)[0], num_items], tf.bool)
        else:
            seen = tf.gather(tf.RaggedTensor.from_row_splits(indices, indptr), user)
            where = tf.stack([seen.value_rowids(), seen.flat_values], axis=1)
            excluded = tf.scatter_nd(where, tf.ones_like(seen.flat_values, tf.int32),
                                     tf.cast([tf.shape(user)[0], num_items], tf.int64)) > 0
        best, scores = recommend.rank_items(scoring.all_item_logits(model, user), excluded, k)
        return {"items": items.raw(best), "scores": scores}

    # Traced once per id type; the first trace (int64 for integer ids) is
    # the signature, the others stay callable as loaded.score / loaded.top_k.
    for user_type in users.input_dtypes:
        top_k.get_concrete_function(tf.TensorSpec([None], user_type, name="user"))
        for item_type in items.input_dtypes:
            score.get_concrete_function(tf.TensorSpec([None], user_type, name="user"),
                                        tf.TensorSpec([None], item_type, name="item"))
    archive = keras.export.ExportArchive()
    for tracked in (model, users.table, items.table):
        archive.track(tracked)
    archive.add_endpoint("score", score)
    archive.add_endpoint("top_k", top_k)
    archive.write_out(path, verbose=False)


def export(model: keras.Model, dest: str, *, exclude: sp.csr_matrix | None, k: int = 10,
           user_ids: np.ndarray | None = None, item_ids: np.ndarray | None = None,
           about: dict | None = None, overwrite: bool = False, name: str = "dest") -> dict:
    """Writes the export folder to ``dest``; returns the config written as ``config.json``.

    Args:
        model: a trained GMF, MLP or NeuMF.
        dest: the folder to create.
        exclude: the training matrix whose items ``top_k`` never returns to
            their user, or None.
        k: items returned by ``top_k``, ``1 <= k <= num_items``.
        user_ids, item_ids: the raw id of each model row (integers or
            strings); None: the row numbers.
        about: more fields for ``config.json``.
        overwrite: replace an existing ``dest``.
        name: what the errors call ``dest`` (the caller's argument).

    Raises:
        ExportError: ``dest`` exists (without ``overwrite``), ``k`` out of
            range, ids not one per row or of another type, or not TensorFlow.
    """
    if keras.config.backend() != "tensorflow":
        raise ExportError(f"exporting a SavedModel needs the TensorFlow backend, not "
                          f"{keras.config.backend()} (set KERAS_BACKEND=tensorflow)")
    check_destination(dest, overwrite, name)
    spec = trained.spec_of(model)
    num_users, num_items = (int(model.get_layer(name).input_dim)
                            for name in trained.EMBEDDINGS[spec.model])
    recommend.check_k(k, num_items, ExportError)
    if exclude is not None and exclude.shape != (num_users, num_items):
        raise ExportError(f"the training matrix is {exclude.shape[0]} x {exclude.shape[1]}, "
                          f"the model {num_users} users x {num_items} items")
    user_ids = np.arange(num_users) if user_ids is None else np.asarray(user_ids)
    item_ids = np.arange(num_items) if item_ids is None else np.asarray(item_ids)
    for kind, ids, count in (("user", user_ids, num_users), ("item", item_ids, num_items)):
        if len(ids) != count:
            raise ExportError(f"{len(ids)} {kind} ids for the model's {count} {kind}s")
    types = {"user": id_kind(user_ids, "user"), "item": id_kind(item_ids, "item")}
    integers = "integers (int64; int32 also accepted by the functions)"
    config = {
        **spec.as_dict(), "num_users": num_users, "num_items": num_items, "k": k,
        "seen_excluded": exclude is not None,
        "ids": {kind: f"raw {kind} ids: {integers if t == 'int64' else 'strings'}"
                for kind, t in types.items()},
        "files": {"keras": KERAS_FILE, "saved_model": SAVED_MODEL},
        "signatures": {
            "score": "score(user[n], item[n]) -> {score[n]: logit of the prediction layer, "
                     "probability[n]: its sigmoid}",
            "top_k": f"top_k(user[n]) -> {{items[n, {k}], scores[n, {k}]}}: the raw ids of "
                     "the items of highest score, best first, ties to the lower item number"
                     + (", training items excluded" if exclude is not None else "")
                     + "; score -inf (item " + ("-1" if types["item"] == "int64" else '""')
                     + ") where a user has fewer items left; an unknown id fails the call"},
        "keras_model": "model.keras takes the 0-based model rows (user[n, 1], item[n, 1]), "
                       "not raw ids; it outputs the probability",
        **(about or {}),
        "versions": records.environment()["versions"],
    }
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    # A killed export's staging folders go first; this one's are named after
    # this process, so that the next export can tell a dead writer's from a live one's.
    for suffix in (STAGING, OLD):
        files.remove_stale_temporaries(dest, suffix)
    staging, old = (files.temporary_name(dest, suffix=suffix) for suffix in (STAGING, OLD))
    os.mkdir(staging)
    try:
        model.save(os.path.join(staging, KERAS_FILE))
        write_saved_model(model, os.path.join(staging, SAVED_MODEL), exclude, k, user_ids,
                          item_ids)
        records.write_json(os.path.join(staging, CONFIG_FILE), config)
        mask = files.current_umask()
        os.chmod(staging, 0o777 & ~mask)
        os.chmod(os.path.join(staging, CONFIG_FILE), 0o666 & ~mask)
        if os.path.exists(dest):   # overwrite: move the old folder away first
            os.replace(dest, old)
        os.replace(staging, dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return config
