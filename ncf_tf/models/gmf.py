"""GMF: generalized matrix factorization (paper, sec. 3.2, equation 9).

    y_ui = sigmoid(h^T (p_u * q_i) + b)

with user and item embeddings p_u, q_i of size ``num_factors``, trained on the
log loss with negative sampling (equation 7).
"""

from __future__ import annotations

import keras

from ncf_tf.models import layers as L

NAME = "GMF"


def build(num_users: int, num_items: int, num_factors: int = 8,
          regs: tuple[float, float] = (0.0, 0.0), seed: int = 0) -> keras.Model:
    """Builds GMF; ``regs`` are the L2 factors of the user and item embeddings."""
    if num_factors <= 0:
        raise ValueError(f"num_factors must be positive, got {num_factors}")
    if len(regs) != 2:
        raise ValueError(f"regs takes two values (user, item), got {list(regs)}")
    seeds = L.Seeds(seed)
    user, item = L.id_inputs()
    p = L.embedding(user, num_users, num_factors, "user_embedding", regs[0], seeds)
    q = L.embedding(item, num_items, num_factors, "item_embedding", regs[1], seeds)
    vector = keras.layers.Multiply(name="gmf_product")([p, q])
    return keras.Model([user, item], L.prediction(vector, seeds), name=NAME)
