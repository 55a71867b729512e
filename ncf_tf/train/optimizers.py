"""The four learners of the authors' code, with Keras 1's constants and formulas.

Keras 1 (the authors') used, with eps = 1e-8 outside the root and g the
gradient of the whole mini-batch loss:

    Adagrad:  a += g^2;                       p -= lr * g / (sqrt(a) + eps)
    RMSprop:  a = rho * a + (1 - rho) * g^2;  p -= lr * g / (sqrt(a) + eps)
    Adam:     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
              p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

(t counts the updates from 1.) All are *dense*: every parameter and moment
is updated at every step, including embedding rows absent from the batch.

Keras 3 differs in two places, both handled here: its Adagrad and RMSprop
put epsilon inside the root (and Adagrad starts its accumulator at 0.1), hence
:class:`Keras1Adagrad` and :class:`Keras1RMSprop`; and on TensorFlow an
embedding's gradient is a ``tf.IndexedSlices`` with one slice per
*occurrence* of a row, which Keras 3 squares slice by slice: a row that
occurs k times gets sum_k g_k^2 in its second moment instead of
(sum_k g_k)^2. Every learner here first sums the occurrences, as Keras 1's
dense gradient did. Adam is :class:`FusedAdam` or :class:`DeferredAdam` (the
same, at the cost of the batch's rows); :class:`LazyAdam` is fast mode's.
"""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
from keras import ops

from ncf_tf.train.config import ADAM_BETAS, ADAM_KINDS, LEARNERS

EPSILON = 1e-8


def _tf():
    """The ``tensorflow`` module where Keras runs on TensorFlow, else None."""
    if keras.config.backend() != "tensorflow":
        return None
    import tensorflow as tf
    return tf


def in_distribution() -> bool:
    """Whether a ``tf.distribute`` strategy scope is active."""
    return (tf := _tf()) is not None and tf.distribute.has_strategy()


def _is_sparse(gradient) -> bool:
    return (tf := _tf()) is not None and isinstance(gradient, tf.IndexedSlices)


def dense_gradient(gradient):
    """``gradient`` as a dense tensor: a ``tf.IndexedSlices`` summed per row."""
    return _tf().convert_to_tensor(gradient) if _is_sparse(gradient) else gradient


def _constant(value, dtype):
    """``value`` in ``dtype``; a Python float is rounded once, to ``dtype``."""
    if isinstance(value, (int, float)):
        return ops.convert_to_tensor(value, dtype)
    return ops.cast(value, dtype)


def _resource(variable):
    """The ``tf.Variable`` behind a Keras variable (or ``variable`` itself):
    ``_value``, as under an autocast scope ``value`` is a cast copy."""
    return getattr(variable, "_value", variable)


def _widest_float() -> str:
    """float64, or float32 on JAX without x64 (where float64 is not computed)."""
    if keras.config.backend() == "jax":
        import jax
        return str(jax.dtypes.canonicalize_dtype(np.float64))
    return "float64"


def _take(variable, rows):
    """Rows ``rows`` of ``variable`` (from :meth:`DeferredAdam._state`)."""
    if tf := _tf():
        return tf.gather(variable, rows)
    return ops.take(ops.convert_to_tensor(variable), rows, axis=0)


def _subtract_rows(variable, rows, values) -> None:
    """Subtracts ``values`` from rows ``rows`` of ``variable`` (elsewhere than
    TensorFlow a repeated row's occurrences set it to the same value)."""
    if tf := _tf():
        variable.scatter_sub(tf.IndexedSlices(values, rows))
    else:
        variable.assign(ops.scatter_update(ops.convert_to_tensor(variable), rows[:, None],
                                           _take(variable, rows) - values))


def is_table(variable) -> bool:
    """Whether ``variable`` (Keras's, or under ``tf.distribute`` a
    ``tf.Variable``) is a ``keras.layers.Embedding`` table."""
    name = getattr(variable, "path", None) or variable.name
    return name.split(":")[0].endswith("embeddings")


@keras.saving.register_keras_serializable(package="ncf_tf")
class FusedAdam(keras.optimizers.Adam):
    """Keras 1's Adam (module docstring): Keras 3's, on the dense gradient.

    On TensorFlow each variable's update is one ``ResourceApplyAdam``, with
    t = ``iterations + 1``:

        m += (g - m) * (1 - b1);  v += (g^2 - v) * (1 - b2)
        p -= m * lr * sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v) + eps)

    ``Adam.update_step`` term for term, except that in float32 1 - b1 and
    1 - b2 come from the float32 betas, as in Keras 1. The moments are Adam's
    own variables (checkpoints interchange with Keras's). Other backends,
    ``amsgrad`` and ``tf.distribute`` take Keras's own implementation.
    """

    def _fused(self) -> bool:
        return _tf() is not None and not self.amsgrad and not in_distribution()

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self._fused():
            super()._backend_update_step(grads, trainable_variables, learning_rate)
            return
        tf = _tf()
        scalars = {}
        for gradient, variable in zip(grads, trainable_variables):
            dtype = variable.dtype
            if dtype not in scalars:
                # Each constant rounded as Adam.update_step rounds it: the
                # powers from ops.cast(beta) (via float32), the kernel's
                # 1 - beta and epsilon from the Python floats (exact in float64).
                beta1_power, beta2_power = self._powers(dtype)
                scalars[dtype] = dict(
                    beta1_power=beta1_power, beta2_power=beta2_power,
                    lr=ops.cast(learning_rate, dtype), beta1=_constant(self.beta_1, dtype),
                    beta2=_constant(self.beta_2, dtype), epsilon=_constant(self.epsilon, dtype))
            index = self._get_variable_index(variable)
            tf.raw_ops.ResourceApplyAdam(
                var=_resource(variable).handle,
                m=_resource(self._momentums[index]).handle,
                v=_resource(self._velocities[index]).handle,
                grad=tf.cast(dense_gradient(gradient), dtype),
                use_locking=False, use_nesterov=False, **scalars[dtype])

    def update_step(self, gradient, variable, learning_rate):
        super().update_step(dense_gradient(gradient), variable, learning_rate)

    def _powers(self, dtype):
        """b1^t and b2^t at this update: apply() increments ``iterations``
        after it, so the first update has t = 1."""
        step = ops.cast(self.iterations + 1, dtype)
        return tuple(ops.power(ops.cast(beta, dtype), step) for beta in (self.beta_1, self.beta_2))

    def _corrected_lr(self, learning_rate, dtype):
        """Keras 1's step size at this update, lr sqrt(1 - b2^t) / (1 - b1^t)."""
        b1_power, b2_power = self._powers(dtype)
        return ops.cast(learning_rate, dtype) * ops.sqrt(1 - b2_power) / (1 - b1_power)

    def _update_apart(self, grads, trainable_variables, learning_rate, by_rows, row_step):
        """FusedAdam's update for the variables not ``by_rows`` (a flag per
        variable), then ``row_step(gradient, variable, learning_rate)`` for the others."""
        dense = [(g, v) for g, v, rows in zip(grads, trainable_variables, by_rows) if not rows]
        if dense:
            FusedAdam._backend_update_step(self, [g for g, _ in dense], [v for _, v in dense],
                                           learning_rate)
        for gradient, variable, rows in zip(grads, trainable_variables, by_rows):
            if rows:
                row_step(gradient, variable, learning_rate)


class Keras1Adagrad(keras.optimizers.Optimizer):
    """Adagrad as in Keras 1: zero initial accumulator, epsilon outside the root."""

    slot = "accumulator"

    def __init__(self, learning_rate=0.01, epsilon=EPSILON, name="adagrad", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._accumulators = self.add_optimizer_variables(variables, self.slot)

    def _accumulate(self, accumulator, squared) -> None:
        self.assign_add(accumulator, squared)

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(dense_gradient(gradient), variable.dtype)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        self._accumulate(accumulator, ops.square(gradient))
        self.assign_sub(variable, ops.divide(ops.multiply(lr, gradient),
                                             ops.add(ops.sqrt(accumulator), self.epsilon)))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


class Keras1RMSprop(Keras1Adagrad):
    """RMSprop as in Keras 1: rho = 0.9, epsilon outside the root, no momentum
    (Adagrad's step on a decaying average of g^2)."""

    slot = "velocity"

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=EPSILON, name="rmsprop", **kwargs):
        super().__init__(learning_rate, epsilon, name, **kwargs)
        self.rho = rho

    def _accumulate(self, velocity, squared) -> None:
        self.assign(velocity, ops.add(ops.multiply(self.rho, velocity),
                                      ops.multiply(1 - self.rho, squared)))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho}


@keras.saving.register_keras_serializable(package="ncf_tf")
class LazyAdam(FusedAdam):
    """Fast mode, *not* the authors' Adam: an embedding row and its two
    moments change only at the steps where the row occurs in the batch, by
    Adam's update (module docstring) with the global step t and g the sum of
    the row's occurrences.

    Absent rows keep their weights and moments (dense Adam decays the moments
    and moves the weights along the old momentum). Other variables get
    :class:`FusedAdam`'s update. Other backends and ``tf.distribute`` hand
    over dense gradients, whose exactly zero rows (underflowed half precision
    too) count as absent.
    """

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self._fused():
            super()._backend_update_step(grads, trainable_variables, learning_rate)
            return
        self._update_apart(grads, trainable_variables, learning_rate,
                           [_is_sparse(g) for g in grads], self._sparse_step)

    def _sparse_step(self, gradient, variable, learning_rate):
        tf = _tf()
        dtype = variable.dtype
        # each row once, its occurrences' gradients summed (as Keras 1's dense gradient)
        rows, position = tf.unique(gradient.indices)
        g = tf.math.unsorted_segment_sum(tf.cast(gradient.values, dtype), position,
                                         tf.shape(rows)[0])
        index = self._get_variable_index(variable)
        m, v, p = (_resource(self._momentums[index]), _resource(self._velocities[index]),
                   _resource(variable))
        m_rows = self.beta_1 * tf.gather(m, rows) + (1 - self.beta_1) * g
        v_rows = self.beta_2 * tf.gather(v, rows) + (1 - self.beta_2) * tf.square(g)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        step = self._corrected_lr(learning_rate, dtype) * m_rows / (tf.sqrt(v_rows) + self.epsilon)
        p.scatter_sub(tf.IndexedSlices(step, rows))

    def update_step(self, gradient, variable, learning_rate):
        if not is_table(variable):
            super().update_step(gradient, variable, learning_rate)
            return
        dtype = variable.dtype
        g = ops.cast(dense_gradient(gradient), dtype)
        present = ops.any(ops.not_equal(g, 0), axis=-1, keepdims=True)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        m_old, v_old = ops.convert_to_tensor(m), ops.convert_to_tensor(v)
        m_new = self.beta_1 * m_old + (1 - self.beta_1) * g
        v_new = self.beta_2 * v_old + (1 - self.beta_2) * ops.square(g)
        step = self._corrected_lr(learning_rate, dtype) * m_new / (ops.sqrt(v_new) + self.epsilon)
        self.assign(m, ops.where(present, m_new, m_old))
        self.assign(v, ops.where(present, v_new, v_old))
        self.assign_sub(variable, ops.where(present, step, ops.zeros_like(step)))


SERIES_TOLERANCE = 1e-9
"""How far :class:`DeferredAdam`'s closed form may be from the steps it
replaces, relative to their sum: well under float32's rounding (6e-8)."""

SERIES_TERMS = 12
"""The most terms :class:`DeferredAdam`'s series may take (Keras 1's betas
need 5)."""


@functools.lru_cache(maxsize=8)
def deferral_series(beta_1: float, beta_2: float, powers: tuple[float, float] | None = None):
    """The constants of :class:`DeferredAdam`'s closed form for these betas.

    With c_l = b1 b2^(l/2) and f(i) = sqrt(1 - b2^i) / (1 - b1^i) (the step
    size over lr, from the betas as ``powers`` gives them, by default as
    float32, as TensorFlow's Adam raises them), the tails

        T_l(t) = sum_(j>=1) f(t + j) c_l^j

    give the sums over a row's idle steps s + 1..s + k without a loop:
    sum_(j=1..k) f(s + j) c_l^j = T_l(s) - c_l^k T_l(s + k).

    Returns ``(tails, ratios, binomials)``, all float64: ``tails[t, l] =
    T_l(t)`` for t up to where f is 1 to float64 rounding (T_l constant from
    there), ``ratios[l] = c_l``, ``binomials[n, l] = (-1)^l C(n, l)`` (so sum_l
    binomials[n, l] c_l^j = b1^j (1 - b2^(j/2))^n); or None where the series
    needs over :data:`SERIES_TERMS` terms (e.g. MLPerf's betas 0.25 and 0.5).
    """
    if not (0 < beta_1 < 1 and 0 < beta_2 < 1):
        return None
    j = np.arange(1, math.ceil(math.log(1e-20) / math.log(beta_1)) + 1, dtype=np.float64)
    decay, shrink = beta_1 ** j, -np.expm1(j * math.log(beta_2) / 2)
    terms = next((n for n in range(1, SERIES_TERMS + 1)
                  if (decay * shrink ** n).sum() <= SERIES_TOLERANCE * decay.sum()), None)
    if terms is None:
        return None
    rounded = powers or [float(np.float32(beta)) for beta in (beta_1, beta_2)]
    last = math.ceil(math.log(1e-17) / math.log(max(rounded)))
    i = np.arange(1, last + 1, dtype=np.float64)
    factors = np.sqrt(-np.expm1(i * math.log(rounded[1]))) / -np.expm1(i * math.log(rounded[0]))
    ratios = beta_1 * math.sqrt(beta_2) ** np.arange(terms)
    tails = np.empty((last + 1, terms))
    tails[last] = ratios / (1 - ratios)
    for t in range(last - 1, -1, -1):     # T(t) = c (f(t + 1) + T(t + 1))
        tails[t] = ratios * (factors[t] + tails[t + 1])
    binomials = np.array([[(-1) ** l * math.comb(n, l) for l in range(terms)]
                          for n in range(terms)], np.float64)
    return tails, ratios, binomials


@keras.saving.register_keras_serializable(package="ncf_tf")
class DeferredAdam(FusedAdam):
    """Keras 1's dense Adam (module docstring) at the cost of the batch's rows.

    An embedding row whose gradient is zero for k steps after step s follows
    a known path: m_(s+j) = b1^j m_s, v_(s+j) = b2^j v_s, and the weights move by

        lr sum_(j=1..k) f(s + j) b1^j m_s / (b2^(j/2) a + eps),   a = sqrt(v_s),

    with f(t) = sqrt(1 - b2^t) / (1 - b1^t). With D = a + eps and
    d_j = 1 - b2^(j/2) the denominator is D - a d_j, and the sum is

        lr m_s / D  sum_n (a / D)^n  sum_(j=1..k) f(s + j) b1^j d_j^n,

    a series of ratio below d_j, so a few terms reach float32 rounding; the
    inner sums are differences of float64 tails (:func:`deferral_series`).

    Each table keeps its rows' last applied steps. A batch's rows are caught
    up in that closed form before the forward pass reads them
    (:func:`defer_rows`), then stepped; :meth:`settle` (after each epoch)
    catches every row up, so evaluations, checkpoints and saved weights see
    dense Adam's values. Other variables, tables :func:`defer_rows` does not
    defer, PyTorch and ``tf.distribute`` get :class:`FusedAdam`'s update.
    Float32 only; the learning rate must stay constant (a deferred step uses
    the current one).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(self._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            raise ValueError("DeferredAdam needs a constant learning rate, got a schedule")
        # the betas as this backend's Adam raises them to powers (TensorFlow
        # casts a Python float through float32, JAX with x64 does not)
        powers = tuple(float(ops.convert_to_numpy(ops.cast(beta, _widest_float())))
                       for beta in (self.beta_1, self.beta_2))
        series = deferral_series(self.beta_1, self.beta_2, powers)
        if series is None or self.amsgrad:
            raise ValueError(f"DeferredAdam has no short series for betas {self.beta_1} and "
                             f"{self.beta_2}{' with amsgrad' if self.amsgrad else ''}; "
                             "use FusedAdam")
        self._series = series
        self._deferred = set()   # indices of the tables whose rows are deferred
        self._caught_up = {}     # table index -> its rows caught up in this step, their moments

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._last_steps = [
            self.add_variable((variable.shape[0],), "zeros", "int32",
                              name=f"{variable.name}_last_step") if is_table(variable) else None
            for variable in variables]

    def defer(self, tables) -> None:
        """Defers the zero-gradient steps of these embedding tables' rows; the
        caller must :meth:`catch_up` a batch's rows of each before the forward
        pass reads them (:func:`defer_rows` does)."""
        self._deferred = {self._get_variable_index(table) for table in tables}

    def _idle_sums(self, last, now, dtype):
        """For rows last applied at step ``last``: the moments' decays over the
        steps last + 1..``now`` and the series' inner sums (a column per term)."""
        tails, ratios, binomials = self._series
        gap = ops.cast(now, "int32") - last                                   # [rows]
        end = ops.minimum(ops.cast(now, "int32"), len(tails) - 1)
        wide = _widest_float()
        table = ops.convert_to_tensor(tails, wide)
        k = ops.cast(gap, wide)[:, None]
        # sum_(j=1..k) f(s + j) c_l^j, then b1^j (1 - b2^(j/2))^n in place of c_l^j
        idle = (ops.take(table, ops.minimum(last, len(tails) - 1), axis=0)
                - ops.exp(k * np.log(ratios)) * ops.take(table, end, axis=0)[None, :])
        sums = ops.cast(ops.matmul(idle, ops.convert_to_tensor(binomials.T, wide)), dtype)
        k = ops.cast(gap, dtype)[:, None]
        return ops.exp(k * math.log(self.beta_1)), ops.exp(k * math.log(self.beta_2)), sums

    def _catch_up(self, m, v, idle, learning_rate, dtype):
        """Rows' moments ``m``, ``v`` after their idle steps (``idle``: what
        :meth:`_idle_sums` returns for them), and the weights' move."""
        decay_m, decay_v, sums = idle
        a = ops.sqrt(v)
        denominator = a + _constant(self.epsilon, dtype)
        ratio = a / denominator
        terms = len(self._series[1])
        series = sums[:, terms - 1:terms]
        for n in range(terms - 2, -1, -1):
            series = sums[:, n:n + 1] + ratio * series
        move = ops.cast(learning_rate, dtype) * m / denominator * series
        return m * decay_m, v * decay_v, move

    def _state(self, variable):
        """The variable's moments, the variable and its rows' last steps:
        TensorFlow's resource variables on TensorFlow, Keras's elsewhere
        (whose assignments a stateless scope can take)."""
        index = self._get_variable_index(variable)
        state = (self._momentums[index], self._velocities[index], variable,
                 self._last_steps[index])
        return tuple(_resource(v) for v in state) if _tf() else state

    def catch_up(self, tables, ids) -> None:
        """Applies the deferred steps of rows ``ids`` of ``tables`` (looked up
        with these ids, so their rows share last steps) to their weights,
        keeping the caught-up moments for this step's update to write."""
        rows, position = ops.reshape(ops.cast(ids, "int32"), [-1]), None
        if tf := _tf():
            # the order of first occurrence: as the gradient's rows come out
            rows, position = tf.unique(rows)   # elsewhere a repeated row is set twice
        now = ops.cast(self.iterations, "int32")
        dtype = tables[0].dtype
        idle = self._idle_sums(_take(self._state(tables[0])[3], rows), now, dtype)
        for table in tables:
            m, v, p, _ = self._state(table)
            m_rows, v_rows, move = self._catch_up(_take(m, rows), _take(v, rows), idle,
                                                  self.learning_rate, dtype)
            _subtract_rows(p, rows, move)
            self._caught_up[self._get_variable_index(table)] = (rows, position, m_rows, v_rows)

    def _adam_step(self, m, v, g, learning_rate, dtype):
        """The moments after a step with gradient ``g`` and the weights' move,
        rounded as :class:`FusedAdam`'s kernel rounds them (1 - b from b)."""
        m = m + (g - m) * (1 - _constant(self.beta_1, dtype))
        v = v + (ops.square(g) - v) * (1 - _constant(self.beta_2, dtype))
        step = self._corrected_lr(learning_rate, dtype) * m / (
            ops.sqrt(v) + _constant(self.epsilon, dtype))
        return m, v, step

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        deferred = [self._get_variable_index(v) in self._deferred for v in trainable_variables]
        self._update_apart(grads, trainable_variables, learning_rate, deferred,
                           lambda g, *rest: (self._sparse_step if _is_sparse(g)
                                             else self._current_step)(g, *rest))

    def _sparse_step(self, gradient, variable, learning_rate):
        """Adam's step on the batch's rows from their caught-up moments (the
        gradient's rows are :meth:`catch_up`'s ids, in their order)."""
        tf = _tf()
        dtype = variable.dtype
        rows, position, m_rows, v_rows = self._caught_up.pop(self._get_variable_index(variable))
        g = tf.math.unsorted_segment_sum(tf.cast(gradient.values, dtype), position,
                                         tf.shape(rows)[0])
        m, v, p, last = self._state(variable)
        m_rows, v_rows, step = self._adam_step(m_rows, v_rows, g, learning_rate, dtype)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        p.scatter_sub(tf.IndexedSlices(step, rows))
        now = tf.cast(self.iterations, tf.int32) + 1
        last.scatter_update(tf.IndexedSlices(tf.fill(tf.shape(rows), now), rows))

    def _current_step(self, gradient, variable, learning_rate):
        """:meth:`_sparse_step` for a dense gradient (JAX): Adam's step on the
        rows :meth:`catch_up` was given in this training step."""
        dtype = variable.dtype
        g = ops.cast(dense_gradient(gradient), dtype)
        m, v, p, last = self._state(variable)
        rows, _, m_rows, v_rows = self._caught_up.pop(self._get_variable_index(variable))
        present = ops.scatter_update(ops.zeros(ops.shape(last), "bool"), rows[:, None],
                                     ops.ones(ops.shape(rows), "bool"))
        m_old, v_old = ops.convert_to_tensor(m), ops.convert_to_tensor(v)
        m_new, v_new, step = self._adam_step(ops.scatter_update(m_old, rows[:, None], m_rows),
                                             ops.scatter_update(v_old, rows[:, None], v_rows),
                                             g, learning_rate, dtype)
        mask = present[:, None]
        m.assign(ops.where(mask, m_new, m_old))
        v.assign(ops.where(mask, v_new, v_old))
        p.assign_sub(ops.where(mask, step, ops.zeros((), dtype)))
        last.assign(ops.where(present, ops.cast(self.iterations + 1, "int32"),
                              ops.convert_to_tensor(last)))

    def settle(self) -> None:
        """Applies every row's deferred steps, up to the last update: the
        weights and moments are then dense Adam's."""
        for index in sorted(self._deferred):
            variable = self._trainable_variables[index]
            m, v, p, last = self._state(variable)
            idle = self._idle_sums(ops.convert_to_tensor(last), self.iterations, variable.dtype)
            m_new, v_new, move = self._catch_up(ops.convert_to_tensor(m), ops.convert_to_tensor(v),
                                                idle, self.learning_rate, variable.dtype)
            m.assign(m_new)
            v.assign(v_new)
            p.assign_sub(move)
            last.assign(ops.full(last.shape, ops.cast(self.iterations, "int32"), "int32"))


def defer_rows(model: keras.Model) -> None:
    """Prepares ``model`` for lazy or deferred Adam's row updates (compiling
    again first undoes this).

    On TensorFlow (outside ``tf.distribute``) the embedding layers gather the
    batch's rows from the table variable (Keras's read the whole table, so
    writing rows back copied it). With :class:`DeferredAdam` every table looked
    up directly from a model input, without a regularizer (which reads every
    row), has its batch's rows caught up at the start of each training step.
    """
    for layer in model.layers:
        layer.__dict__.pop("call", None)
    model.__dict__.pop("train_step", None)
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    sparse = isinstance(optimizer, (LazyAdam, DeferredAdam)) and optimizer._fused()
    stateless = (isinstance(optimizer, DeferredAdam) and keras.config.backend() == "jax"
                 and optimizer is model.optimizer)
    if not (sparse or stateless):
        return
    groups = {}   # input position -> the tables it looks up
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Embedding):
            continue
        if sparse:
            layer.call = _variable_gather(layer)
        if (not layer.trainable or layer.embeddings_regularizer is not None
                or len(layer._inbound_nodes) != 1):
            continue
        sources = layer._inbound_nodes[0].input_tensors
        position = [i for i, tensor in enumerate(model.inputs)
                    if len(sources) == 1 and tensor is sources[0]]
        if position:
            groups.setdefault(position[0], []).append(layer.embeddings)
    if not groups or not isinstance(optimizer, DeferredAdam):
        return
    optimizer.build(model.trainable_variables)
    optimizer.defer([table for tables in groups.values() for table in tables])
    step = model.train_step

    def catch_up(data):
        inputs = keras.tree.flatten(keras.utils.unpack_x_y_sample_weight(data)[0])
        for position, tables in groups.items():
            optimizer.catch_up(tables, inputs[position])

    def train_step(data):
        catch_up(data)
        return step(data)

    def stateless_train_step(state, data):   # JAX: the state's arrays in, new ones out
        trainable, non_trainable, optimizer_values, metrics = state
        variables = (model.trainable_variables, optimizer.variables)
        mapping = [*zip(variables[0], trainable), *zip(variables[1], optimizer_values)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            catch_up(data)
        trainable, optimizer_values = ([scope.get_current_value(v) for v in group]
                                       for group in variables)
        return step((trainable, non_trainable, optimizer_values, metrics), data)

    model.train_step = train_step if sparse else stateless_train_step


def _variable_gather(layer):
    """``layer.call`` (a ``keras.layers.Embedding``) gathering from the variable."""
    tf = _tf()
    keras_call = layer.call

    def call(inputs):
        table = layer.embeddings
        if not isinstance(table, keras.Variable):     # LoRA or quantized
            return keras_call(inputs)
        if inputs.dtype not in ("int32", "int64"):
            inputs = ops.cast(inputs, "int32")
        return ops.cast(tf.gather(_resource(table), inputs), layer.compute_dtype)

    return call


def settle(optimizer) -> None:
    """:meth:`DeferredAdam.settle` for ``optimizer`` or the one a loss-scale optimizer wraps."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if isinstance(optimizer, DeferredAdam) and optimizer.built:
        optimizer.settle()


def jit_compile(optimizer):
    """``compile``'s ``jit_compile`` for ``optimizer``: off on TensorFlow for
    lazy and deferred Adam (``tf.unique`` has a dynamic shape), else "auto"."""
    return False if isinstance(optimizer, (LazyAdam, DeferredAdam)) and _tf() else "auto"


def make_optimizer(learner: str, learning_rate: float, lazy: bool = False,
                   betas: tuple[float, float] = ADAM_BETAS,
                   adam: str = "dense") -> keras.optimizers.Optimizer:
    """One of :data:`LEARNERS` with Keras 1's constants. Adam is :class:`LazyAdam`
    if ``lazy``, else :class:`FusedAdam` for ``adam="dense"`` and
    :class:`DeferredAdam` for ``"deferred"`` (if it has a series for ``betas``)."""
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    if lazy and learner != "adam":
        raise ValueError(f"lazy needs learner='adam', got {learner!r}")
    if adam not in ADAM_KINDS:
        raise ValueError(f"adam must be one of {', '.join(ADAM_KINDS)}, got {adam!r}")
    if learner == "adam":
        beta_1, beta_2 = betas
        if not (0.0 <= beta_1 < 1.0 and 0.0 <= beta_2 < 1.0):
            raise ValueError(f"Adam's betas must be in [0, 1), got {beta_1} and {beta_2}")
        deferred = adam == "deferred" and deferral_series(beta_1, beta_2) is not None
        kind = LazyAdam if lazy else DeferredAdam if deferred else FusedAdam
        return kind(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=EPSILON)
    if learner in ("adagrad", "rmsprop"):
        return {"adagrad": Keras1Adagrad, "rmsprop": Keras1RMSprop}[learner](learning_rate)
    if learner == "sgd":
        # Keras's SGD is linear in g: slices of a repeated row add up as they should.
        return keras.optimizers.SGD(learning_rate, momentum=0.0)
    raise ValueError(f"learner must be one of {', '.join(LEARNERS)}, got {learner!r}")
