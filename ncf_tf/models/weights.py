"""Weight files: read by layer name, checked against a model, written atomically.

Two formats are read into the same ``{layer name: [arrays]}`` mapping:

* Keras 3 ``.weights.h5`` (what ncf_tf writes): ``layers/<key>/vars`` groups
  whose ``name`` attribute is the layer's name, arrays ``vars/0``, ``vars/1``...
* Keras 1/2 HDF5 weight files (the authors' published pretrained models): a
  root attribute ``layer_names``, one group per layer with a ``weight_names``
  attribute listing datasets such as ``user_embedding_W``, ``prediction_b``.

GMF, MLP and NeuMF use the authors' layer names, so their files load.
"""

from __future__ import annotations

import os

import h5py
import keras
import numpy as np

from ncf_tf.core.files import atomic_path


class WeightsError(ValueError):
    """A weight file is unreadable or does not fit the model."""


def _decode(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_named_weights(path: str) -> dict[str, list[np.ndarray]]:
    """Reads a Keras 3 ``.weights.h5`` or Keras 1/2 HDF5 weight file by layer name."""
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: weight file not found")
    try:
        with h5py.File(path, "r") as f:
            named = {}
            if "layer_names" in f.attrs:  # Keras 1/2 layout
                for layer in map(_decode, f.attrs["layer_names"]):
                    names = [_decode(n) for n in f[layer].attrs.get("weight_names", [])]
                    if names:
                        named[layer] = [np.asarray(f[layer][n]) for n in names]
            elif "layers" in f:  # Keras 3 layout
                for group in f["layers"].values():
                    variables = group.get("vars")
                    if variables is not None and len(variables):
                        layer = _decode(variables.attrs.get("name", group.name))
                        named[layer] = [np.asarray(variables[str(i)])
                                        for i in range(len(variables))]
            else:
                raise WeightsError(f"{path}: neither a Keras 3 .weights.h5 nor a Keras 1/2 "
                                   "HDF5 weight file")
            return named
    except OSError as e:
        raise WeightsError(f"{path}: not a readable HDF5 weight file ({e})") from None


def named_weights(model: keras.Model) -> dict[str, list[np.ndarray]]:
    """The weights of ``model``'s layers that have any, by layer name."""
    return {layer.name: [np.asarray(w) for w in layer.get_weights()]
            for layer in model.layers if layer.weights}


def assign_named_weights(model: keras.Model, named: dict[str, list[np.ndarray]],
                         source: str) -> None:
    """Sets every weighted layer of ``model`` from ``named``, checking all first.

    Raises:
        WeightsError: a layer is missing from ``named`` or its shapes differ
            (naming ``source``, the layer and shapes); nothing is assigned then.
    """
    layers = [layer for layer in model.layers if layer.weights]
    for layer in layers:   # a missing layer means the wrong model: say so first
        if layer.name not in named:
            raise WeightsError(
                f"{source}: no weights for layer '{layer.name}' (expected shapes "
                f"{[tuple(w.shape) for w in layer.weights]}); the file has layers "
                f"{sorted(named)} -- is it a {model.name} weight file?")
    plan = []
    for layer in layers:
        expected = [tuple(w.shape) for w in layer.weights]
        arrays = named[layer.name]
        got = [tuple(np.shape(a)) for a in arrays]
        if got != expected:
            raise WeightsError(f"{source}: layer '{layer.name}' has shapes {got}, "
                               f"the {model.name} model expects {expected}")
        plan.append((layer, arrays))
    for layer, arrays in plan:
        layer.set_weights(arrays)


def load_weights(model: keras.Model, path: str) -> None:
    """Loads a weight file of either format into ``model`` (see :func:`assign_named_weights`)."""
    assign_named_weights(model, read_named_weights(path), path)


def save_weights(model: keras.Model, path: str) -> None:
    """Writes ``model``'s weights as Keras 3 ``.weights.h5``, atomically."""
    if not path.endswith(".weights.h5"):
        raise ValueError(f"weight file names must end in .weights.h5, got {path}")
    with atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
