"""NeuMF: GMF and MLP with separate embeddings, fused at the output
(paper, sec. 3.4, equation 12), optionally initialised from pretrained GMF and
MLP (sec. 3.4.1, equation 13).

    phi_GMF = p^G_u * q^G_i
    phi_MLP = relu(W_L^T ... relu(W_2^T [p^M_u ; q^M_i] + b_2) ... + b_L)
    y_ui    = sigmoid(h^T [phi_GMF ; phi_MLP] + b)

Pretraining copies the GMF embeddings into ``mf_embedding_*``, the MLP
embeddings and ``layerK`` into ``mlp_embedding_*`` and ``layerK``, and sets

    h = [alpha * h_GMF ; (1 - alpha) * h_MLP],  b = alpha * b_GMF + (1 - alpha) * b_MLP

so that at alpha = 0.5 the initial NeuMF logit is the mean of the two logits.
The paper then trains with vanilla SGD, because Adam's moments were not saved.
"""

from __future__ import annotations

import keras
import numpy as np

from ncf_tf.models import layers as L

NAME = "NeuMF"


def build(num_users: int, num_items: int, num_factors: int = 8,
          layers: list[int] = (64, 32, 16, 8), reg_layers: list[float] = (0, 0, 0, 0),
          reg_mf: float = 0.0, seed: int = 0, dropout: float = 0.0) -> keras.Model:
    """Builds NeuMF: GMF of ``num_factors`` beside the MLP tower ``layers``;
    ``dropout`` in the tower is beyond the authors' code
    (:func:`ncf_tf.models.layers.mlp_tower`)."""
    layers, reg_layers = list(layers), list(reg_layers)
    if num_factors <= 0:
        raise ValueError(f"num_factors must be positive, got {num_factors}")
    L.check_layers(layers, reg_layers)
    seeds = L.Seeds(seed)
    user, item = L.id_inputs()
    mf_user = L.embedding(user, num_users, num_factors, "mf_embedding_user", reg_mf, seeds)
    mf_item = L.embedding(item, num_items, num_factors, "mf_embedding_item", reg_mf, seeds)
    half = layers[0] // 2
    mlp_user = L.embedding(user, num_users, half, "mlp_embedding_user", reg_layers[0], seeds)
    mlp_item = L.embedding(item, num_items, half, "mlp_embedding_item", reg_layers[0], seeds)
    mf_vector = keras.layers.Multiply(name="gmf_product")([mf_user, mf_item])
    mlp_vector = keras.layers.Concatenate(name="mlp_concat")([mlp_user, mlp_item])
    mlp_vector = L.mlp_tower(mlp_vector, layers, reg_layers, seeds, dropout)
    vector = keras.layers.Concatenate(name="neumf_concat")([mf_vector, mlp_vector])
    return keras.Model([user, item], L.prediction(vector, seeds), name=NAME)


def blend_pretrained(gmf: dict, mlp: dict, alpha: float = 0.5) -> dict:
    """NeuMF's initial weights (layer name -> arrays) from a trained GMF's and
    MLP's (same form), ``alpha`` in [0, 1] GMF's share of the output layer (equation 13)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blended = {
        "mf_embedding_user": gmf["user_embedding"],
        "mf_embedding_item": gmf["item_embedding"],
        "mlp_embedding_user": mlp["user_embedding"],
        "mlp_embedding_item": mlp["item_embedding"],
    }
    blended.update({name: arrays for name, arrays in mlp.items() if name.startswith("layer")})
    (h_gmf, b_gmf), (h_mlp, b_mlp) = gmf[L.PREDICTION], mlp[L.PREDICTION]
    blended[L.PREDICTION] = [
        np.concatenate([alpha * h_gmf, (1.0 - alpha) * h_mlp], axis=0),
        alpha * b_gmf + (1.0 - alpha) * b_mlp,
    ]
    return blended
