"""Helpers of the recommend and export tests: tiny models with spread-out
weights, their logits computed in numpy, id maps, weight files, run records."""

from __future__ import annotations

import json
import os

import numpy as np
import scipy.sparse as sp

from ncf_tf.models import gmf, mlp, neumf, weights

# name -> (build(num_users, num_items), the flags/record fields that rebuild it)
SPECS = {
    "GMF": (lambda u, i: gmf.build(u, i, 4), {"model": "GMF", "num_factors": 4}),
    "MLP": (lambda u, i: mlp.build(u, i, [16, 8, 4], [0, 0, 0]),
            {"model": "MLP", "layers": [16, 8, 4]}),
    "MLP-0": (lambda u, i: mlp.build(u, i, [8], [0]), {"model": "MLP", "layers": [8]}),
    "NeuMF": (lambda u, i: neumf.build(u, i, 4, [16, 8, 4], [0, 0, 0]),
              {"model": "NeuMF", "num_factors": 4, "layers": [16, 8, 4]}),
}


def spread_model(kind: str, num_users: int, num_items: int, seed: int = 0):
    """A model of ``SPECS[kind]`` whose weights are N(0, 1) draws.

    The initialisers' N(0, 0.01) embeddings give near-equal scores; unit
    weights spread them, so rankings have no near-ties to blur a comparison.
    """
    model = SPECS[kind][0](num_users, num_items)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def numpy_logits(model, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The ``prediction`` logit of each (user, item) pair, in float64 numpy,
    straight from equations 9, 10 and 12 (concatenate, then the tower)."""
    w = {name: [a.astype(np.float64) for a in arrays]
         for name, arrays in weights.named_weights(model).items()}

    def tower(p, q):
        x = np.concatenate([p, q], axis=1)
        k = 1
        while f"layer{k}" in w:
            kernel, bias = w[f"layer{k}"]
            x = np.maximum(x @ kernel + bias, 0.0)
            k += 1
        return x

    if "mf_embedding_user" in w:
        phi = np.concatenate([
            w["mf_embedding_user"][0][users] * w["mf_embedding_item"][0][items],
            tower(w["mlp_embedding_user"][0][users], w["mlp_embedding_item"][0][items])], axis=1)
    elif "layer1" in w or model.name == "MLP":
        phi = tower(w["user_embedding"][0][users], w["item_embedding"][0][items])
    else:
        phi = w["user_embedding"][0][users] * w["item_embedding"][0][items]
    h, b = w["prediction"]
    return (phi @ h)[:, 0] + b[0]


def brute_force_top_k(model, users, num_items: int, exclude: sp.csr_matrix | None, k: int):
    """Scores every pair one by one in numpy, sorts each row: (items, scores, all scores)."""
    users = np.asarray(users)
    all_scores = numpy_logits(model, np.repeat(users, num_items),
                              np.tile(np.arange(num_items), len(users))).reshape(len(users), -1)
    masked = all_scores.copy()
    if exclude is not None:
        masked[exclude[users].toarray() > 0] = -np.inf
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(masked, order, axis=1), masked


def write_id_maps(folder, name: str, num_users: int, num_items: int) -> tuple[list, list]:
    """Id maps as bin/prepare_data writes them; original ids ``u<3k+7>``, ``m<5k>``."""
    users = [f"u{3 * k + 7}" for k in range(num_users)]
    items = [f"m{5 * k}" for k in range(num_items)]
    for kind, ids, header in (("user", users, "UserID"), ("item", items, "MovieID")):
        with open(os.path.join(folder, f"{name}.{kind}_ids.tsv"), "w") as f:
            f.write(f"ncf_{kind}_id\t{header}\n")
            f.writelines(f"{k}\t{original}\n" for k, original in enumerate(ids))
    return users, items


def save_model(model, folder, kind: str, info: dict) -> tuple[str, str]:
    """Saves ``model``'s weights and a run record naming them; returns both paths."""
    os.makedirs(folder, exist_ok=True)
    weight_file = os.path.join(folder, f"{kind}.weights.h5")
    weights.save_weights(model, weight_file)
    record_file = os.path.join(folder, f"{kind}.json")
    config = {**SPECS[kind][1], "path": info["folder"], "dataset": info["name"], "topk": 10}
    with open(record_file, "w") as f:
        json.dump({"kind": "train", "model": config["model"], "config": config,
                   "weights_file": weight_file, "status": "finished", "epochs": []}, f)
    return weight_file, record_file

