"""The training loop shared by GMF, MLP and NeuMF (the authors' loop).

    evaluate once ("Init")
    for each epoch:
        resample the training instances (fresh negatives)
        one shuffled pass of mini-batch updates on the log loss (equation 7)
        every ``verbose`` epochs: evaluate; keep the epoch with the best HR

As in the authors' protocol the best epoch is chosen on the *test* HR (the
only held-out data their files have): optimistic, and the run record says so
(``selection: "test"``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable

import keras
import numpy as np

from ncf_tf.models import scoring, trained
from ncf_tf.eval.leave_one_out import Evaluation, LeaveOneOutEvaluator
from ncf_tf.data.sampling import Instances, NegativeSampler
from ncf_tf.train import optimizers

SCORE_BATCH = 1 << 16


def compile_model(model: keras.Model, optimizer: keras.optimizers.Optimizer,
                  steps_per_execution: int | None = None) -> None:
    """Compiles for the log loss: binary cross-entropy on the sigmoid output.

    ``steps_per_execution`` (each step an ordinary update): 64 by default, 1 in
    a ``tf.distribute`` scope, where Keras's multi-step loop does not run.
    """
    if steps_per_execution is None:
        steps_per_execution = 1 if optimizers.in_distribution() else 64
    model.compile(optimizer=optimizer, loss="binary_crossentropy",
                  steps_per_execution=steps_per_execution,
                  jit_compile=optimizers.jit_compile(optimizer))
    optimizers.defer_rows(model)


@contextlib.contextmanager
def precision(policy: str):
    """Builds layers under the Keras dtype ``policy`` (e.g. ``mixed_float16``),
    restoring the previous global policy afterwards."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_score_fn(model: keras.Model, batch_size: int = SCORE_BATCH):
    """``score_fn(users, items)`` returning the ``prediction`` logits (which rank
    as the sigmoid outputs do, without float32 saturation ties near 1): GMF, MLP
    and NeuMF's from :class:`ncf_tf.models.scoring.PairScorer`, any other
    model's from :func:`keras_score_fn`."""
    if trained.model_kind(model) is not None:
        return scoring.PairScorer(model)
    return keras_score_fn(model, batch_size)


def keras_score_fn(model: keras.Model, batch_size: int = SCORE_BATCH):
    """``score_fn(users, items)``: the model's ``prediction`` logits, run pair
    by pair, in batches padded to one shape for the compiled function."""
    logits = trained.logits_model(model)

    def score_fn(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        n = len(users)
        size = min(batch_size, n)
        padded = -(-n // size) * size
        u, i = np.zeros((2, padded, 1), np.int32)
        u[:n, 0], i[:n, 0] = users, items
        out = [np.asarray(logits.predict_on_batch([u[s:s + size], i[s:s + size]]))
               for s in range(0, padded, size)]
        return np.concatenate(out)[:n, 0]

    return score_fn


def batches(instances: Instances, batch_size: int) -> list:
    """``instances`` as ``(tf.data set, instances in it)`` pairs of consecutive
    mini-batches: the whole batches, then the remainder batch if any, each set
    with one static batch shape (an unknown batch dimension slows the compiled step)."""
    import tensorflow as tf

    arrays = (instances.users, instances.items, instances.labels)
    full = len(instances) // batch_size * batch_size
    # No autotuning (nothing to tune): with it, ``fit`` at times returned long
    # after its last step while the iterator was torn down.
    options = tf.data.Options()
    options.autotune.enabled = False

    def dataset(cut, count):   # ((users, items), labels), each with a trailing axis of 1
        users, items, labels = (cut(array)[..., None] for array in arrays)
        return tf.data.Dataset.from_tensor_slices(((users, items), labels)).with_options(
            options), count

    parts = []
    if full:
        parts.append(dataset(lambda array: array[:full].reshape(-1, batch_size), full))
    if full < len(instances):
        parts.append(dataset(lambda array: array[None, full:], len(instances) - full))
    return parts


def fit_epoch(model: keras.Model, instances: Instances, batch_size: int,
              progress: bool = False) -> float:
    """One pass over ``instances`` in their order; returns the mean loss, with
    every update applied (``optimizers.settle``). On TensorFlow outside
    ``tf.distribute`` (which splits NumPy batches itself) one ``fit`` per set of
    :func:`batches`, their losses weighted by instances, as Keras weighs batches.
    """
    if not len(instances):
        raise ValueError("no training instances to fit")
    verbose = 1 if progress else 0
    if keras.config.backend() != "tensorflow" or optimizers.in_distribution():
        return fit_numpy(model, instances, batch_size, verbose)
    total = 0.0
    for index, (data, count) in enumerate(batches(instances, batch_size)):
        # one progress bar: the whole batches' (the remainder is one step)
        history = model.fit(data, epochs=1, shuffle=False, verbose=verbose if index == 0 else 0)
        total += float(history.history["loss"][0]) * count
    optimizers.settle(model.optimizer)
    return total / len(instances)


def fit_numpy(model: keras.Model, instances: Instances, batch_size: int,
              verbose: int = 0) -> float:
    """:func:`fit_epoch` with the arrays handed to Keras, which cuts the batches."""
    history = model.fit([instances.users[:, None], instances.items[:, None]],
                        instances.labels[:, None], batch_size=batch_size, epochs=1,
                        shuffle=False, verbose=verbose)
    optimizers.settle(model.optimizer)
    return float(history.history["loss"][0])


@dataclasses.dataclass
class EpochLog:
    """What one epoch measured: ``hr``/``ndcg`` on the selection set (None when
    not evaluated); ``monitor`` the same on each monitored set, e.g.
    ``{"test": {"hr": .., "ndcg": ..}}``."""

    epoch: int
    loss: float
    hr: float | None
    ndcg: float | None
    sample_s: float
    train_s: float
    eval_s: float | None
    monitor: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainState:
    """Where a run stands between epochs, enough to continue it exactly; at the
    end, its result. ``best_epoch`` is -1 while no epoch has beaten the initial
    model (whose weights ``best_weights`` then are); ``rng_state`` is the
    generator's after the last finished epoch."""

    next_epoch: int
    init: Evaluation
    init_eval_s: float
    epochs: list[EpochLog]
    best_epoch: int
    best: Evaluation
    best_weights: list
    rng_state: dict
    best_monitor: dict = dataclasses.field(default_factory=dict)
    """Each monitored set's Evaluation at the best epoch."""
    diverged: EpochLog | None = None
    """The epoch whose loss or weights were not finite, where training stopped."""


NOT_EVALUATED = Evaluation(0, float("nan"), float("nan"), np.empty(0, np.int64))
"""The evaluations of a run with nothing held out (``evaluator=None``)."""


def stale_evaluations(state: TrainState) -> int:
    """Evaluated epochs since the best one (or the start): what early stopping
    counts, read from the epochs' logs so that a resumed run counts the same."""
    return sum(1 for e in state.epochs if e.hr is not None and e.epoch > state.best_epoch)


def train(model: keras.Model, sampler: NegativeSampler, evaluator: LeaveOneOutEvaluator | None,
          *, epochs: int, batch_size: int, rng: np.random.Generator, verbose: int = 1,
          log: Callable[[str], None] = print,
          on_epoch: Callable[[EpochLog, TrainState], None] | None = None,
          resume: TrainState | None = None, progress: bool = False,
          monitors: dict[str, LeaveOneOutEvaluator] | None = None,
          early_stop: int = 0) -> TrainState:
    """Runs the authors' loop (module docstring) on a compiled ``model``.

    Args:
        model: a compiled GMF, MLP or NeuMF.
        evaluator: the leave-one-out test set; None: nothing is held out,
            nothing evaluated, every epoch trained (the caller keeps the last).
        epochs: number of passes; 0 only evaluates.
        rng: the only source of randomness of sampling and shuffling.
        verbose: evaluate after the epochs where ``epoch % verbose == 0``.
        on_epoch: called after each epoch with its log and the state.
        resume: an interrupted run's state, its model and optimiser variables
            restored; training continues at its ``next_epoch`` and RNG state.
        monitors: further sets, evaluated with ``evaluator`` but never used to
            pick the best epoch (e.g. the test set beside a validation set).
        early_stop: beyond the authors' loop: if positive, stop once this many
            evaluations in a row have not beaten the best HR. 0: never.

    A loss or weight that is not finite stops training after that epoch (the
    state's ``diverged``; ``on_epoch`` is not called for it).
    """
    def evaluate() -> tuple[Evaluation, dict, str]:
        """The selection set's evaluation, the monitored sets' and their log text."""
        result = evaluator.evaluate(score_fn)
        watched = {name: m.evaluate(score_fn) for name, m in (monitors or {}).items()}
        return result, watched, "".join(f"; {name}: HR = {r.hr:.4f}, NDCG = {r.ndcg:.4f}"
                                        for name, r in watched.items())

    score_fn = make_score_fn(model)
    if resume is None and evaluator is None:
        state = TrainState(0, NOT_EVALUATED, 0.0, [], -1, NOT_EVALUATED, [],
                           rng.bit_generator.state)
    elif resume is None:
        start = time.time()
        init, watched, summary = evaluate()
        init_eval_s = time.time() - start
        log(f"Init: HR = {init.hr:.4f}, NDCG = {init.ndcg:.4f}{summary}\t [{init_eval_s:.1f} s]")
        state = TrainState(0, init, init_eval_s, [], -1, init, model.get_weights(),
                           rng.bit_generator.state, watched)
    else:
        state = resume
        rng.bit_generator.state = state.rng_state
        best = ("" if evaluator is None else f" (best so far: iteration {state.best_epoch}, "
                f"HR = {state.best.hr:.4f}, NDCG = {state.best.ndcg:.4f})")
        log(f"Resuming at iteration {state.next_epoch}{best}")
    for epoch in range(state.next_epoch, epochs):
        t0 = time.time()
        instances = sampler.epoch(rng)
        t1 = time.time()
        loss = fit_epoch(model, instances, batch_size, progress)
        t2 = time.time()
        entry = EpochLog(epoch, loss, None, None, t1 - t0, t2 - t1, None)
        if not (np.isfinite(loss) and all(np.isfinite(w).all() for w in model.get_weights())):
            log(f"Diverged at iteration {epoch}: loss = {loss:.4f}; training stops here")
            state.epochs.append(entry)
            state.diverged = entry
            return state
        if evaluator is None:
            log(f"Iteration {epoch} [{t2 - t0:.1f} s]: loss = {loss:.4f}")
        elif epoch % verbose == 0:   # the authors' condition: epochs 0, verbose, 2 verbose...
            result, watched, summary = evaluate()
            entry.hr, entry.ndcg, entry.eval_s = result.hr, result.ndcg, time.time() - t2
            entry.monitor = {name: {"hr": r.hr, "ndcg": r.ndcg} for name, r in watched.items()}
            log(f"Iteration {epoch} [{t2 - t0:.1f} s]: HR = {result.hr:.4f}, "
                f"NDCG = {result.ndcg:.4f}, loss = {loss:.4f}{summary} "
                f"[{entry.eval_s:.1f} s]")
            if result.hr > state.best.hr:
                state.best, state.best_epoch, state.best_monitor = result, epoch, watched
                state.best_weights = model.get_weights()
        state.epochs.append(entry)
        state.next_epoch = epoch + 1
        state.rng_state = rng.bit_generator.state
        if on_epoch is not None:
            on_epoch(entry, state)
        stale = stale_evaluations(state)
        if early_stop and stale >= early_stop and epoch + 1 < epochs:
            log(f"Early stop after iteration {epoch}: {stale} evaluations without a better "
                f"HR than iteration {state.best_epoch}'s")
            break
    if evaluator is None:
        log(f"End. Kept iteration {state.next_epoch - 1}, the last.")
    else:
        log(f"End. Best Iteration {state.best_epoch}:  HR = {state.best.hr:.4f}, "
            f"NDCG = {state.best.ndcg:.4f}. ")
    return state
