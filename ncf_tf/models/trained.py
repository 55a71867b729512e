"""A trained GMF, MLP or NeuMF, rebuilt from what training left behind.

From a weight file (``.weights.h5``, or the authors' Keras 1 ``.h5``) and a
:class:`ModelSpec` (from a run record's ``config``), or from a whole
``.keras`` model. Its embeddings must have one row per user and item of the
data it is used with: else every score is meaningless.
"""

from __future__ import annotations

import dataclasses
import os

import keras

from ncf_tf.core import records
from ncf_tf.models import gmf, mlp, neumf
from ncf_tf.models import layers as L
from ncf_tf.models import weights as W

MODELS = (gmf.NAME, mlp.NAME, neumf.NAME)
# The user and item embeddings of each model (row counts: its users and items).
EMBEDDINGS = {gmf.NAME: ("user_embedding", "item_embedding"),
              mlp.NAME: ("user_embedding", "item_embedding"),
              neumf.NAME: ("mf_embedding_user", "mf_embedding_item")}
MLP_EMBEDDINGS = {mlp.NAME: EMBEDDINGS[mlp.NAME],
                  neumf.NAME: ("mlp_embedding_user", "mlp_embedding_item")}
"""The embeddings of the MLP part, where a model has one."""


class TrainedModelError(ValueError):
    """A run record, weight file or model file is unusable with the data."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Which model, and the sizes needed to rebuild it.

    Attributes:
        model: ``"GMF"``, ``"MLP"`` or ``"NeuMF"``.
        num_factors: GMF's predictive factors (GMF and NeuMF).
        layers: the MLP tower, ``layers[0]`` the two embeddings concatenated
            (MLP and NeuMF).
    """

    model: str
    num_factors: int = 8
    layers: tuple[int, ...] = (64, 32, 16, 8)

    def __post_init__(self):
        if self.model not in MODELS:
            raise TrainedModelError(f"model must be one of {', '.join(MODELS)}, "
                                    f"got {self.model!r}")
        object.__setattr__(self, "layers", tuple(int(size) for size in self.layers))
        if self.model != mlp.NAME and self.num_factors <= 0:
            raise TrainedModelError(f"num_factors must be positive, got {self.num_factors}")
        if self.model != gmf.NAME:
            try:
                L.check_layers(list(self.layers), [0.0] * len(self.layers))
            except ValueError as e:
                raise TrainedModelError(str(e)) from None

    def build(self, num_users: int, num_items: int) -> keras.Model:
        """The model with fresh weights (regularisers do not matter for inference)."""
        zeros = [0.0] * len(self.layers)
        if self.model == gmf.NAME:
            return gmf.build(num_users, num_items, self.num_factors)
        if self.model == mlp.NAME:
            return mlp.build(num_users, num_items, list(self.layers), zeros)
        return neumf.build(num_users, num_items, self.num_factors, list(self.layers), zeros)

    def as_dict(self) -> dict:
        """The sizes that apply to this model, for JSON."""
        out = {"model": self.model}
        if self.model != mlp.NAME:
            out["num_factors"] = self.num_factors
        if self.model != gmf.NAME:
            out["layers"] = list(self.layers)
        return out


def read_record(path: str) -> dict:
    """A run record, with the fields a trained model needs checked."""
    record = records.load_json(path, TrainedModelError)
    config = record.get("config") if isinstance(record, dict) else None
    if not isinstance(config, dict) or config.get("model") not in MODELS:
        raise TrainedModelError(f"{path}: not a training run record (expected a 'config' "
                                f"with 'model' one of {', '.join(MODELS)})")
    return record


def spec_from_record(record: dict, path: str = "run record") -> ModelSpec:
    """The model and sizes a run record's configuration trained."""
    config = record["config"]
    try:
        return ModelSpec(config["model"], int(config.get("num_factors", 8)),
                         tuple(config.get("layers", (64, 32, 16, 8))))
    except (TypeError, ValueError) as e:
        raise TrainedModelError(f"{path}: bad model configuration ({e})") from None


def model_kind(model: keras.Model) -> str | None:
    """``"GMF"``, ``"MLP"`` or ``"NeuMF"`` from the layer names, else None."""
    names = {layer.name for layer in model.layers}
    if "mf_embedding_user" in names and "mlp_embedding_user" in names:
        return neumf.NAME
    if "user_embedding" in names and "gmf_product" in names:
        return gmf.NAME
    if "user_embedding" in names and "mlp_concat" in names:
        return mlp.NAME
    return None


def checked_kind(model: keras.Model, hint: str = "") -> str:
    """:func:`model_kind`, or TrainedModelError naming the model and its layers."""
    if (kind := model_kind(model)) is None:
        raise TrainedModelError(f"model {model.name!r} is not a GMF, MLP or NeuMF (its layers are "
                                f"{[layer.name for layer in model.layers]}){hint}")
    return kind


def tower(model: keras.Model, first: int = 1) -> list:
    """The Dense layers ``layer{first}``, ``layer{first+1}``, ... of an MLP tower."""
    names = {layer.name for layer in model.layers}
    layers = []
    while f"layer{first + len(layers)}" in names:
        layers.append(model.get_layer(f"layer{first + len(layers)}"))
    return layers


def spec_of(model: keras.Model) -> ModelSpec:
    """The :class:`ModelSpec` of a built GMF, MLP or NeuMF."""
    kind = checked_kind(model)
    factors = 8 if kind == mlp.NAME else int(model.get_layer(EMBEDDINGS[kind][0]).output_dim)
    sizes = (64, 32, 16, 8)
    if kind != gmf.NAME:
        sizes = [2 * int(model.get_layer(MLP_EMBEDDINGS[kind][0]).output_dim)]
        sizes += [int(layer.units) for layer in tower(model)]
    return ModelSpec(kind, factors, tuple(sizes))


def _check_counts(kind: str, users: int, items: int, num_users: int, num_items: int,
                  source: str, data: str) -> None:
    if (users, items) != (num_users, num_items):
        raise TrainedModelError(
            f"{source}: the {kind} was trained on {users} users x {items} items, but {data} "
            f"has {num_users} users x {num_items} items; weights of another data set?")


def load_from_weights(spec: ModelSpec, path: str, num_users: int, num_items: int,
                      data: str = "the data") -> keras.Model:
    """Builds ``spec`` for the data's counts and loads the weight file ``path``.

    Raises:
        TrainedModelError: the file's user or item counts are not the data's.
        WeightsError: unreadable file, or layers of another model or size.
    """
    named = W.read_named_weights(path)
    user_layer, item_layer = EMBEDDINGS[spec.model]
    if user_layer in named and item_layer in named:
        _check_counts(spec.model, len(named[user_layer][0]), len(named[item_layer][0]),
                      num_users, num_items, path, data)
    model = spec.build(num_users, num_items)
    W.assign_named_weights(model, named, path)
    return model


def load_keras_model(path: str, num_users: int | None = None, num_items: int | None = None,
                     data: str = "the data") -> keras.Model:
    """Loads a whole ``.keras`` GMF, MLP or NeuMF; checks its counts if given.

    Raises:
        TrainedModelError: not a loadable ``.keras`` GMF, MLP or NeuMF, or
            trained on other user/item counts than the data.
    """
    if not path.endswith(".keras"):
        raise TrainedModelError(f"{path}: a whole model file must end in .keras")
    if not os.path.isfile(path):
        raise TrainedModelError(f"{path}: model file not found")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # zip, JSON and deserialisation errors of all kinds
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TrainedModelError(f"{path}: cannot load the .keras model ({first})") from None
    if (kind := model_kind(model)) is None:
        raise TrainedModelError(f"{path}: not a GMF, MLP or NeuMF model (layers "
                                f"{[layer.name for layer in model.layers]})")
    if num_users is not None:
        user_layer, item_layer = EMBEDDINGS[kind]
        _check_counts(kind, int(model.get_layer(user_layer).input_dim),
                      int(model.get_layer(item_layer).input_dim), num_users, num_items,
                      path, data)
    return model


def logits_model(model: keras.Model) -> keras.Model:
    """The same model, answering the ``prediction`` logit instead of the sigmoid."""
    return keras.Model(model.inputs, model.get_layer(L.PREDICTION).output,
                       name=f"{model.name}_logits")

