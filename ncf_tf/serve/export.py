"""Export a trained GMF, MLP or NeuMF for use without ncf_tf (``bin/export``).

The export is one folder:

* ``model.keras``: the Keras model (``keras.saving.load_model``), whose
  output is the probability ``sigmoid(s(u, i))`` of a ``(user, item)`` pair;
* ``saved_model/``: a TensorFlow SavedModel (``tf.saved_model.load``) with two
  serving signatures, on 0-based int32 ids:

  - ``score(user[n], item[n]) -> {score[n], probability[n]}``: the logit
    ``s(u, i)`` of the ``prediction`` layer and its sigmoid;
  - ``top_k(user[n]) -> {items[n, k], scores[n, k]}``: the k items of highest
    logit over the whole catalogue, best first, ties to the lower item id,
    the user's training items excluded (the training matrix is baked into
    the graph as constant CSR indices, and its entries are masked to -inf);
    -1 / -inf where a user has fewer than k items left;

* ``user_ids.tsv`` and ``item_ids.tsv``: the id maps of the data set, when it
  has them (``ncf id<TAB>original id``), to translate ids both ways;
* ``config.json``: the model and its sizes, the counts, k, the source files
  and their SHA-256, and the signatures described.

``top_k`` runs the same code as :func:`ncf_tf.serve.recommend.top_k`
(:func:`~ncf_tf.models.scoring.all_item_logits` and
:func:`~ncf_tf.serve.recommend.rank_items`), so both recommend the same items.
The folder is assembled beside its destination and renamed into place, so
an interrupted export leaves nothing under the destination's name.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import keras
import numpy as np
import scipy.sparse as sp

from ncf_tf.serve import recommend
from ncf_tf.core import records
from ncf_tf.models import scoring, trained
from ncf_tf.core.files import current_umask

KERAS_FILE = "model.keras"
SAVED_MODEL = "saved_model"
CONFIG_FILE = "config.json"
ID_MAP_FILES = {"user": "user_ids.tsv", "item": "item_ids.tsv"}


class ExportError(ValueError):
    """The destination or the options are unusable."""


def check_destination(dest: str, overwrite: bool = False) -> None:
    """Refuses an existing ``dest`` unless ``overwrite`` (and then only a folder)."""
    if os.path.exists(dest):
        if not os.path.isdir(dest):
            raise ExportError(f"--dest {dest}: exists and is not a folder")
        if not overwrite:
            raise ExportError(f"--dest {dest}: exists; refusing to replace it (--overwrite)")


def serving_functions(model: keras.Model, exclude: sp.csr_matrix | None, k: int):
    """The ``score`` and ``top_k`` functions of the SavedModel (module docstring).

    Args:
        model: a GMF, MLP or NeuMF.
        exclude: ``(num_users, num_items)`` CSR of the items never to
            recommend (the training items), baked in as constants; or None.
        k: the number of items ``top_k`` returns.
    """
    import tensorflow as tf

    num_items = int(model.get_layer(trained.EMBEDDINGS[trained.model_kind(model)][1]).input_dim)
    logits = trained.logits_model(model)
    if exclude is not None:
        exclude = exclude.tocsr()
        indptr = tf.constant(exclude.indptr.astype(np.int64))
        indices = tf.constant(exclude.indices.astype(np.int64))

    def score(user, item):
        logit = logits([tf.expand_dims(user, 1), tf.expand_dims(item, 1)])[:, 0]
        return {"score": logit, "probability": tf.sigmoid(logit)}

    def top_k(user):
        if exclude is None:
            excluded = tf.zeros([tf.shape(user)[0], num_items], tf.bool)
        else:
            seen = tf.gather(tf.RaggedTensor.from_row_splits(indices, indptr), user)
            where = tf.stack([seen.value_rowids(), seen.flat_values], axis=1)
            excluded = tf.scatter_nd(where, tf.ones_like(seen.flat_values, tf.int32),
                                     tf.cast([tf.shape(user)[0], num_items], tf.int64)) > 0
        items, scores = recommend.rank_items(scoring.all_item_logits(model, user),
                                             excluded, k)
        return {"items": items, "scores": scores}

    return score, top_k


def write_saved_model(model: keras.Model, path: str, exclude: sp.csr_matrix | None,
                      k: int) -> None:
    """Writes the SavedModel with the ``score`` and ``top_k`` signatures."""
    import tensorflow as tf

    score, top_k = serving_functions(model, exclude, k)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("score", score, input_signature=[
        tf.TensorSpec([None], tf.int32, name="user"), tf.TensorSpec([None], tf.int32, name="item")])
    archive.add_endpoint("top_k", top_k, input_signature=[
        tf.TensorSpec([None], tf.int32, name="user")])
    archive.write_out(path, verbose=False)


def export(model: keras.Model, dest: str, *, exclude: sp.csr_matrix | None, k: int = 10,
           id_maps: dict[str, str] | None = None, about: dict | None = None,
           overwrite: bool = False) -> dict:
    """Writes the export folder (module docstring) to ``dest``; returns its config.

    Args:
        model: a trained GMF, MLP or NeuMF.
        dest: the folder to create.
        exclude: the training matrix whose items ``top_k`` never returns to
            their user, or None to rank every item.
        k: items returned by ``top_k``, ``1 <= k <= num_items``.
        id_maps: ``{"user": path, "item": path}`` of the data's id maps, copied
            into the folder; None or empty when the data has none.
        about: more fields for ``config.json`` (source files, data set).
        overwrite: replace an existing ``dest``.

    Raises:
        ExportError: ``dest`` exists (without ``overwrite``), ``k`` out of
            range, or a backend other than TensorFlow.
    """
    if keras.config.backend() != "tensorflow":
        raise ExportError(f"exporting a SavedModel needs the TensorFlow backend, not "
                          f"{keras.config.backend()} (set KERAS_BACKEND=tensorflow)")
    check_destination(dest, overwrite)
    spec = trained.spec_of(model)
    user_layer, item_layer = trained.EMBEDDINGS[spec.model]
    num_users = int(model.get_layer(user_layer).input_dim)
    num_items = int(model.get_layer(item_layer).input_dim)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num_items:
        raise ExportError(f"--topk must be an integer in 1..{num_items} (the number of items), "
                          f"got {k!r}")
    if exclude is not None and exclude.shape != (num_users, num_items):
        raise ExportError(f"the training matrix is {exclude.shape[0]} x {exclude.shape[1]}, "
                          f"the model {num_users} users x {num_items} items")
    config = {
        **spec.as_dict(), "num_users": num_users, "num_items": num_items, "k": k,
        "seen_excluded": exclude is not None,
        "ids": "0-based ncf ids (int32); user_ids.tsv / item_ids.tsv map them to the "
               "original ids" if id_maps else "0-based ids of the data files (int32)",
        "files": {"keras": KERAS_FILE, "saved_model": SAVED_MODEL,
                  **{f"{kind}_ids": ID_MAP_FILES[kind] for kind in (id_maps or {})}},
        "signatures": {
            "score": "score(user[n], item[n]) -> {score[n]: logit of the prediction layer, "
                     "probability[n]: its sigmoid}",
            "top_k": f"top_k(user[n]) -> {{items[n, {k}], scores[n, {k}]}}: the items of "
                     "highest score, best first, ties to the lower item id"
                     + (", training items excluded" if exclude is not None else "")
                     + "; -1 / -inf where a user has fewer items left"},
        **(about or {}),
        "versions": records.environment()["versions"],
    }
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(dest))}.export-",
                               dir=parent)
    try:
        model.save(os.path.join(staging, KERAS_FILE))
        write_saved_model(model, os.path.join(staging, SAVED_MODEL), exclude, k)
        for kind, source in (id_maps or {}).items():
            shutil.copyfile(source, os.path.join(staging, ID_MAP_FILES[kind]))
        records.write_json(os.path.join(staging, CONFIG_FILE), config)
        # mkdtemp and mkstemp make private files; an export is meant to be shared.
        mask = current_umask()
        os.chmod(staging, 0o777 & ~mask)
        os.chmod(os.path.join(staging, CONFIG_FILE), 0o666 & ~mask)
        if os.path.exists(dest):   # overwrite: move the old folder away first
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(dest))}.old-",
                                   dir=parent)
            os.replace(dest, os.path.join(old, "export"))
            os.replace(staging, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, dest)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return config
