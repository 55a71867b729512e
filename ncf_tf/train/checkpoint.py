"""Per-epoch checkpoints, so that an interrupted run continues exactly.

One ``.npz`` file holds everything the next epoch depends on: the model's and
optimiser's variables, the best weights so far, and, as JSON, the RNG state,
the epoch logs, the evaluations and the caller's ``extra``. It is written to
a temporary file and renamed into place, so a run killed at any moment leaves
the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import zipfile

import keras
import numpy as np

from ncf_tf.eval.leave_one_out import Evaluation
from ncf_tf.core.files import atomic_path
from ncf_tf.train.training import EpochLog, TrainState


def save(path: str, model: keras.Model, state: TrainState, extra: dict) -> None:
    """Writes ``state``, the model/optimiser variables and ``extra`` (JSON
    metadata, read back by :func:`read_extra`) atomically to ``path``."""
    meta = {
        "next_epoch": state.next_epoch, "init_eval_s": state.init_eval_s,
        "epochs": [dataclasses.asdict(e) for e in state.epochs],
        "best_epoch": state.best_epoch, "rng_state": state.rng_state,
        "init": [state.init.k, state.init.hr, state.init.ndcg],
        "best": [state.best.k, state.best.hr, state.best.ndcg], "extra": extra,
        "best_monitor": {name: [e.k, e.hr, e.ndcg] for name, e in state.best_monitor.items()},
    }
    optimizer = model.optimizer
    built = optimizer.variables if optimizer is not None and optimizer.built else []
    arrays = {"meta": np.array(json.dumps(meta)),
              "init_ranks": state.init.ranks, "best_ranks": state.best.ranks,
              **{f"monitor.{name}": e.ranks for name, e in state.best_monitor.items()},
              **{f"model.{i}": np.asarray(w) for i, w in enumerate(model.get_weights())},
              **{f"best.{i}": np.asarray(w) for i, w in enumerate(state.best_weights)},
              **{f"opt.{i}": np.asarray(v.numpy()) for i, v in enumerate(built)}}
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (empty, truncated, not a checkpoint)."""


@contextlib.contextmanager
def _opened(path: str):
    """The checkpoint's arrays and its decoded ``meta``; CheckpointError
    naming the file, and what to do, when it cannot be read whole."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            yield data, meta
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
        if isinstance(e, CheckpointError):
            raise
        why = "empty" if os.path.getsize(path) == 0 else "damaged or not a checkpoint"
        raise CheckpointError(f"checkpoint {path} is {why} ({type(e).__name__}); remove it "
                              "to start the run again from its first epoch") from None


def read_extra(path: str) -> dict:
    """The ``extra`` metadata of a checkpoint (to check it belongs to a run)."""
    with _opened(path) as (_, meta):
        return meta["extra"]


def load(path: str, model: keras.Model) -> TrainState:
    """Restores model and optimiser variables from ``path`` into ``model``
    (compiled as when it was written); returns the state. ValueError when the
    file does not fit the model, CheckpointError when it is damaged."""
    with _opened(path) as (data, meta):
        model_weights, best_weights, opt_values = (_numbered(data, prefix)
                                                   for prefix in ("model.", "best.", "opt."))
        init_ranks, best_ranks = data["init_ranks"], data["best_ranks"]
        best_monitor = {name: Evaluation(*values, data[f"monitor.{name}"])
                        for name, values in meta.get("best_monitor", {}).items()}
    expected = [tuple(w.shape) for w in model.get_weights()]
    if [tuple(w.shape) for w in model_weights] != expected:
        raise ValueError(f"checkpoint {path}: its weights do not fit this model "
                         f"(shapes {[w.shape for w in model_weights]}, expected {expected})")
    model.set_weights(model_weights)
    if opt_values:
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        if len(optimizer.variables) != len(opt_values):
            raise ValueError(f"checkpoint {path}: {len(opt_values)} optimizer variables, "
                             f"the optimizer has {len(optimizer.variables)}")
        for variable, value in zip(optimizer.variables, opt_values):
            variable.assign(value)
    return TrainState(
        next_epoch=meta["next_epoch"], init=Evaluation(*meta["init"], init_ranks),
        init_eval_s=meta["init_eval_s"], epochs=[EpochLog(**e) for e in meta["epochs"]],
        best_epoch=meta["best_epoch"], best=Evaluation(*meta["best"], best_ranks),
        best_weights=best_weights, rng_state=meta["rng_state"],
        best_monitor=best_monitor)


def _numbered(data, prefix: str) -> list[np.ndarray]:
    count = sum(1 for name in data.files if name.startswith(prefix))
    return [data[f"{prefix}{i}"] for i in range(count)]
