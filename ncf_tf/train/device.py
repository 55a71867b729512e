"""Device placement (``keras.device``): ``auto`` (first GPU, else CPU), ``cpu``
or ``gpu:N``; and data-parallel training over several devices or machines
with ``tf.distribute``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re

import keras


def gpus() -> list[str]:
    """Names of the GPUs the Keras backend sees, as ``gpu:N``."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        # Physical devices: listing logical ones starts TensorFlow's runtime, after
        # which MultiWorkerMirroredStrategy fails ("Collective ops must be
        # configured at program startup").
        return [f"gpu:{i}" for i, _ in enumerate(tf.config.list_physical_devices("GPU"))]
    if backend == "jax":
        import jax
        return [f"gpu:{i}" for i, d in enumerate(d for d in jax.devices() if d.platform == "gpu")]
    return []


def resolve(device: str) -> str:
    """Turns a ``device`` setting into a device name such as ``cpu:0``."""
    device = device.strip().lower()
    if device == "auto":
        found = gpus()
        return found[0] if found else "cpu:0"
    match = re.fullmatch(r"(cpu|gpu)(?::(\d+))?", device)
    if not match:
        raise ValueError(f"device must be auto, cpu or gpu:N, got {device!r}")
    name = f"{match.group(1)}:{match.group(2) or 0}"
    if name.startswith("gpu") and name not in gpus():
        raise ValueError(f"device={device!r}: no such GPU (visible: {gpus() or 'none'})")
    return name


def scope(name: str):
    """The placement scope for ``name`` (a context manager)."""
    return keras.device(name)


DISTRIBUTE = ("none", "mirrored", "multiworker")


def distribution(kind: str):
    """A ``tf.distribute`` strategy for ``distribute``, or None for ``none``.

    ``mirrored``: one replica per local GPU (else per logical CPU device);
    ``multiworker``: the machines named in ``TF_CONFIG`` (one when unset). The
    replicas' gradients are summed: the update is the undivided batch's.
    """
    if kind not in DISTRIBUTE:
        raise ValueError(f"distribute must be one of {', '.join(DISTRIBUTE)}, got {kind!r}")
    if kind == "none":
        return None
    if keras.config.backend() != "tensorflow":
        raise ValueError(f"distribute={kind!r} needs the TensorFlow backend "
                         f"(KERAS_BACKEND is {keras.config.backend()})")
    import tensorflow as tf
    if kind == "multiworker":
        check_tf_config(os.environ.get("TF_CONFIG", ""))
        return _multi_worker_strategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def check_tf_config(text: str) -> None:
    """ValueError naming ``TF_CONFIG`` unless ``text`` is empty (one machine)
    or a JSON object with a ``cluster`` of host lists and this ``task``'s
    ``type`` and ``index`` in it."""
    if not text.strip():
        return
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {text[:80]!r}") from None
    cluster, task = ((config.get("cluster"), config.get("task")) if isinstance(config, dict)
                     else (None, None))
    if (not isinstance(cluster, dict) or not cluster
            or not all(isinstance(hosts, list) and hosts for hosts in cluster.values())):
        raise ValueError('TF_CONFIG must hold a "cluster" such as {"worker": ["host:port", '
                         f'...]}}, got {text[:80]!r}')
    if (not isinstance(task, dict) or task.get("type") not in cluster
            or not isinstance(task.get("index"), int) or isinstance(task.get("index"), bool)
            or not 0 <= task["index"] < len(cluster[task["type"]])):
        raise ValueError('TF_CONFIG must hold a "task" such as {"type": "worker", "index": 0} '
                         f"naming one of its cluster's hosts, got {text[:80]!r}")


def check_split(strategy, batch_size: int, instances: int) -> None:
    """ValueError, saying which batch and what would split, unless every batch
    of an epoch of ``instances`` splits evenly over ``strategy``'s replicas:
    each replica's loss is the mean over its share, so unequal shares would
    weigh instances unequally."""
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    last = instances % batch_size
    if batch_size % replicas == 0 and last % replicas == 0:
        return
    which = (f"batch_size {batch_size}" if batch_size % replicas
             else f"the last batch of each epoch ({last} of its {instances} instances)")
    if instances % replicas:
        would = (f"no batch_size would, as the epoch's {instances} instances (positives times "
                 f"1 + num_neg) are not a multiple of {replicas}: another num_neg would")
    else:
        would = f"batch_size {-(-batch_size // replicas) * replicas} would"
    raise ValueError(f"{which} does not split evenly over the {replicas} replicas, so the "
                     f"updates would not be one device's; {would}")


def placement(device: str, strategy=None):
    """The scope to build, compile and train in: the strategy's, or the device's."""
    if strategy is not None:
        return strategy.scope()
    return scope(device) if device else contextlib.nullcontext()


def _multi_worker_strategy():
    """``tf.distribute.MultiWorkerMirroredStrategy`` with a ``reduce`` that
    Keras 3's ``fit`` can call with several workers (keras-team/keras#20585):

    - ``fit`` reduces the first input batch (a nest of per-replica tensors,
      which TensorFlow cannot) only for its structure, shapes and dtypes: a
      nest gets each leaf's first local replica, with no collective;
    - it reduces each scalar metric with ``axis=0`` across workers ("Invalid
      reduction dimension 0"): a scalar is reduced with ``axis=None``.
    """
    import tensorflow as tf

    class Strategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            leaves = tf.nest.flatten(value)
            if len(leaves) != 1 or leaves[0] is not value:
                return tf.nest.map_structure(
                    lambda v: (self.experimental_local_results(v)[0]
                               if isinstance(v, tf.distribute.DistributedValues) else v),
                    value)
            if axis is not None and all(local.shape.rank == 0
                                        for local in self.experimental_local_results(value)):
                axis = None
            return super().reduce(reduce_op, value, axis)

    return Strategy()


def is_chief(strategy) -> bool:
    """Whether this process writes a run's outputs: always with one machine;
    with ``multiworker`` only the chief (task ``chief``, or worker 0 when
    ``TF_CONFIG`` names none), as every worker trains the same model."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return (not cluster or resolver.task_type in (None, "chief")
            or (resolver.task_type == "worker" and resolver.task_id == 0
                and "chief" not in cluster))
