"""Device placement: ``auto`` (first GPU, else CPU), ``cpu`` or ``gpu:N``; and
data-parallel training over several devices or machines with ``tf.distribute``.

Placement goes through Keras 3's ``keras.device`` scope, which is
TensorFlow's ``tf.device`` under the TensorFlow backend (and JAX's device
placement under ``KERAS_BACKEND=jax``).
"""

from __future__ import annotations

import contextlib
import re

import keras


def gpus() -> list[str]:
    """Names of the GPUs the Keras backend sees, as ``gpu:N``."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        return [f"gpu:{i}" for i, _ in enumerate(tf.config.list_logical_devices("GPU"))]
    if backend == "jax":
        import jax
        return [f"gpu:{i}" for i, d in enumerate(d for d in jax.devices() if d.platform == "gpu")]
    return []


def resolve(device: str) -> str:
    """Turns the ``--device`` value into a device name such as ``cpu:0``."""
    device = device.strip().lower()
    if device == "auto":
        found = gpus()
        return found[0] if found else "cpu:0"
    if device == "cpu":
        return "cpu:0"
    match = re.fullmatch(r"(cpu|gpu)(?::(\d+))?", device)
    if not match:
        raise ValueError(f"--device must be auto, cpu or gpu:N, got {device!r}")
    name = f"{match.group(1)}:{match.group(2) or 0}"
    if name.startswith("gpu") and name not in gpus():
        raise ValueError(f"--device {device}: no such GPU (visible: {gpus() or 'none'})")
    return name


def scope(name: str):
    """The placement scope for ``name`` (a context manager)."""
    return keras.device(name)


DISTRIBUTE = ("none", "mirrored", "multiworker")


def distribution(kind: str):
    """A ``tf.distribute`` strategy for ``--distribute``, or None for ``none``.

    ``mirrored``: one replica per local GPU (per logical CPU device when there
    is no GPU, which is how the tests run it); ``multiworker``: the machines
    named in ``TF_CONFIG`` (one machine when it is unset). Each step's global
    batch is split across replicas and their gradients summed, so the update
    is that of the undivided batch.
    """
    if kind not in DISTRIBUTE:
        raise ValueError(f"--distribute must be one of {', '.join(DISTRIBUTE)}, got {kind!r}")
    if kind == "none":
        return None
    if keras.config.backend() != "tensorflow":
        raise ValueError(f"--distribute {kind} needs the TensorFlow backend "
                         f"(KERAS_BACKEND is {keras.config.backend()})")
    import tensorflow as tf
    if kind == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def placement(device: str, strategy=None):
    """The scope to build, compile and train in: the strategy's, or the device's."""
    if strategy is not None:
        return strategy.scope()
    return scope(device) if device else contextlib.nullcontext()
