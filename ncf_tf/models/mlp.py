"""MLP: a ReLU tower on concatenated embeddings (paper, sec. 3.3, equation 10).

    z = [p_u ; q_i],  z_l = relu(W_l^T z_{l-1} + b_l),  y_ui = sigmoid(h^T z_L + b)

``layers = [64, 32, 16, 8]`` means embeddings of 64 / 2 = 32 each and hidden
layers 32 -> 16 -> 8 (the authors' code; the last size is the "predictive
factors"). ``reg_layers[0]`` is the L2 factor of the embeddings, ``reg_layers[i]``
that of ``layer{i}``. ``layers = [F]`` is MLP-0: the embeddings feed the
prediction layer directly.
"""

from __future__ import annotations

import keras

from ncf_tf.models import layers as L

NAME = "MLP"


def build(num_users: int, num_items: int, layers: list[int] = (64, 32, 16, 8),
          reg_layers: list[float] = (0, 0, 0, 0), seed: int = 0,
          dropout: float = 0.0) -> keras.Model:
    """Builds MLP with the tower ``layers`` (see module docstring); ``dropout``
    in the tower is beyond the authors' code (:func:`ncf_tf.models.layers.mlp_tower`)."""
    layers, reg_layers = list(layers), list(reg_layers)
    L.check_layers(layers, reg_layers)
    seeds = L.Seeds(seed)
    user, item = L.id_inputs()
    p = L.embedding(user, num_users, layers[0] // 2, "user_embedding", reg_layers[0], seeds)
    q = L.embedding(item, num_items, layers[0] // 2, "item_embedding", reg_layers[0], seeds)
    vector = keras.layers.Concatenate(name="mlp_concat")([p, q])
    vector = L.mlp_tower(vector, layers, reg_layers, seeds, dropout)
    return keras.Model([user, item], L.prediction(vector, seeds), name=NAME)
