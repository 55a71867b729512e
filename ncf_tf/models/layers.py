"""Building blocks shared by GMF, MLP and NeuMF (Keras 3 functional API).

Layer names are the contract with weight files: pretraining copies weights by
name, and the authors' Keras 1 files use the same names. Initialisers are the
authors': embeddings N(0, 0.01), the prediction layer LeCun uniform, hidden
layers Glorot uniform.
"""

from __future__ import annotations

import keras
import numpy as np

PREDICTION = "prediction"


class Seeds:
    """A reproducible stream of initialiser seeds drawn from one integer seed."""

    def __init__(self, seed: int):
        self._rng = np.random.default_rng(seed)

    def __call__(self) -> int:
        return int(self._rng.integers(2**31 - 1))


def id_inputs() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The two ``(batch, 1)`` int32 inputs ``user_input`` and ``item_input``."""
    return (keras.Input(shape=(1,), dtype="int32", name="user_input"),
            keras.Input(shape=(1,), dtype="int32", name="item_input"))


def embedding(ids, count: int, dim: int, name: str, reg: float, seeds: Seeds):
    """Looks ``ids`` up in a new ``(count, dim)`` table; returns ``(batch, dim)``."""
    layer = keras.layers.Embedding(
        count, dim, name=name,
        embeddings_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=seeds()),
        embeddings_regularizer=keras.regularizers.L2(reg) if reg else None)
    return keras.layers.Flatten(name=f"{name}_flat")(layer(ids))


def mlp_tower(vector, layers: list[int], reg_layers: list[float], seeds: Seeds,
              dropout: float = 0.0):
    """Dense ReLU layers ``layer1 .. layer{N-1}`` of sizes ``layers[1:]``.

    ``dropout`` > 0 (beyond the authors' code) puts a weightless Dropout layer
    ``dropout{i}`` after each ``layer{i}``; with 0 the model is the authors'.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout}")
    for index in range(1, len(layers)):
        seed, reg = seeds(), reg_layers[index]
        vector = keras.layers.Dense(
            layers[index], activation="relu", name=f"layer{index}",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
            kernel_regularizer=keras.regularizers.L2(reg) if reg else None)(vector)
        if dropout:
            # Seeded from the layer's own seed, not a new draw: the initial weights
            # are those of the same model without dropout.
            vector = keras.layers.Dropout(dropout, seed=seed + 1, name=f"dropout{index}")(vector)
    return vector


def prediction(vector, seeds: Seeds):
    """``sigmoid(h^T vector + b)``: the ``prediction`` layer, then the sigmoid.

    The sigmoid is a separate weightless layer so that scoring can read the
    logit (``prediction``'s output): ranks are the same, and logits do not
    saturate into ties in float32 the way probabilities near 1 do.
    """
    # Under a mixed-precision policy the output stays in float32: half-precision
    # logits would tie in the ranking.
    mixed = keras.config.dtype_policy().name.startswith("mixed")
    logit = keras.layers.Dense(
        1, name=PREDICTION, dtype="float32" if mixed else None,
        kernel_initializer=keras.initializers.LecunUniform(seed=seeds()))(vector)
    return keras.layers.Activation("sigmoid", name="probability",
                                   dtype="float32" if mixed else None)(logit)


def check_layers(layers: list[int], reg_layers: list[float]) -> None:
    """Validates an MLP tower specification (ValueError naming the parameter)."""
    if len(layers) == 0:
        raise ValueError("layers must name at least one size")
    if len(layers) != len(reg_layers):
        raise ValueError(f"layers and reg_layers must have the same length, got {len(layers)} and "
                         f"{len(reg_layers)}")
    if any(size <= 0 for size in layers):
        raise ValueError(f"layers sizes must be positive, got {layers}")
    if layers[0] % 2:
        raise ValueError(f"layers[0] must be even, got {layers[0]}: it is the user and "
                         "item embeddings concatenated, half each")
    if any(reg < 0 for reg in reg_layers):
        raise ValueError(f"reg_layers must be >= 0, got {reg_layers}")
