"""The four learners of the authors' code, with Keras 1's constants and formulas.

Keras 1 (the authors') used, with eps = 1e-8 outside the root and g the
gradient of the whole mini-batch loss:

    Adagrad:  a += g^2;                       p -= lr * g / (sqrt(a) + eps)
    RMSprop:  a = rho * a + (1 - rho) * g^2;  p -= lr * g / (sqrt(a) + eps)
    Adam:     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
              p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

(t counts the updates from 1.) All are *dense*: every parameter and every
moment is updated at every step, including embedding rows absent from the
batch (their gradient is 0).

Keras 3 differs in two places, both handled here:

* its Adagrad and RMSprop put epsilon inside the square root and Adagrad
  starts its accumulator at 0.1, hence :class:`Keras1Adagrad` and
  :class:`Keras1RMSprop`;
* on TensorFlow an embedding's gradient is a ``tf.IndexedSlices`` holding
  one slice per *occurrence* of a row in the batch, and Keras 3 squares it
  slice by slice: a row that occurs k times gets sum_k g_k^2 in its second
  moment instead of (sum_k g_k)^2. With batches of 256 ml-1m instances rows
  repeat often (popular items, active users). Every learner here first
  densifies the gradient, which sums the occurrences, as Keras 1 did.

:class:`FusedAdam` is the Adam of this module and the one ``make_optimizer``
returns: Keras 3's Adam on the dense gradient, done in one TensorFlow kernel
per variable instead of about twenty small ops (one epoch of NeuMF-8 is
about 19,400 updates of 12 variables).
"""

from __future__ import annotations

import keras
from keras import ops

from ncf_tf.train.config import ADAM_BETAS, LEARNERS

EPSILON = 1e-8


def _on_tensorflow() -> bool:
    return keras.config.backend() == "tensorflow"


def dense_gradient(gradient):
    """``gradient`` as a dense tensor: a ``tf.IndexedSlices`` summed per row.

    The other backends' gradients are dense already.
    """
    if _on_tensorflow():
        import tensorflow as tf

        if isinstance(gradient, tf.IndexedSlices):
            return tf.convert_to_tensor(gradient)
    return gradient


def _constant(value, dtype):
    """``value`` in ``dtype``; a Python float is rounded once, to ``dtype``."""
    import tensorflow as tf

    if isinstance(value, (int, float)):
        return tf.constant(value, dtype)
    return tf.cast(value, dtype)


def _resource(variable):
    """The ``tf.Variable`` behind a Keras variable (or ``variable`` itself).

    ``_value``, not ``value``: under an autocast scope ``value`` is a cast
    copy, and an update applied to a copy would be lost.
    """
    return getattr(variable, "_value", variable)


@keras.saving.register_keras_serializable(package="ncf_tf")
class FusedAdam(keras.optimizers.Adam):
    """Keras 1's Adam (module docstring): Keras 3's, on the dense gradient.

    On TensorFlow each variable's update is a single ``ResourceApplyAdam``,
    whose kernels compute, with t = ``iterations + 1``,

        lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)
        m += (g - m) * (1 - b1);  v += (g^2 - v) * (1 - b2)
        p -= m * lr_t / (sqrt(v) + eps)

    which is ``keras.optimizers.Adam.update_step`` term for term (bit for
    bit in float64). In float32 the kernel computes 1 - b1 and 1 - b2 from
    the float32 b1 and b2, as Keras 1 did, where Keras 3 rounds 0.1 and
    0.001 directly: relative differences of 2e-7 and 1.3e-5 in the moments'
    increments, about 2e-7 in the weights after 50 steps.

    The moments are Adam's own ``momentum`` and ``velocity`` variables, so
    checkpoints are interchangeable with ``keras.optimizers.Adam``'s.
    Other backends, ``amsgrad`` and ``tf.distribute`` strategies take
    Keras's own implementation (still on the dense gradient).
    """

    def _fused(self) -> bool:
        if not _on_tensorflow() or self.amsgrad:
            return False
        import tensorflow as tf

        return not tf.distribute.has_strategy()

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self._fused():
            super()._backend_update_step(grads, trainable_variables, learning_rate)
            return
        import tensorflow as tf

        # apply() increments the counter after this update, so the first
        # update has t = 1 (b1^t = 0.9).
        scalars = {}
        for gradient, variable in zip(grads, trainable_variables):
            dtype = variable.dtype
            if dtype not in scalars:
                # Each constant rounded as Adam.update_step rounds it: the
                # powers from ops.cast(beta) (via float32), the kernel's
                # 1 - beta and epsilon from the Python floats (exact in float64).
                step = ops.cast(self.iterations + 1, dtype)
                scalars[dtype] = dict(
                    beta1_power=ops.power(ops.cast(self.beta_1, dtype), step),
                    beta2_power=ops.power(ops.cast(self.beta_2, dtype), step),
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


class Keras1Adagrad(keras.optimizers.Optimizer):
    """Adagrad as in Keras 1: zero initial accumulator, epsilon outside the root."""

    def __init__(self, learning_rate=0.01, epsilon=EPSILON, name="adagrad", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._accumulators = self.add_optimizer_variables(variables, "accumulator")

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(dense_gradient(gradient), variable.dtype)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        self.assign_add(accumulator, ops.square(gradient))
        self.assign_sub(variable, ops.divide(ops.multiply(lr, gradient),
                                             ops.add(ops.sqrt(accumulator), self.epsilon)))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


class Keras1RMSprop(keras.optimizers.Optimizer):
    """RMSprop as in Keras 1: rho = 0.9, epsilon outside the root, no momentum."""

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=EPSILON, name="rmsprop", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho, self.epsilon = rho, epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._velocities = self.add_optimizer_variables(variables, "velocity")

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(dense_gradient(gradient), variable.dtype)
        velocity = self._velocities[self._get_variable_index(variable)]
        self.assign(velocity, ops.add(ops.multiply(self.rho, velocity),
                                      ops.multiply(1 - self.rho, ops.square(gradient))))
        self.assign_sub(variable, ops.divide(ops.multiply(lr, gradient),
                                             ops.add(ops.sqrt(velocity), self.epsilon)))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="ncf_tf")
class LazyAdam(FusedAdam):
    """Fast mode, *not* the authors' Adam: an embedding row and its two
    moments change only at the steps where the row occurs in the batch.

    For such a row (its occurrences' gradients summed into g) the update is
    Adam's, with the global step t:

        m_r = b1 m_r + (1 - b1) g;  v_r = b2 v_r + (1 - b2) g^2
        p_r -= lr sqrt(1 - b2^t) / (1 - b1^t) * m_r / (sqrt(v_r) + eps)

    Rows absent from the batch keep their weights and moments, where dense
    Adam decays the moments and keeps moving the weights along the old
    momentum. Other variables (dense layers) get :class:`FusedAdam`'s dense
    update. On TensorFlow the rows are gathered and scattered, so a step
    costs the batch's rows instead of the whole tables (this is what makes
    it fast; ``tf.unique`` keeps it out of XLA). Other backends, and
    ``tf.distribute`` strategies, hand over dense gradients: rows whose
    gradient is exactly zero count as absent, the same updates without the
    saving (a half-precision gradient that underflows to zero counts as
    absent too).
    """

    @staticmethod
    def _is_table(variable) -> bool:
        # keras.layers.Embedding's table; under tf.distribute a tf.Variable arrives here
        name = getattr(variable, "path", None) or variable.name
        return name.split(":")[0].endswith("embeddings")

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self._fused():
            super()._backend_update_step(grads, trainable_variables, learning_rate)
            return
        import tensorflow as tf

        dense = [(g, v) for g, v in zip(grads, trainable_variables)
                 if not isinstance(g, tf.IndexedSlices)]
        if dense:
            super()._backend_update_step([g for g, _ in dense], [v for _, v in dense],
                                         learning_rate)
        for gradient, variable in zip(grads, trainable_variables):
            if isinstance(gradient, tf.IndexedSlices):
                self._sparse_step(gradient, variable, learning_rate)

    def _corrected_lr(self, learning_rate, dtype):
        step = ops.cast(self.iterations + 1, dtype)
        b1_power = ops.power(ops.cast(self.beta_1, dtype), step)
        b2_power = ops.power(ops.cast(self.beta_2, dtype), step)
        return ops.cast(learning_rate, dtype) * ops.sqrt(1 - b2_power) / (1 - b1_power)

    def _sparse_step(self, gradient, variable, learning_rate):
        import tensorflow as tf

        dtype = variable.dtype
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
        if not self._is_table(variable):
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


def lazy_jit_compile(lazy: bool):
    """``compile``'s ``jit_compile`` for a model trained with or without lazy
    Adam: TensorFlow leaves XLA off for lazy Adam (``tf.unique`` has a
    dynamic shape); other backends keep their default."""
    return False if lazy and _on_tensorflow() else "auto"


def make_optimizer(learner: str, learning_rate: float, lazy: bool = False,
                   betas: tuple[float, float] = ADAM_BETAS) -> keras.optimizers.Optimizer:
    """One of :data:`LEARNERS` with Keras 1's constants; ``lazy`` (Adam
    only) gives the fast mode's :class:`LazyAdam`; ``betas`` are Adam's
    (Keras 1's 0.9 and 0.999 by default; MLPerf's NCF uses 0.25 and 0.5)."""
    if learning_rate <= 0:
        raise ValueError(f"--lr must be positive, got {learning_rate}")
    if lazy and learner != "adam":
        raise ValueError(f"--lazy_adam needs --learner adam, got {learner!r}")
    if learner == "adam":
        kind = LazyAdam if lazy else FusedAdam
        beta_1, beta_2 = betas
        if not (0.0 <= beta_1 < 1.0 and 0.0 <= beta_2 < 1.0):
            raise ValueError(f"Adam's betas must be in [0, 1), got {beta_1} and {beta_2}")
        return kind(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=EPSILON)
    if learner == "adagrad":
        return Keras1Adagrad(learning_rate)
    if learner == "rmsprop":
        return Keras1RMSprop(learning_rate)
    if learner == "sgd":
        # Keras's SGD is linear in g, so slices of a repeated row add up as
        # they should.
        return keras.optimizers.SGD(learning_rate, momentum=0.0)
    raise ValueError(f"--learner must be one of {', '.join(LEARNERS)}; got {learner!r}")
